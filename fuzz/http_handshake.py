"""The HTTP side of the opening handshake: ``RequestParser`` and
``ResponseParser`` (wsfast/http.py), the request and response checks
(wsfast/handshake.py) and permessage-deflate negotiation on both sides
(wsfast/deflate.py, ``handshake.negotiate_extensions``/``accept_extensions``).

The first byte picks the side. A request (or pipelined requests) is parsed
whole and again in random chunks: the two must give the same requests, and
a chunked feed fails only where the whole one fails. Each request then goes
through ``check_request``, both extension parsers and negotiation; an
accepted handshake's 101 answer must parse and pass the client's checks. A
response goes through ``ResponseParser``, ``check_response`` and
``accept_extensions`` with client options taken from the input.

Documented outcomes: ``HandshakeError`` (400, 405, 413, 426, 431; a
response's own status from the client checks; ``NegotiationError``) and the
``ValueError`` of ``deflate.parse_extensions``.

    python fuzz/http_handshake.py [libFuzzer flags] [corpus dirs]
"""


from _common import Reader, Disagreement, described, main

from wsfast import deflate as _deflate
from wsfast import handshake as _hs
from wsfast.exceptions import HandshakeError
from wsfast.http import RequestParser, ResponseParser

REQUEST_STATUSES = {400, 413, 431}
CHECK_STATUSES = {400, 405, 426}
HEAD_LIMITS = [64, 256, 1024, 64 * 1024]
BODY_LIMITS = [0, 16, 1024 * 1024]
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
OPTIONS = [
    _deflate.DeflateOptions(),
    _deflate.DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
    _deflate.DeflateOptions(server_max_window_bits=10, client_max_window_bits=9),
    _deflate.DeflateOptions(server_max_window_bits=8, client_max_window_bits=15),
]


def request_view(r):
    return (r.method, r.uri, r.path, r.query, list(r.headers.items()), r.body, r.version,
            r.keep_alive, r.upgrade)


def parse_requests(data, cuts, head, body):
    parser = RequestParser(max_header_size=head, max_body_size=body)
    done, error = [], None
    last = 0
    for cut in cuts + [len(data)]:
        try:
            done += [request_view(r) for r in parser.feed(data[last:cut])]
        except HandshakeError as exc:
            if exc.status not in REQUEST_STATUSES:
                raise
            error = exc.status
            break
        last = cut
    if error is None:  # a violation found after complete requests is raised next time
        try:
            parser.feed(b"")
        except HandshakeError as exc:
            if exc.status not in REQUEST_STATUSES:
                raise
            error = exc.status
    return done, error, parser


def server_side(r):
    head = r.pick(HEAD_LIMITS)
    body = r.pick(BODY_LIMITS)
    ncuts = r.int(0, 6)
    cut_points = [r.int(0, 4096) for _ in range(ncuts)]
    data = r.rest()
    cuts = sorted({c % (len(data) + 1) for c in cut_points})
    whole, whole_error, parser = parse_requests(data, [], head, body)
    chunked, chunked_error, _ = parse_requests(data, cuts, head, body)
    # RequestParser counts an unfinished head's bytes from the second chunk
    # on (httptools shows a header line only once it ends): a head over the
    # limit is refused "at most one chunk late", so a whole feed of one may
    # pass where the same bytes in pieces get their 431.
    late_431 = chunked_error == 431 and len(data) > head
    if whole_error is None and ((chunked_error is not None and not late_431) or chunked != whole):
        raise Disagreement(f"chunked feed differs: {chunked!r} {chunked_error} vs {whole!r}")
    if whole_error is not None and chunked_error is None:
        raise Disagreement(f"only the whole feed failed ({whole_error}): {chunked!r}")
    if chunked != whole[: len(chunked)]:
        raise Disagreement(f"chunked feed gave other requests: {chunked!r} vs {whole!r}")

    # Each request, as the server checks it.
    again = RequestParser(max_header_size=head, max_body_size=body)
    try:
        requests = again.feed(data)
    except HandshakeError:
        requests = []
    for request in requests:
        request.query_arguments, request.host, request.full_path  # noqa: B018 (may not raise)
        try:
            key = _hs.check_request(request)
        except HandshakeError as exc:
            if exc.status not in CHECK_STATUSES:
                raise
            key = None
        values = request.headers.get_all("Sec-WebSocket-Extensions")
        try:
            offers = _hs.parse_extensions(request.headers)
        except HandshakeError as exc:
            if exc.status != 400:
                raise
            offers = None
        try:
            _deflate.parse_extensions(values)
        except ValueError:
            pass
        answer, extension = _deflate.negotiate_server(values, r_options(values))
        if offers is not None:
            header, extensions = _hs.negotiate_extensions(offers, [_deflate.DeflateOptions()])
            if header is not None:
                _deflate.parse_extensions(header)  # our own answer must parse: no ValueError
        if key is not None:
            response = ResponseParser().feed(_hs.build_accept_response(key, extensions=answer))
            if response is None or response.status != 101:
                raise Disagreement(f"our 101 did not parse: {response!r}")
            _hs.check_response(response, key, extensions_offered=answer is not None)
    return parser


def r_options(values):
    # A server's options, chosen from the offer's length (stable, cheap).
    return OPTIONS[sum(len(v) for v in values) % len(OPTIONS)]


def client_side(r):
    head = r.pick(HEAD_LIMITS)
    options = r.pick(OPTIONS + [None])
    offered = [r.text(8) for _ in range(r.int(0, 3))]
    ncuts = r.int(0, 6)
    cut_points = [r.int(0, 4096) for _ in range(ncuts)]
    data = r.rest()
    cuts = sorted({c % (len(data) + 1) for c in cut_points})
    parser = ResponseParser(max_header_size=head)
    response = None
    last = 0
    try:
        for cut in cuts + [len(data)]:
            response = parser.feed(data[last:cut])
            last = cut
            if response is not None:
                break
    except HandshakeError as exc:
        if exc.status not in REQUEST_STATUSES:
            raise
        return
    if response is None:
        return
    try:
        _hs.check_response(response, KEY, offered, extensions_offered=options is not None)
    except HandshakeError as exc:
        if exc.status != response.status:
            raise Disagreement(f"check_response status {exc.status} for a {response.status}")
    else:  # a valid 101: its extensions next, as the client does
        try:
            _hs.accept_extensions(response, options)
        except HandshakeError as exc:
            if exc.status != 101:
                raise Disagreement(f"accept_extensions status {exc.status} for a 101")
    values = response.headers.get_all("Sec-WebSocket-Extensions")
    try:
        _deflate.accept_client(values, options)
    except _deflate.NegotiationError:
        pass


def test_one_input(data):
    r = Reader(data)
    if r.bool():
        server_side(r)
    else:
        client_side(r)


if __name__ == "__main__":
    main(test_one_input)
