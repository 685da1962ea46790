"""permessage-deflate (RFC 7692), sans I/O: negotiation and the codec.

Theory of operation
-------------------

Negotiation happens in the opening handshake, on ``Sec-WebSocket-Extensions``
(RFC 6455 §9.1), and ends with a :class:`PerMessageDeflate` object to pass to
``Connection(..., extensions=[ext])``:

* **Server**: ``header, ext = negotiate_server(request.headers.get_all(
  "Sec-WebSocket-Extensions"), options)``. The client's offers are walked in
  order; an offer with an unknown, repeated or badly valued parameter is
  declined (skipped, RFC 7692 §7.1), the first valid one is accepted, and at
  most one answer is given. ``header`` (or None: nothing accepted) goes into
  the 101 response; ``ext`` (or None) into the Connection. ``options.accept``
  is the same thing one offer at a time, for ``handshake.negotiate_extensions``.
* **Client**: ``client_offer(options)`` is the header value to send;
  ``accept_client(response.headers.get_all("Sec-WebSocket-Extensions"),
  options)`` checks the answer and returns the extension object (None if the
  server accepted nothing), or raises :class:`NegotiationError` (a
  ``HandshakeError``: fail the connection) for an answer the client did not
  ask for.

The codec (RFC 7692 §6-7.2): a :class:`PerMessageDeflate` holds at most one
compressor (our messages) and one decompressor (the peer's), each created at
the first compressed message that needs it, kept across messages with
context takeover and dropped after each message without it (so a connection
without context takeover holds no zlib memory between messages).
``encode(frame)`` compresses a message whose first frame is at least
``threshold`` bytes (or that is fragmented) unless the sender opted out:
RSV1 on its first frame only, all its fragments through one deflate stream
with a sync flush each, the ``00 00 ff ff`` tail cut from the last one.
``decode(frame, max_size=...)`` passes messages with RSV1 clear through,
inflates the others, fragments through one stream, with the tail put back
after the last one, and never produces more than ``max_size`` bytes: zlib is
asked for at most ``max_size + 1`` bytes, so a zip bomb fails with 1009
(:class:`~wsfast.exceptions.PayloadTooBig`) after about ``max_size`` bytes
of output, whatever its ratio. Compressed data zlib cannot inflate fails
with 1007.

The measurements behind the defaults (window bits, memLevel, level,
threshold, backends) are in ``docs/deflate.md``.
"""

import zlib as _zlib
from types import ModuleType
from typing import (
    TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple,
    TypeVar, Union,
)

from .exceptions import HandshakeError, PayloadTooBig, ProtocolError

if TYPE_CHECKING:
    from .codec import Frame


_F = TypeVar("_F", bound="Frame")

__all__ = [
    "EXTENSION_NAME",
    "DEFAULT_WINDOW_BITS",
    "DEFAULT_THRESHOLD",
    "NegotiationError",
    "DeflateOptions",
    "PerMessageDeflate",
    "parse_extensions",
    "serialize_extensions",
    "negotiate_server",
    "client_offer",
    "accept_client",
    "compression_options",
    "ExtensionParams",
    "Compression",
]

#: An extension's parameters as parsed: ``[(name, value_or_None), ...]``.
ExtensionParams = List[Tuple[str, Optional[str]]]

#: The extension token (RFC 7692 §5), compared case-insensitively.
EXTENSION_NAME = "permessage-deflate"

#: Window bits our compressor uses when the options leave it open
#: (docs/deflate.md: 38 KiB + 11 KiB per connection instead of 300 KiB at 15).
DEFAULT_WINDOW_BITS = 12

#: Messages shorter than this are sent uncompressed (docs/deflate.md).
DEFAULT_THRESHOLD = 128

_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: the empty stored block a sync flush ends with
_EMPTY = b""
_JOIN_LIMIT = 4096  # below this, copying the payload to add the tail beats a second call


class NegotiationError(HandshakeError):
    """The server's ``Sec-WebSocket-Extensions`` answer is not one the client
    can accept (RFC 7692 §7.1, RFC 6455 §4.1): fail the WebSocket connection.
    ``status`` is the response's status (101)."""

    def __init__(self, reason: str, status: int = 101,
                 headers: Iterable[Tuple[str, str]] = ()) -> None:
        super().__init__(status, reason, headers)


