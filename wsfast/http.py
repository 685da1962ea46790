"""HTTP/1.1 messages for the opening handshake and for plain HTTP requests.

Sans-IO, like the layers below: parsers take bytes and return messages, and
``build_response`` returns bytes. Parsing is done by httptools (llhttp), never
by hand; this module adds what a server needs around it: size limits
(431 for a head that is too large, 413 for a body), keep-alive, pipelining
and the switch to another protocol after an ``Upgrade`` request.

Theory of operation of :class:`RequestParser`: bytes go into ``feed()``, which
returns the requests completed by them, in order. A request that asks for an
upgrade (``Connection: Upgrade`` with an ``Upgrade`` header) ends HTTP on that
connection: ``upgraded`` becomes true, the bytes after its head are kept in
``trailing`` (the first WebSocket frames, if the client did not wait), and
further ``feed()`` calls are refused. After a request without keep-alive the
parser ignores anything else. Bad input raises :class:`HandshakeError` with
the status to answer (400, 413, 431); the connection must then be closed.
"""

import http as _http
import ipaddress
import re
from typing import (
    TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple, TypeVar, Union,
    NoReturn, overload,
)

from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import httptools

from .exceptions import HandshakeError

if TYPE_CHECKING:
    from .protocol import WebSocketProtocol

_T = TypeVar("_T")

__all__ = [
    "Headers",
    "HeadersLike",

    "Request",
    "Response",
    "RequestParser",
    "ResponseParser",
    "TrustedProxies",
    "build_response",
    "client_address",
    "parse_proxy_header",
    "redact_uri",
    "status_reason",
]


# Interned header names and common values (bounded: input decides what goes in).
_INTERN_MAX = 1024
_NAMES: Dict[bytes, str] = {}
_VALUES: Dict[bytes, str] = {}
_SHARED_VALUES = frozenset((
    b"host", b"upgrade", b"connection", b"sec-websocket-version", b"origin",
    b"user-agent", b"sec-websocket-extensions", b"sec-websocket-protocol", b"pragma",
    b"cache-control", b"accept-encoding", b"accept-language",
))


