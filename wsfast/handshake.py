"""The opening handshake (RFC 6455 §4), both sides, sans I/O.

Server: :func:`check_request` validates an upgrade request and returns its
key (or raises :class:`HandshakeError` with the status to answer: 400, 405,
or 426 with ``Sec-WebSocket-Version: 13``); the server then picks a
subprotocol from :func:`parse_subprotocols` and answers with
:func:`build_accept_response`.

Client: :func:`generate_key`, :func:`build_request`, then
:func:`check_response` on the server's answer, which returns the accepted
subprotocol (or raises :class:`HandshakeError`).

Extensions: :func:`parse_extensions` parses ``Sec-WebSocket-Extensions``;
:func:`negotiate_extensions` lets the server's extension factories (a
:class:`~wsfast.deflate.DeflateOptions` for permessage-deflate) accept
offers; :func:`check_response` refuses any extension when the client offered
none, and :func:`accept_extensions` checks the server's answer to an offer.
"""

import base64
import binascii
import hashlib
import os
from typing import TYPE_CHECKING, Iterable, List, Optional, Protocol, Sequence, Tuple, Union

from .deflate import DeflateOptions, ExtensionParams, PerMessageDeflate
from .deflate import accept_client as _accept_deflate
from .exceptions import HandshakeError
from .http import HeadersLike, Request, Response, _header_pairs, build_response

if TYPE_CHECKING:
    from .codec import Frame

__all__ = [
    "GUID",
    "accept_key",
    "generate_key",
    "check_request",
    "parse_subprotocols",
    "parse_extensions",
    "negotiate_extensions",
    "build_accept_response",
    "build_request",
    "check_response",
    "accept_extensions",
    "Extension",
    "ExtensionFactory",
]


class HeaderFields(Protocol):
    """What the request parsers here read of headers (:class:`~wsfast.http.Headers`
    has it; wsfast.tornado adapts Tornado's ``HTTPHeaders``)."""

    def get_all(self, name: str) -> List[str]: ...
    def get_list(self, name: str) -> List[str]: ...


class Extension(Protocol):
    """A negotiated extension, as ``Connection(extensions=[...])`` takes it
    (see ``Connection._decode_extensions``; :class:`~wsfast.deflate.PerMessageDeflate`
    is one). It may also have ``uses_rsv1`` and ``max_encoded_size``."""

    def decode(self, frame: "Frame", *, max_size: int) -> "Frame": ...
    def encode(self, frame: "Frame", compress: bool = True) -> "Frame": ...


class ExtensionFactory(Protocol):
    """What :func:`negotiate_extensions` asks to accept an offer
    (:class:`~wsfast.deflate.DeflateOptions` is one)."""

    def accept(self, name: str, params: ExtensionParams,
               accepted: List[Extension]) -> Optional[Tuple[str, Extension]]: ...