# -- Sec-WebSocket-Extensions grammar (RFC 6455 §9.1) --------------------------

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


def _is_token(s: str) -> bool:
    return bool(s) and all(c in _TCHAR for c in s)


def _split_elements(value: str) -> List[str]:
    """Split one header value on commas outside quoted strings."""
    parts = []
    start = 0
    quoted = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ",":
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def _parse_param_value(raw: str) -> Optional[str]:
    """A parameter value: a token, or a quoted string whose unescaped content
    must be a token (RFC 6455 §9.1). None if invalid."""
    raw = raw.strip(_WS)
    if raw[:1] == '"':
        if len(raw) < 2 or raw[-1] != '"':
            return None
        out = []
        body = raw[1:-1]
        i = 0
        while i < len(body):
            c = body[i]
            if c == "\\":
                i += 1
                if i == len(body):
                    return None
                c = body[i]
            elif c == '"':
                return None
            out.append(c)
            i += 1
        raw = "".join(out)
    return raw if _is_token(raw) else None


def _parse_element(element: str) -> Optional[Tuple[str, ExtensionParams]]:
    """``(name, [(param, value_or_None), ...])`` with lowercase names, or None
    if the element does not follow the grammar."""
    pieces = element.split(";")  # ';' cannot occur inside a valid value (a token)
    name = pieces[0].strip(_WS)
    if not _is_token(name):
        return None
    params: ExtensionParams = []
    for piece in pieces[1:]:
        key, eq, raw = piece.partition("=")
        key = key.strip(_WS)
        if not _is_token(key):
            return None
        if eq:
            value = _parse_param_value(raw)
            if value is None:
                return None
        else:
            value = None
        params.append((key.lower(), value))
    return name.lower(), params


def _iter_elements(
    header_values: Union[str, Iterable[str]],
) -> Iterator[Optional[Tuple[str, ExtensionParams]]]:
    """Yield each extension of the header values, in order: a parsed
    ``(name, params)``, or None for one that does not parse. Empty list
    elements are skipped (RFC 9110 §5.6.1)."""
    if isinstance(header_values, str):
        header_values = [header_values]
    for value in header_values:
        for element in _split_elements(value):
            if element.strip(_WS):
                yield _parse_element(element)


def parse_extensions(header_values: Union[str, Iterable[str]]) -> List[Tuple[str, ExtensionParams]]:
    """Parse ``Sec-WebSocket-Extensions`` values (a str or a list of the
    header's values) into ``[(name, [(param, value_or_None), ...]), ...]``,
    names lowercased, quoted values unescaped. Raises ``ValueError`` for an
    element that does not follow RFC 6455 §9.1."""
    result = []
    for parsed in _iter_elements(header_values):
        if parsed is None:
            raise ValueError("invalid Sec-WebSocket-Extensions header")
        result.append(parsed)
    return result


def serialize_extensions(
    extensions: Iterable[Tuple[str, Iterable[Tuple[str, Union[str, int, None]]]]],
) -> str:
    """The header value for ``[(name, [(param, value_or_None), ...]), ...]``.
    Names and values must be tokens (RFC 6455 §9.1), else ``ValueError``."""
    items = []
    for name, params in extensions:
        parts = [name]
        for key, value in params:
            parts.append(key if value is None else f"{key}={value}")
            if not (_is_token(key) and (value is None or _is_token(str(value)))):
                raise ValueError(f"invalid extension parameter {key}={value!r}")
        if not _is_token(name):
            raise ValueError(f"invalid extension name {name!r}")
        items.append("; ".join(parts))
    return ", ".join(items)


# -- permessage-deflate parameters (RFC 7692 §7.1) -----------------------------

_NO_TAKEOVER = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOW_BITS = ("server_max_window_bits", "client_max_window_bits")
_BITS_VALUES = {str(b): b for b in range(8, 16)}  # "8".."15": plain, no sign, no leading zero