class Headers:
    """A case-insensitive multi-dict of HTTP headers that keeps their order.

    ``headers["Name"]`` returns the first value (``KeyError`` if absent),
    ``get(name, default)`` likewise, ``get_all(name)`` every value, in order.
    ``items()`` yields ``(name, value)`` pairs as they were received or added.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: "HeadersLike" = ()) -> None:
        self._items: List[Tuple[str, str]] = []
        # {lower-case name: [values]}, built at the first lookup
        self._index: Optional[Dict[str, List[str]]] = None
        for name, value in _header_pairs(items):
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a header (a second value for a name does not replace the first)."""
        name = str(name)
        value = str(value)
        self._items.append((name, value))
        if self._index is not None:
            self._index.setdefault(name.lower(), []).append(value)

    def _lookup(self) -> Dict[str, List[str]]:
        index = self._index
        if index is None:
            index = self._index = {}
            for name, value in self._items:
                index.setdefault(name.lower(), []).append(value)
        return index

    def compact(self) -> None:
        """Drop the lookup index (rebuilt when needed): a request kept for
        the life of a WebSocket connection then costs less memory."""
        self._index = None

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value``."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = name.lower()
        index = self._lookup()
        if key in index:
            del index[key]
            self._items = [(n, v) for n, v in self._items if n.lower() != key]

    __delitem__ = remove

    def __getitem__(self, name: str) -> str:
        return self._lookup()[name.lower()][0]

    @overload
    def get(self, name: str) -> Optional[str]: ...
    @overload
    def get(self, name: str, default: _T) -> Union[str, _T]: ...

    def get(self, name: str, default: Any = None) -> Any:
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``, in order (an empty list if absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def get_list(self, name: str) -> List[str]:
        """The comma-separated tokens of every ``name`` header, stripped, empty
        ones dropped (``Connection: keep-alive, Upgrade`` → ``["keep-alive", "Upgrade"]``)."""
        tokens = []
        for value in self._lookup().get(name.lower(), ()):
            for token in value.split(","):
                token = token.strip()
                if token:
                    tokens.append(token)
        return tokens

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> List[Tuple[str, str]]:
        return list(self._items)

    def copy(self) -> "Headers":
        return Headers(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented


    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


#: What takes headers accepts: a :class:`Headers`, a mapping, or
#: ``(name, value)`` pairs (names and values are turned into ``str``).
HeadersLike = Union[Headers, Mapping[str, str], Iterable[Tuple[str, str]]]


def _header_pairs(headers: HeadersLike) -> Iterable[Tuple[str, str]]:
    """``(name, value)`` pairs of what :data:`HeadersLike` allows."""
    if isinstance(headers, Headers):
        return headers.items()
    if isinstance(headers, Mapping):
        return headers.items()
    # duck-typed mappings (a tornado HTTPHeaders, a multidict): have items()
    items = getattr(headers, "items", None)
    if items is not None:
        return items()  # type: ignore[no-any-return]  # a mapping-like object's items()
    return headers



# Query parameter names whose values are credentials: never written to a log.
# Matched against the decoded, lower-cased name, anywhere in it ("x-api-key",
# "access_token", "X-Amz-Signature", "client_secret", "sessionid", ...).
_SECRET_NAME = re.compile(
    r"token|passw|pwd|secret|key|auth|sig|session|sess_id|sid$|credential|cookie|jwt|bearer"
    r"|^code$|^otp$|^ticket$|^nonce$|^hmac$|^hash$|^salt$"
)
REDACTED = "***"


def redact_uri(uri: str) -> str:
    """``uri`` with the value of each query parameter that looks like a
    credential (``access_token``, ``password``, ``api_key``, ``sig``, ...)
    replaced by ``***``: what a log line may show. Names, the path and the
    other values are kept as sent."""
    uri, hash_, fragment = uri.partition("#")
    head, sep, query = uri.partition("?")
    if not sep and not hash_:
        return uri
    parts = []
    for part in query.split("&") if sep else ():
        name, eq, value = part.partition("=")
        if value and _SECRET_NAME.search(unquote_plus(name).lower()):
            part = name + eq + REDACTED
        parts.append(part)
    # A fragment never reaches a server from a browser; if a client sends
    # one, it is dropped (OAuth's implicit flow puts tokens there).
    return head + sep + "&".join(parts) + (hash_ + REDACTED if fragment else hash_)


class Request:
    """One HTTP request as received.

    ``method`` ("GET"), ``uri`` (the request target as sent), ``path``
    (percent-decoding left to the router), ``query`` (the raw query string),
    ``query_arguments`` (``{name: [values]}``), ``headers`` (:class:`Headers`),
    ``body`` (bytes), ``version`` ("1.1"), ``keep_alive`` (whether the client
    allows another request on this connection), ``upgrade`` (whether it asked
    to switch protocols), ``remote`` (the peer's address) and ``connection``
    (the :class:`~wsfast.protocol.WebSocketProtocol`; both set by the server).
    """

    __slots__ = (
        "method",
        "uri",
        "path",
        "query",
        "headers",
        "body",
        "version",
        "keep_alive",
        "upgrade",
        "remote",
        "connection",
        "_query_arguments",
        "_remote_ip",
    )

    def __init__(
        self,
        method: str = "GET",
        uri: str = "/",
        headers: Optional[Headers] = None,
        body: bytes = b"",
        version: str = "1.1",
        keep_alive: bool = True,
        upgrade: bool = False,
        remote: "Address" = None,
    ) -> None:
        self.method = method
        self.uri = uri
        if uri.startswith("/"):  # origin-form, the usual case (RFC 9112 §3.2.1)
            path, _, query = uri.partition("?")
            self.path = path
            self.query = query.partition("#")[0]
        else:  # absolute-form, or "*"
            parts = urlsplit(uri)
            self.path = parts.path or "/"
            self.query = parts.query
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.remote = remote
        #: The server's protocol object for this connection (set by the server).
        self.connection: Optional["WebSocketProtocol"] = None
        self._query_arguments: Optional[Dict[str, List[str]]] = None
        self._remote_ip: Optional[str] = None

    @property
    def query_arguments(self) -> Dict[str, List[str]]:
        """``{name: [value, ...]}`` from the query string, decoded."""
        if self._query_arguments is None:
            self._query_arguments = parse_qs(self.query, keep_blank_values=True)
        return self._query_arguments

    @property
    def host(self) -> str:
        """The ``Host`` header ("" if absent)."""
        return self.headers.get("Host", "")

    @property
    def peer_ip(self) -> Optional[str]:
        """The address of the peer of the connection ("" for a Unix socket),
        or None: the proxy's address behind a proxy."""
        if isinstance(self.remote, tuple):
            return self.remote[0] if self.remote else None
        return self.remote

    @property
    def remote_ip(self) -> Optional[str]:
        """The client's IP address (Tornado's name for it): the peer's, or
        behind a proxy listed in the server's ``trusted_proxies`` setting,
        the client's as the proxies tell it (``Forwarded``,
        ``X-Forwarded-For``, ``X-Real-IP``; see :func:`client_address`)."""
        if self._remote_ip is not None:
            return self._remote_ip
        return self.peer_ip

    @property
    def log_uri(self) -> str:
        """``uri`` as log lines show it: credential-looking query values
        (``access_token``, ``password``, ...) replaced by ``***``."""
        return redact_uri(self.uri)

    @property
    def full_path(self) -> str:
        """``path`` with ``?query`` if there is one, decoded for display."""
        return unquote(self.path) + ("?" + self.query if self.query else "")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.log_uri} HTTP/{self.version}>"


#: A peer's address: ``(host, port, ...)`` for TCP (what ``getpeername()``
#: gives), a path (``""`` if unnamed) for a Unix socket, or None if unknown.
Address = Union[Tuple[Any, ...], str, None]


def _parse_ip(text: str) -> Optional[str]:
    """An IP address from a proxy header's node (``1.2.3.4``,
    ``1.2.3.4:567``, ``[2001:db8::1]:80``, ``2001:db8::1``), or None."""
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _forwarded_for(values: Iterable[str]) -> List[Optional[str]]:
    """The ``for=`` nodes of ``Forwarded`` headers (RFC 7239 §4), in order;
    None for a node that is not an IP address ("unknown", "_hidden")."""
    nodes = []
    for value in values:
        for element in value.split(","):
            found: Optional[str] = None
            for pair in element.split(";"):
                name, eq, node = pair.partition("=")
                if eq and name.strip().lower() == "for":
                    found = node
            if found is not None:
                nodes.append(_parse_ip(found))
    return nodes


class TrustedProxies:
    """The ``trusted_proxies`` setting: addresses and networks (``"10.0.0.0/8"``,
    ``"127.0.0.1"``, ``"::1"``) and ``"unix"`` for peers on a Unix socket.
    ``contains(ip)`` says whether a hop is trusted."""

    __slots__ = ("networks", "unix")

    def __init__(self, entries: Iterable[str]) -> None:
        if isinstance(entries, (str, bytes)):
            raise TypeError(f"trusted_proxies must be a list of addresses or networks, not the "
                            f"string {entries!r} (write trusted_proxies=[{entries!r}])")
        self.networks: List[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = []
        self.unix = False
        for entry in entries:
            if entry == "unix":
                self.unix = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except (TypeError, ValueError):
                raise ValueError(f"trusted_proxies: {entry!r} is not an address, a network "
                                 "(10.0.0.0/8) or 'unix'") from None

    def contains(self, ip: Optional[str]) -> bool:
        if not ip:  # "" (or None): the peer of a Unix socket
            return self.unix
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def client_address(request: Request, trusted: TrustedProxies) -> Optional[str]:
    """The client's address for ``request`` when its peer is one of the
    :class:`TrustedProxies` ``trusted``: the right-most hop that is not a
    trusted proxy, from ``Forwarded`` (RFC 7239), else ``X-Forwarded-For``,
    else ``X-Real-IP``. A peer that is not trusted cannot set its address:
    its headers are ignored. A hop that is not an IP address ends the walk
    at the last trusted one."""
    peer = request.peer_ip
    if not trusted.contains(peer):
        return peer
    headers = request.headers
    if "Forwarded" in headers:
        hops = _forwarded_for(headers.get_all("Forwarded"))
    elif "X-Forwarded-For" in headers:
        hops = [_parse_ip(node) for node in ",".join(headers.get_all("X-Forwarded-For")).split(",")]
    elif "X-Real-IP" in headers:
        hops = [_parse_ip(headers["X-Real-IP"])]
    else:
        return peer
    client = peer
    for hop in reversed(hops):
        if hop is None:
            break
        client = hop
        if not trusted.contains(hop):
            break
    return client


_PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PROXY_HEADER_MAX = 536  # v1: 107 bytes; v2: 16 + up to 520 of addresses and TLVs


def parse_proxy_header(
    data: Union[bytes, bytearray, memoryview],
) -> Optional[Tuple[int, Optional[Tuple[str, int]]]]:
    """The PROXY protocol header (HAProxy's ``send-proxy``, v1 text or v2
    binary) at the start of ``data``: None while incomplete, else
    ``(consumed, address)`` where ``address`` is the client's ``(ip, port)``,
    or None for a ``LOCAL``/``UNKNOWN`` connection (the proxy's own, e.g. a
    health check: keep the peer's address). Raises ``ValueError`` for
    anything else: a connection that does not start with the header, or a
    malformed one."""
    data = bytes(data[:PROXY_HEADER_MAX])
    if data.startswith(_PROXY_V2_SIGNATURE[: len(data)]) and len(data) < 16:
        return None
    if data.startswith(_PROXY_V2_SIGNATURE):
        version_command, family, length = data[12], data[13], int.from_bytes(data[14:16], "big")
        if version_command >> 4 != 2 or version_command & 0xF > 1:
            raise ValueError("PROXY v2: unknown version or command")
        if len(data) < 16 + length:
            if 16 + length > PROXY_HEADER_MAX:
                raise ValueError("PROXY v2: header too long")
            return None
        body = data[16:16 + length]
        if version_command & 0xF == 0:  # LOCAL
            return 16 + length, None
        if family >> 4 == 1 and len(body) >= 12:  # AF_INET
            return 16 + length, (str(ipaddress.IPv4Address(body[0:4])), int.from_bytes(body[8:10], "big"))
        if family >> 4 == 2 and len(body) >= 36:  # AF_INET6
            return 16 + length, (str(ipaddress.IPv6Address(body[0:16])), int.from_bytes(body[32:34], "big"))
        if family >> 4 in (0, 3):  # UNSPEC, AF_UNIX: no address to report
            return 16 + length, None
        raise ValueError("PROXY v2: address block too short")
    if not data.startswith(b"PROXY "[: len(data)]):
        raise ValueError("the connection does not start with a PROXY protocol header")
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= 107:
            raise ValueError("PROXY v1: header too long")
        return None
    fields = data[:end].decode("ascii", "replace").split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return end + 2, None
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ValueError("PROXY v1: malformed header")
    try:
        source = ipaddress.ip_address(fields[2])
        port = int(fields[4])
    except ValueError:
        raise ValueError("PROXY v1: malformed address") from None
    if (source.version == 4) != (fields[1] == "TCP4") or not 0 <= port <= 65535:
        raise ValueError("PROXY v1: malformed address")
    return end + 2, (str(source), port)


class Response:
    """One HTTP response as received by the client: ``status``, ``reason``,
    ``headers``, ``version`` and ``body`` (what arrived of it)."""

    __slots__ = ("status", "reason", "headers", "version", "body")

    def __init__(self, status: int, reason: str = "", headers: Optional[Headers] = None,
                 version: str = "1.1", body: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else Headers()
        self.version = version
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def status_reason(status: int) -> str:
    """The standard reason phrase for ``status`` ("Unknown" if none)."""
    try:
        return _http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# RFC 9110 §6.4.1: no body (and no Content-Length) in 1xx, 204 and 304.
_NO_BODY = frozenset((204, 304))


def build_response(status: int, headers: HeadersLike = (), body: Union[bytes, str] = b"",
                   reason: Optional[str] = None, *, head: bool = False) -> bytes:
    """Serialise a response: status line, headers, blank line, body.

    ``headers``: ``(name, value)`` pairs or a :class:`Headers`. A
    ``Content-Length`` is added for responses that carry a body unless one is
    given. ``head=True`` (an answer to HEAD) keeps the headers of ``body`` but
    sends no body.
    """
    if reason is None:
        reason = status_reason(status)
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    has_length = False
    for name, value in _header_pairs(headers):
        name = str(name)
        value = str(value)
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if name.lower() == "content-length":
            has_length = True
        lines.append(f"{name}: {value}\r\n")
    carries_body = status >= 200 and status not in _NO_BODY
    if carries_body and not has_length:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    out = "".join(lines).encode("latin-1")
    if carries_body and body and not head:
        out += body
    return out


class _ParserBase:
    """Shared httptools callbacks: a head that grows past ``max_header_size``
    is refused with 431; a body past ``max_body_size`` with 413."""

    def __init__(self, max_header_size: int, max_body_size: int) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._error: Optional[HandshakeError] = None
        self._begun = False  # a message began during the current feed()
        self._reset_message()

    def _reset_message(self) -> None:
        self._in_head = False
        self._head_size = 0
        self._pending = 0
        self._headers = Headers()
        self._body: Optional[List[bytes]] = None
        self._body_size = 0

    # httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True
        self._begun = True

    def _grow_head(self, n: int) -> None:
        self._head_size += n
        if self._head_size > self.max_header_size:
            self._error = HandshakeError(
                431, f"HTTP head larger than {self.max_header_size} bytes"
            )
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value) + 4)
        # RFC 9110 §5.5: field values are octets; latin-1 keeps each one.
        # Names, and the values of headers every client sends alike, are
        # shared between requests: a WebSocket keeps its request for life.
        key = name.lower()
        text = _NAMES.get(name)
        if text is None:
            text = name.decode("latin-1")
            if len(_NAMES) < _INTERN_MAX:
                _NAMES[bytes(name)] = text
        if key in _SHARED_VALUES and len(value) <= 256:
            shared = _VALUES.get(value)
            if shared is None:
                shared = value.decode("latin-1")
                if len(_VALUES) < _INTERN_MAX:
                    _VALUES[bytes(value)] = shared
        else:
            shared = value.decode("latin-1")
        self._headers.add(text, shared)
        if len(self._headers) > 256:
            self._error = HandshakeError(431, "too many header fields")
            raise self._error

    def on_body(self, data: bytes) -> None:
        self._body_size += len(data)
        if self._body_size > self.max_body_size:
            self._error = HandshakeError(
                413, f"body larger than {self.max_body_size} bytes"
            )
            raise self._error
        if self._body is None:
            self._body = [data]
        else:
            self._body.append(data)

    def _check_content_length(self) -> None:
        length = self._headers.get("Content-Length")
        if length is not None and length.strip().isdigit():
            if int(length) > self.max_body_size:
                self._error = HandshakeError(
                    413, f"body larger than {self.max_body_size} bytes"
                )
                raise self._error

    def _grow_pending(self, n: int) -> None:
        # Called after a feed() that began and ended inside one message head
        # (the same one: a chunk that ends a request and begins the next
        # does not count against the next one's head).
        # llhttp holds no bytes but httptools accumulates the current header
        # line, so a line that never ends shows in no callback: count the
        # chunks that went into the head instead. All their bytes belong to
        # the head, so this never refuses a head under the limit; a head
        # over it is refused at most one chunk late.
        self._pending += n
        if self._pending > self.max_header_size:
            self._error = HandshakeError(
                431, f"HTTP head larger than {self.max_header_size} bytes"
            )
            raise self._error

    def _take_body(self) -> bytes:
        body = b"".join(self._body) if self._body else b""
        self._body = None
        return body

    def _raise_parse_error(self, exc: Exception) -> NoReturn:
        if self._error is not None:
            raise self._error from None
        raise HandshakeError(400, f"malformed HTTP: {exc}") from None


class RequestParser(_ParserBase):
    """Incremental HTTP/1.1 request parser over ``httptools.HttpRequestParser``.

    ``feed(data)`` returns the list of :class:`Request` objects completed by
    ``data`` (possibly several: pipelining) and raises :class:`HandshakeError`
    with status 400 (malformed), 413 (body too large) or 431 (head too large).
    It never keeps a reference to ``data``: the caller may reuse its buffer.
    """

    def __init__(self, max_header_size: int = 64 * 1024, max_body_size: int = 1024 * 1024) -> None:
        super().__init__(max_header_size, max_body_size)
        self._parser = httptools.HttpRequestParser(self)
        self._url: List[bytes] = []
        self._done: List[Request] = []
        #: True once a request asked to switch protocols; see ``trailing``.
        self.upgraded = False
        #: The bytes after the head of the upgrade request (bytes).
        self.trailing = b""
        #: True once a request without keep-alive was completed: ignore the rest.
        self.finished = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url = []

    def on_url(self, data: bytes) -> None:
        self._grow_head(len(data))
        self._url.append(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._check_content_length()

    def on_message_complete(self) -> None:
        p = self._parser
        try:
            uri = b"".join(self._url).decode("ascii")
        except UnicodeDecodeError:
            # RFC 9112 §3.2: the target is ASCII; llhttp lets some bytes through.
            self._error = HandshakeError(400, "request target is not ASCII")
            raise self._error from None
        request = Request(
            method=p.get_method().decode("ascii"),
            uri=uri,
            headers=self._headers,
            body=self._take_body(),
            version=p.get_http_version(),
            keep_alive=p.should_keep_alive(),
            upgrade=p.should_upgrade(),
        )
        self._done.append(request)
        if not request.keep_alive:
            self.finished = True
        self._reset_message()

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Request]:
        """Parse ``data``; return the requests it completed (see the class doc)."""
        if self.upgraded or self.finished:
            return []
        if self._error is not None:
            raise self._error
        in_head = self._in_head
        self._begun = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            self.trailing = bytes(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            if self._error is None and self.finished:
                pass  # bytes after a "Connection: close" request: ignored
            else:
                done, self._done = self._done, []
                if self._error is None:
                    self._error = HandshakeError(400, f"malformed HTTP request: {exc}")
                if done:
                    # Answer what was complete first; raise on the next feed.
                    return done
                raise self._error from None
        if in_head and self._in_head and not self._begun:
            self._grow_pending(len(data))
        done, self._done = self._done, []
        return done



class ResponseParser(_ParserBase):
    """Parser for the server's answer to the client's opening handshake.

    ``feed(data)`` returns None until the response head is complete, then the
    :class:`Response`. For a 101 the bytes after the head (the server's first
    frames) are in ``trailing``. For another status, the body bytes that came
    with the head are in ``Response.body`` (enough for an error message).
    """

    def __init__(self, max_header_size: int = 64 * 1024, max_body_size: int = 64 * 1024) -> None:
        super().__init__(max_header_size, max_body_size)
        self._parser = httptools.HttpResponseParser(self)
        self._reason: List[bytes] = []
        self._head_done = False
        self._complete = False
        self.response: Optional[Response] = None
        self.trailing = b""

    def on_status(self, data: bytes) -> None:
        self._grow_head(len(data))
        self._reason.append(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_done = True

    def on_body(self, data: bytes) -> None:
        # Keep at most max_body_size of an error body; ignore the rest.
        if self._body_size < self.max_body_size:
            super().on_body(data[: self.max_body_size - self._body_size])

    def on_message_complete(self) -> None:
        self._complete = True

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> Optional[Response]:
        if self.response is not None:
            return self.response
        if self._error is not None:
            raise self._error
        in_head = self._in_head
        self._begun = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.trailing = bytes(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            if not self._head_done:
                self._raise_parse_error(exc)
        if not self._head_done:
            if in_head and self._in_head and not self._begun:
                self._grow_pending(len(data))
            return None
        p = self._parser
        self.response = Response(
            status=p.get_status_code(),
            reason=b"".join(self._reason).decode("latin-1"),
            headers=self._headers,
            version=p.get_http_version(),
            body=self._take_body(),
        )
        return self.response