#: RFC 6455 §1.3: the GUID appended to the key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: Union[str, bytes, bytearray]) -> str:
    """``Sec-WebSocket-Accept`` for ``Sec-WebSocket-Key`` ``key`` (RFC 6455 §4.2.2)."""
    if isinstance(key, (bytes, bytearray)):
        key = key.decode("ascii")
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_key() -> str:
    """A fresh random ``Sec-WebSocket-Key``: 16 random bytes, base64 (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _has_token(headers: HeaderFields, name: str, token: str) -> bool:
    # Connection and Upgrade are lists of tokens, compared case-insensitively
    # (RFC 9110 §7.6.1, §7.8); a client may send "keep-alive, Upgrade".
    token = token.lower()
    return any(t.lower() == token for t in headers.get_list(name))


def check_request(request: Request) -> str:
    """Validate an opening handshake request (RFC 6455 §4.2.1); return its
    ``Sec-WebSocket-Key``.

    Raises :class:`HandshakeError`: 405 (with ``Allow: GET``) for a method
    other than GET; 426 (with ``Sec-WebSocket-Version: 13``) for a missing or
    other version (RFC 6455 §4.4); 400 for anything else that is wrong.
    """
    if request.method != "GET":
        raise HandshakeError(
            405, f"WebSocket upgrade needs GET, not {request.method}", [("Allow", "GET")]
        )
    major, _, minor = request.version.partition(".")
    if (int(major), int(minor or 0)) < (1, 1):
        raise HandshakeError(400, "WebSocket upgrade needs HTTP/1.1")
    headers = request.headers
    if "Host" not in headers:
        raise HandshakeError(400, "missing Host header")
    if not _has_token(headers, "Upgrade", "websocket"):
        raise HandshakeError(400, 'Upgrade header must be "websocket"')
    if not _has_token(headers, "Connection", "upgrade"):
        raise HandshakeError(400, 'Connection header must include "Upgrade"')
    versions = headers.get_all("Sec-WebSocket-Version")
    if len(versions) != 1 or versions[0].strip() != "13":
        raise HandshakeError(
            426,
            "unsupported WebSocket version (only 13 is supported)"
            if versions
            else "missing Sec-WebSocket-Version header",
            [("Sec-WebSocket-Version", "13")],
        )
    keys = headers.get_all("Sec-WebSocket-Key")
    if not keys:
        raise HandshakeError(400, "missing Sec-WebSocket-Key header")
    if len(keys) > 1:
        raise HandshakeError(400, "more than one Sec-WebSocket-Key header")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:  # RFC 6455 §4.1: 16 random bytes, base64-encoded
        raise HandshakeError(400, "invalid Sec-WebSocket-Key (must be 16 bytes in base64)")
    return key


def parse_subprotocols(headers: HeaderFields) -> List[str]:
    """The subprotocols a client offers, in its order of preference
    (``Sec-WebSocket-Protocol``, possibly split over several headers)."""
    return headers.get_list("Sec-WebSocket-Protocol")


def _split_quoted(value: str, sep: str) -> List[str]:
    # Split on ``sep`` outside double quotes (RFC 9110 §5.6.4 quoted-string).
    parts: List[str] = []
    current: List[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_extensions(headers: HeaderFields) -> List[Tuple[str, ExtensionParams]]:
    """Parse ``Sec-WebSocket-Extensions`` (RFC 6455 §9.1) into a list of
    ``(name, [(param, value_or_None), ...])`` in the order given.
    Raises ``HandshakeError(400)`` for an offer without a name."""
    offers: List[Tuple[str, ExtensionParams]] = []
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        for item in _split_quoted(value, ","):
            if not item.strip():
                continue
            name, *params = _split_quoted(item, ";")
            name = name.strip()
            if not name:
                raise HandshakeError(400, "invalid Sec-WebSocket-Extensions header")
            parsed: ExtensionParams = []
            for param in params:
                key, eq, val = param.partition("=")
                key = key.strip()
                if not key:
                    raise HandshakeError(400, "invalid Sec-WebSocket-Extensions header")
                parsed.append((key, _unquote(val) if eq else None))
            offers.append((name, parsed))
    return offers


def negotiate_extensions(
    offers: Iterable[Tuple[str, ExtensionParams]], available: Iterable[ExtensionFactory] = (),
) -> Tuple[Optional[str], List[Extension]]:
    """Server side: choose extensions among the client's ``offers`` (from
    :func:`parse_extensions`). ``available`` holds extension factories, e.g.
    ``[DeflateOptions()]``; each is asked in turn, with
    ``factory.accept(name, params, accepted_so_far)``, to accept one of the
    offers (the first it can, in the client's order) and returns
    ``(response_header_value, extension_object)`` or None to decline.

    Returns ``(header_value_or_None, [extension objects])`` for
    :class:`~wsfast.connection.Connection` ``extensions=``. With nothing
    available, every offer is declined (RFC 6455 §9.1: a server may accept
    none), so the answer carries no ``Sec-WebSocket-Extensions`` header.
    """
    accepted_headers: List[str] = []
    extensions: List[Extension] = []
    for factory in available:
        for name, params in offers:
            result = factory.accept(name, params, extensions)
            if result is not None:
                header_value, extension = result
                accepted_headers.append(header_value)
                extensions.append(extension)
                break
    return (", ".join(accepted_headers) or None), extensions


def build_accept_response(key: str, subprotocol: Optional[str] = None,
                          extensions: Optional[str] = None, extra_headers: HeadersLike = ()) -> bytes:
    """The ``101 Switching Protocols`` answer for a request with ``key``
    (RFC 6455 §4.2.2). ``extensions``: the ``Sec-WebSocket-Extensions`` value
    from :func:`negotiate_extensions`, or None."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol is not None:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    headers.extend(_header_pairs(extra_headers))
    return build_response(101, headers)


def build_request(
    host: str, resource: str, key: str, subprotocols: Sequence[str] = (),
    extra_headers: HeadersLike = (), origin: Optional[str] = None, extensions: Optional[str] = None,
) -> bytes:
    """The client's opening handshake request (RFC 6455 §4.1).

    ``host``: the ``Host`` header value (``"example.com:8080"``);
    ``resource``: path and query (``"/chat?room=1"``); ``key``: from
    :func:`generate_key`; ``extra_headers``: ``(name, value)`` pairs, a dict
    or :class:`Headers` (e.g. ``Authorization``); ``extensions``: a
    ``Sec-WebSocket-Extensions`` offer, or None.
    """
    lines = [
        f"GET {resource or '/'} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if subprotocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    for name, value in _header_pairs(extra_headers):
        name, value = str(name), str(value)
        if any(c in name + value for c in "\r\n"):
            raise ValueError(f"invalid header {name!r}: {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def check_response(response: Response, key: str, subprotocols: Sequence[str] = (),
                   extensions_offered: bool = False) -> Optional[str]:
    """Validate the server's answer (RFC 6455 §4.1, the client's checks);
    return the accepted subprotocol or None.

    Raises :class:`HandshakeError` (``.status`` is the server's status) when
    the status is not 101, ``Upgrade``/``Connection`` are wrong,
    ``Sec-WebSocket-Accept`` does not match ``key``, or the server chose a
    subprotocol that was not offered, or any extension when
    ``extensions_offered`` is false (when it is true, check the
    ``Sec-WebSocket-Extensions`` answer with :func:`accept_extensions`).
    """
    status = response.status
    headers = response.headers
    if status != 101:
        raise HandshakeError(
            status,
            f"server rejected WebSocket connection: HTTP {status} {response.reason}".rstrip(),
            headers.items(),
        )

    def fail(reason: str) -> HandshakeError:
        return HandshakeError(status, reason, headers.items())

    if not _has_token(headers, "Upgrade", "websocket"):
        raise fail('invalid Upgrade header in the response (must be "websocket")')
    if not _has_token(headers, "Connection", "upgrade"):
        raise fail('invalid Connection header in the response (must include "Upgrade")')
    accepts = headers.get_all("Sec-WebSocket-Accept")
    if len(accepts) != 1 or accepts[0].strip() != accept_key(key):
        raise fail("invalid Sec-WebSocket-Accept header")
    if not extensions_offered and headers.get_all("Sec-WebSocket-Extensions"):
        # RFC 6455 §4.1 (9): an extension the client did not offer fails the
        # connection.
        raise fail("server accepted an extension that was not offered")
    chosen = parse_subprotocols(headers)
    if not chosen:
        return None
    if len(chosen) > 1:
        raise fail("server chose more than one subprotocol")
    if chosen[0] not in subprotocols:
        raise fail(f"server chose subprotocol {chosen[0]!r}, which was not offered")
    return chosen[0]


def accept_extensions(response: Response,
                      deflate_options: Optional[DeflateOptions]) -> List[PerMessageDeflate]:
    """Client side: check the server's ``Sec-WebSocket-Extensions`` answer to
    the permessage-deflate offer made with ``deflate_options`` (a
    :class:`~wsfast.deflate.DeflateOptions`, or None if nothing was offered);
    return the extension objects for ``Connection(extensions=...)`` (``[]``
    when the server accepted nothing). Raises :class:`HandshakeError` (a
    ``NegotiationError``, status 101) for an answer that was not asked for.
    """
    values = response.headers.get_all("Sec-WebSocket-Extensions")
    if deflate_options is None:
        if values:
            raise HandshakeError(
                response.status,
                "server accepted an extension that was not offered",
                response.headers.items(),
            )
        return []
    if not values:
        return []
    extension = _accept_deflate(values, deflate_options)
    return [extension] if extension is not None else []