def _check_params(params: ExtensionParams, *, offer: bool) -> Union[str, Dict[str, int]]:
    """The permessage-deflate parameters as a dict, or a str telling why they
    are invalid: unknown or repeated names, a value on a no_context_takeover
    flag, window bits other than 8..15 (RFC 7692 §7.1.2). In an offer,
    ``client_max_window_bits`` may come without a value (stored as True)."""
    found: Dict[str, int] = {}
    for key, value in params:
        if key in found:
            return f"repeated parameter {key}"
        if key in _NO_TAKEOVER:
            if value is not None:
                return f"{key} takes no value"
            found[key] = True
        elif key in _WINDOW_BITS:
            if value is None:
                if key == "client_max_window_bits" and offer:  # RFC 7692 §7.1.2.2
                    found[key] = True
                    continue
                return f"{key} needs a value"
            bits = _BITS_VALUES.get(value)
            if bits is None:
                return f"invalid {key} value {value!r} (must be 8 to 15)"
            found[key] = bits
        else:
            return f"unknown parameter {key}"
    return found


def _check_bits(name: str, value: Optional[int]) -> None:
    if value is not None and (type(value) is not int or not 8 <= value <= 15):
        raise ValueError(f"{name} must be None or an int from 8 to 15")


class DeflateOptions:
    """permessage-deflate settings, for either side; the names are RFC 7692's.

    ``server_no_context_takeover``: server: reset our compressor after each
    message (always announced). Client: ask the server to do so.

    ``client_no_context_takeover``: server: ask the client to reset its
    compressor after each message. Client: announce that we do.

    ``server_max_window_bits`` (8..15 or None): server: the largest window we
    compress with, announced in the answer; None means
    :data:`DEFAULT_WINDOW_BITS`. Client: ask the server for at most this
    window (None: ask nothing, as browsers do; some servers can only
    compress with 15 and decline any offer that asks for less).

    ``client_max_window_bits`` (8..15 or None): server: the largest window we
    let the client compress with, requested when its offer allows it (None:
    :data:`DEFAULT_WINDOW_BITS`). Client: offered as the limit of our
    compressor; None offers the parameter without a value (the server
    chooses) and compresses with at most :data:`DEFAULT_WINDOW_BITS`.

    ``threshold``: messages shorter than this many bytes are sent
    uncompressed. ``level`` (zlib 0..9) and ``mem_level`` (1..9) tune our
    compressor. ``backend``: ``"zlib"`` (the standard library, the default),
    ``"zlib-ng"`` (python-zlib-ng), ``"isal"`` (python-isal, levels 0..3: our
    ``level`` is capped at 3), or ``"auto"`` (isal, else zlib-ng, else zlib,
    whichever is installed): faster, but each needs several times the memory
    per connection (docs/deflate.md).

    The largest message accepted after decompression is the Connection's
    ``max_message_size``: it passes the room left to ``decode``.
    """

    __slots__ = (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "threshold",
        "level",
        "mem_level",
        "backend",
    )

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: Optional[int] = None,
        client_max_window_bits: Optional[int] = None,
        threshold: int = DEFAULT_THRESHOLD,
        level: int = 6,
        mem_level: int = 5,
        backend: str = "zlib",
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        if not (type(level) is int and -1 <= level <= 9):
            raise ValueError("level must be an int from -1 to 9")
        if not (type(mem_level) is int and 1 <= mem_level <= 9):
            raise ValueError("mem_level must be an int from 1 to 9")
        if not (type(threshold) is int and threshold >= 0):
            raise ValueError("threshold must be an int >= 0")
        _backend(backend)  # ValueError / ImportError now rather than at the first message
        self.server_no_context_takeover = bool(server_no_context_takeover)
        self.client_no_context_takeover = bool(client_no_context_takeover)
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.threshold = threshold
        self.level = level
        self.mem_level = mem_level
        self.backend = backend

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"DeflateOptions({fields})"

    def accept(
        self, name: str, params: Iterable[Tuple[str, Optional[str]]], accepted: Iterable[object] = (),
    ) -> Optional[Tuple[str, "PerMessageDeflate"]]:
        """Server: accept one offer, the hook
        ``handshake.negotiate_extensions`` calls: ``name`` and ``params``
        (``[(param, value_or_None)]``) as parsed from the request,
        ``accepted``: the extension objects accepted before. Returns
        ``(header_value, PerMessageDeflate)``, or None to decline."""
        if name.lower() != EXTENSION_NAME:
            return None
        if any(getattr(ext, "uses_rsv1", False) for ext in accepted):
            return None  # RSV1 is taken (RFC 6455 §5.2)
        checked = _check_params([(key.lower(), value) for key, value in params], offer=True)
        if isinstance(checked, str):
            return None
        return _accept_offer(checked, self)

    def _extension(self, *, local_max_window_bits: int, remote_max_window_bits: int,
                   local_no_context_takeover: bool, remote_no_context_takeover: bool,
                   ) -> "PerMessageDeflate":
        return PerMessageDeflate(
            threshold=self.threshold,
            level=self.level,
            mem_level=self.mem_level,
            backend=self.backend,
            local_max_window_bits=local_max_window_bits,
            remote_max_window_bits=remote_max_window_bits,
            local_no_context_takeover=local_no_context_takeover,
            remote_no_context_takeover=remote_no_context_takeover,
        )


