"""``WebSocketHandler.check_origin`` as wsfast/web.py defines it by default:
any ``Origin`` and ``Host`` header values a client can send (latin-1 text,
as the HTTP parser decodes them) give True or False, never an exception
(a malformed Origin is a refusal, 403, not a 500), and an Origin of the
request's own host is accepted, whatever its scheme and letter case. (Only
browsers need the check, and they send well-formed origins, so what it
answers for other junk does not matter: "//host" is accepted today.)

    python fuzz/origin.py [libFuzzer flags] [corpus dirs]
"""

import re

from _common import Disagreement, Reader, main

from wsfast.http import Headers, Request
from wsfast.web import Application, WebSocketHandler

APP = Application([])
_HOST = re.compile(r"[a-z0-9.-]{1,60}(:[0-9]{1,5})?")


class Handler(WebSocketHandler):
    def on_message(self, message):
        pass


def test_one_input(data):
    r = Reader(data)
    host = r.blob(200).decode("latin-1")
    origin = r.rest().decode("latin-1")
    headers = Headers([("Host", host), ("Origin", origin)])
    handler = Handler(APP, Request(headers=headers))
    result = handler.check_origin(origin)
    if type(result) is not bool:
        raise Disagreement(f"check_origin returned {result!r}")
    if _HOST.fullmatch(host):  # a plain host: its own origin is accepted, in any case
        for same in ("http://" + host, "https://" + host.upper()):
            if handler.check_origin(same) is not True:
                raise Disagreement(f"check_origin refused {same!r} for Host {host!r}")


if __name__ == "__main__":
    main(test_one_input)