_TORNADO_KEYS: Dict[str, str] = {"compression_level": "level", "mem_level": "mem_level"}


#: What a ``compression=`` setting takes (see :func:`compression_options`).
Compression = Union[None, bool, str, DeflateOptions, Dict[str, Any]]


def compression_options(value: Compression) -> Optional[DeflateOptions]:
    """Normalize a ``compression=`` setting to :class:`DeflateOptions` or None.

    None or False: no compression. ``"deflate"`` or True: the defaults
    (``DeflateOptions()``). A :class:`DeflateOptions`: itself. A dict: the
    ``DeflateOptions`` keywords, plus Tornado's ``compression_options`` keys
    ``compression_level`` (zlib's level) and ``mem_level``; ``{}`` means the
    defaults (as in Tornado). ``"permessage-deflate"`` is the same as ``"deflate"``. Anything else raises ``ValueError``/``TypeError``.
    """
    if value is None or value is False:
        return None
    if isinstance(value, DeflateOptions):
        return value
    if value is True or (isinstance(value, str) and value.lower() in ("deflate", EXTENSION_NAME)):
        return _DEFAULT_OPTIONS
    if isinstance(value, dict):
        kwargs: Dict[str, Any] = {_TORNADO_KEYS.get(k, k): v for k, v in value.items()}
        return DeflateOptions(**kwargs) if kwargs else _DEFAULT_OPTIONS
    raise ValueError(
        f"compression must be None, 'deflate', a dict or a DeflateOptions, not {value!r}"
    )


# -- server --------------------------------------------------------------------


def _accept_offer(offer: Dict[str, int],
                  options: DeflateOptions) -> Tuple[str, "PerMessageDeflate"]:
    """Accept one valid offer (a dict from ``_check_params``); RFC 7692 §7.1.
    Our settings are upper bounds, so every valid offer can be satisfied."""
    response: List[Tuple[str, Optional[str]]] = []
    # §7.1.1.1: the client may ask us not to take over context; we may do so anyway.
    server_reset = options.server_no_context_takeover or "server_no_context_takeover" in offer
    if server_reset:
        response.append(("server_no_context_takeover", None))
    # §7.1.1.2: we may ask the client not to take over context; its offer may say it won't.
    # In an offer the RFC makes it a hint that the client will reset; Autobahn's
    # clients put it in every offer meaning "I accept it if asked" and take
    # over context unless the answer says otherwise. Echoed, it binds the
    # client under both readings, so our decoder may reset per message.
    client_reset = options.client_no_context_takeover or "client_no_context_takeover" in offer
    if client_reset:
        response.append(("client_no_context_takeover", None))
    # §7.1.2.1: our compressor's window: at most what the client asked for,
    # announced (an answer may carry it even when the offer did not).
    server_bits = options.server_max_window_bits or DEFAULT_WINDOW_BITS
    offered = offer.get("server_max_window_bits")
    if offered is not None:
        server_bits = min(server_bits, offered)
    response.append(("server_max_window_bits", str(server_bits)))
    # §7.1.2.2: the client's window may be limited only if its offer has the
    # parameter; without it, the client may use 15.
    offered = offer.get("client_max_window_bits")
    if offered is None:
        client_bits = 15
    else:
        client_bits = options.client_max_window_bits or DEFAULT_WINDOW_BITS
        if offered is not True:
            client_bits = min(client_bits, offered)
        response.append(("client_max_window_bits", str(client_bits)))
    extension = options._extension(
        local_max_window_bits=server_bits,
        remote_max_window_bits=client_bits,
        local_no_context_takeover=server_reset,
        remote_no_context_takeover=client_reset,
    )
    return serialize_extensions([(EXTENSION_NAME, response)]), extension


def negotiate_server(
    offer_header_values: Union[str, Iterable[str]], options: Optional[DeflateOptions] = None,
) -> Union[Tuple[str, "PerMessageDeflate"], Tuple[None, None]]:
    """Server: answer the client's permessage-deflate offers.

    ``offer_header_values``: the request's ``Sec-WebSocket-Extensions``
    values (``headers.get_all(...)``, or one str). Returns
    ``(response_header_value, extension)``: put the value in the 101
    response's ``Sec-WebSocket-Extensions`` and the extension in
    ``Connection(extensions=[...])``; ``(None, None)`` when no offer was
    acceptable (answer without the header). Offers of other extensions, and
    elements that do not parse, are skipped.
    """
    if options is None:
        options = _DEFAULT_OPTIONS
    for parsed in _iter_elements(offer_header_values):
        if parsed is None or parsed[0] != EXTENSION_NAME:
            continue
        offer = _check_params(parsed[1], offer=True)
        if isinstance(offer, str):
            continue  # RFC 7692 §7.1: decline an offer with invalid parameters
        return _accept_offer(offer, options)
    return None, None


# -- client --------------------------------------------------------------------


def client_offer(options: Optional[DeflateOptions] = None) -> str:
    """Client: the ``Sec-WebSocket-Extensions`` value to send (one offer)."""
    if options is None:
        options = _DEFAULT_OPTIONS
    params: ExtensionParams = []
    if options.server_no_context_takeover:
        params.append(("server_no_context_takeover", None))
    if options.client_no_context_takeover:
        params.append(("client_no_context_takeover", None))
    if options.server_max_window_bits is not None:
        params.append(("server_max_window_bits", str(options.server_max_window_bits)))
    if options.client_max_window_bits is not None:
        params.append(("client_max_window_bits", str(options.client_max_window_bits)))
    else:
        params.append(("client_max_window_bits", None))  # the server may choose
    return serialize_extensions([(EXTENSION_NAME, params)])


def accept_client(
    response_header_values: Union[str, Iterable[str], None], options: Optional[DeflateOptions] = None,
) -> Optional["PerMessageDeflate"]:
    """Client: check the server's ``Sec-WebSocket-Extensions`` answer against
    the offer made with the same ``options``; return the extension for
    ``Connection(extensions=[...])``, or None when the server accepted
    nothing (no header). Raises :class:`NegotiationError` for anything not
    asked for: another extension, more than one, a parameter not offered or
    repeated, window bits larger than offered (RFC 7692 §7.1, RFC 6455 §4.1).
    """
    if options is None:
        options = _DEFAULT_OPTIONS
    if response_header_values is None:
        return None
    elements = list(_iter_elements(response_header_values))
    if not elements:
        return None
    valid = [parsed for parsed in elements if parsed is not None]
    if len(valid) < len(elements):
        raise NegotiationError("invalid Sec-WebSocket-Extensions header in the response")
    if len(valid) > 1:
        raise NegotiationError("server accepted more than one extension; one was offered")
    name, params = valid[0]
    if name != EXTENSION_NAME:
        raise NegotiationError(f"server accepted extension {name!r}, which was not offered")
    answer = _check_params(params, offer=False)
    if isinstance(answer, str):
        raise NegotiationError(f"invalid permessage-deflate response: {answer}")

    # §7.1.1.1: the server may announce no context takeover unasked; if we
    # asked, the answer must say it.
    server_reset = "server_no_context_takeover" in answer
    if options.server_no_context_takeover and not server_reset:
        raise NegotiationError("server did not accept server_no_context_takeover")
    # §7.1.1.2: the server may ask us not to take over context.
    client_reset = options.client_no_context_takeover or "client_no_context_takeover" in answer
    # §7.1.2.1: the server's window: at most what we asked for, if we did.
    server_bits = answer.get("server_max_window_bits")
    asked = options.server_max_window_bits
    if asked is not None:
        if server_bits is None:
            raise NegotiationError("server did not accept server_max_window_bits")
        if server_bits > asked:
            raise NegotiationError(
                f"server_max_window_bits={server_bits} is larger than the {asked} offered"
            )
    # §7.1.2.2: our window: the server may lower what we offered (we always
    # offer the parameter, with or without a value).
    client_bits = answer.get("client_max_window_bits")
    offered = options.client_max_window_bits
    if client_bits is not None and offered is not None and client_bits > offered:
        raise NegotiationError(
            f"client_max_window_bits={client_bits} is larger than the {offered} offered"
        )
    local_bits = min(client_bits or 15, offered or DEFAULT_WINDOW_BITS)
    return options._extension(
        local_max_window_bits=local_bits,
        remote_max_window_bits=server_bits or 15,
        local_no_context_takeover=client_reset,
        remote_no_context_takeover=server_reset,
    )


# -- zlib backends ---------------------------------------------------------------


def _import_backend(name: str) -> ModuleType:
    if name == "zlib":
        return _zlib
    if name == "zlib-ng":
        from zlib_ng import zlib_ng

        return zlib_ng
    if name == "isal":
        from isal import isal_zlib

        return isal_zlib
    raise ValueError(f"unknown deflate backend {name!r} (zlib, zlib-ng, isal or auto)")


_backends: Dict[str, ModuleType] = {}


def _backend(name: str) -> ModuleType:
    """The zlib-compatible module for ``name`` (cached)."""
    module = _backends.get(name)
    if module is None:
        module = _zlib
        if name == "auto":
            for candidate in ("isal", "zlib-ng", "zlib"):
                try:
                    module = _import_backend(candidate)
                    break
                except ImportError:
                    continue
        else:
            module = _import_backend(name)
        _backends[name] = module
    return module


# -- the codec -------------------------------------------------------------------


class PerMessageDeflate:
    """The negotiated permessage-deflate codec: a Connection extension
    (see ``Connection._decode_extensions``). Made by :func:`negotiate_server`
    or :func:`accept_client`; "local" is our compressor, "remote" the peer's.

    ``encode(frame, compress=True)``: pass ``compress=False`` (what
    ``Connection.send_text(..., compress=False)`` does) to send one message
    uncompressed.
    """

    uses_rsv1 = True  # RFC 7692 §6: RSV1 marks a compressed message
    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        threshold: int = DEFAULT_THRESHOLD,
        level: int = 6,
        mem_level: int = 5,
        backend: str = "zlib",
    ) -> None:
        _check_bits("local_max_window_bits", local_max_window_bits)
        _check_bits("remote_max_window_bits", remote_max_window_bits)
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.threshold = threshold
        self.level = level
        self.mem_level = mem_level
        self.backend = backend

        module = _backend(backend)
        level = min(level, 3) if module.__name__.endswith("isal_zlib") else level
        wbits = local_max_window_bits
        if wbits == 8:
            # zlib >= 1.2.9 (and zlib-ng) refuse raw deflate with 8 window
            # bits; zlib 1.2.8 silently used 9. A zlib compressor with 9
            # bits never emits a distance above w_size - MIN_LOOKAHEAD =
            # 512 - 262 = 250 (deflate.h MAX_DIST), so its output fits a
            # 256-byte window: Node's zlib and ws map 8 to 9 for the same
            # reason. isal does not keep that margin (distances up to 512),
            # so 8 always uses the standard library (tests/test_deflate.py).
            module = _zlib
            wbits = 9
        self._compress_module = module
        self._compress_args = (level, module.DEFLATED, -wbits, mem_level)
        self._sync_flush = module.Z_SYNC_FLUSH
        self._decompress_module = _backend(backend)
        self._decompress_wbits = -remote_max_window_bits
        self._decompress_error = self._decompress_module.error

        # zlib compressobj() / decompressobj() objects of the backend's module
        self._compressor: Any = None
        self._decompressor: Any = None
        self._encoding = 0  # message being sent: 0 none, 1 compressed, 2 uncompressed
        self._decoding = False  # a compressed message is being received

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_max_window_bits={self.local_max_window_bits}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_no_context_takeover={self.remote_no_context_takeover})"
        )

    # -- receiving -------------------------------------------------------------

    def decode(self, frame: _F, *, max_size: int) -> _F:
        """Inflate a received data frame of a compressed message; pass others
        through. Produces at most ``max_size`` bytes, else ``PayloadTooBig``
        (1009); undecodable data is ``ProtocolError(1007)``."""
        if frame.opcode:  # the first frame of a message
            if not frame.rsv1:
                return frame  # RFC 7692 §6: RSV1 clear, not compressed
            self._decoding = not frame.fin
        elif not self._decoding:
            return frame  # a fragment of an uncompressed message
        elif frame.fin:
            self._decoding = False
        # (RSV1 on a continuation frame failed in the parser already, RFC 7692 §6.)

        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = self._decompress_module.decompressobj(
                wbits=self._decompress_wbits
            )
        data = frame.payload
        fin = frame.fin
        # Ask for one byte more than allowed: getting it means over the limit,
        # whatever the compression ratio (no zip bomb gets further).
        limit = max_size + 1
        try:
            if fin and len(data) < _JOIN_LIMIT:
                out = decompressor.decompress(data + _TAIL, limit)  # RFC 7692 §7.2.2
            else:
                out = decompressor.decompress(data, limit)
                if fin and len(out) <= max_size and not decompressor.unconsumed_tail:
                    rest = decompressor.decompress(_TAIL, limit - len(out))
                    if rest:  # output zlib held back (rare)
                        out += rest
        except self._decompress_error as exc:
            self._end_decoding()
            raise ProtocolError(1007, f"invalid compressed data: {exc}") from None
        if len(out) > max_size or decompressor.unconsumed_tail:
            self._end_decoding()
            del out, data  # not kept alive by the traceback in Connection.failed
            raise PayloadTooBig(
                f"decompressed message exceeds the limit ({max_size} bytes left for it)"
            )
        if fin and (self.remote_no_context_takeover or decompressor.eof):
            # A new stream per message (RFC 7692 §7.1.1); also after a block
            # with BFINAL set (§7.2.3.4), which ends a zlib stream for good.
            self._decompressor = None
        return type(frame)(frame.opcode, out, fin=fin, rsv1=False)

    @staticmethod
    def max_encoded_size(size: int, frames: int = 1) -> int:
        """The most compressed payload bytes a peer may send for a message
        of at most ``size`` bytes in ``frames`` frames: the Connection's
        limit for RSV1 frames (``FrameParser.max_rsv1_frame_size``), so
        that a legal message of incompressible data is not refused because
        its compressed form is longer than the message limit (issue 11,
        item 7), while a longer frame still fails before its payload
        arrives.

        zlib's own ``deflateBound()`` for a compressor whose parameters are
        unknown (the peer chooses its memLevel and window, RFC 7692 does
        not negotiate them): the larger of its bounds for stored blocks of
        127 bytes (~4 %, memLevel 1) and for fixed-code blocks of 9-bit
        literals (~13 %, small windows where stored blocks are impossible),
        plus 16 bytes per frame for the block each sync flush ends and the
        empty stored block it adds (RFC 7692 §7.2.1). (The tight bound zlib
        gives for its defaults, ~5 bytes per 16 KiB, is not enough: the
        websockets client's memLevel 5 makes 16 MiB of random bytes
        16,818,182 bytes, ~5 per 2 KiB.)
        """
        fixed = size + (size >> 3) + (size >> 8) + (size >> 9) + 4
        stored = size + (size >> 5) + (size >> 7) + (size >> 11) + 7
        return max(fixed, stored) + 16 * frames

    def _end_decoding(self) -> None:
        # The connection is failing: free the decompressor now.
        self._decoding = False
        self._decompressor = None

    # -- sending ---------------------------------------------------------------

    def encode(self, frame: _F, compress: bool = True) -> _F:
        """Compress an outgoing data frame (RSV1 on the first frame of a
        compressed message), or pass it through: a message shorter than
        ``threshold``, or sent with ``compress=False``. The choice is made at
        the first frame and holds for its continuation frames."""
        opcode = frame.opcode
        fin = frame.fin
        if opcode:  # the first frame of a message
            payload = frame.payload
            if not compress or (fin and len(payload) < self.threshold):
                if not fin:
                    self._encoding = 2
                return frame
            self._encoding = 0 if fin else 1
        else:
            encoding = self._encoding
            if fin:
                self._encoding = 0
            if encoding != 1:
                return frame  # a fragment of an uncompressed message
            payload = frame.payload

        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._compress_module.compressobj(*self._compress_args)
        data = compressor.compress(payload) + compressor.flush(self._sync_flush)
        if fin:
            # RFC 7692 §7.2.1: the sync flush ends with 00 00 ff ff; cut it.
            data = data[:-4]
            if self.local_no_context_takeover:
                self._compressor = None  # a new stream (and memory) per message
        return type(frame)(opcode, data, fin=fin, rsv1=opcode != 0)


_DEFAULT_OPTIONS = DeflateOptions()  # after _backend, which it checks
