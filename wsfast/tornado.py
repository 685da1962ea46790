"""A drop-in for :mod:`tornado.websocket`: the same API, served by wsfast.

Change one import line::

    from tornado.websocket import WebSocketHandler, websocket_connect   # before
    from wsfast.tornado import WebSocketHandler, websocket_connect      # after

:class:`WebSocketHandler` is a real ``tornado.web.RequestHandler``: routing,
``prepare()``, ``initialize()``, ``current_user`` and ``@authenticated``,
secure cookies, XSRF, templates (``render_string``), ``tornado.options`` and
``tornado.testing`` are Tornado's own. Tornado's HTTP server answers the
opening handshake (the ``101`` is written by ``RequestHandler.finish()``, so
headers set in ``prepare()`` or ``set_default_headers()`` go with it); then
the connection leaves Tornado:

* plain TCP: the socket is taken from Tornado's ``IOStream`` (a duplicate of
  its descriptor; Tornado closes its own), the bytes Tornado had read past the
  handshake are fed first, and from then on wsfast's
  :class:`~wsfast.protocol.WebSocketProtocol` (an ``asyncio.BufferedProtocol``
  reading into the loop's shared buffer) drives wsfast's sans-IO
  :class:`~wsfast.connection.Connection` and frame codec;
* TLS (``SSLIOStream``): the TLS session cannot leave the stream, so a small
  transport adapter (:class:`_StreamTransport`) reads and writes through
  Tornado's stream and drives the same protocol and Connection.

:func:`websocket_connect` returns a :class:`WebSocketClientConnection` with
Tornado's client API (``read_message``, ``write_message``,
``on_message_callback``, ``ping``, ``close``, ``selected_subprotocol``,
``headers``, ``close_code``/``close_reason``) over wsfast's client
(:mod:`wsfast.client`).

What differs from Tornado is listed in ``docs/tornado.md``. This module needs
Tornado (``pip install wsfast[tornado]``); the rest of wsfast never imports it.
"""

import asyncio
import base64
import binascii
import functools
import importlib
import inspect
import os
import socket
import ssl as _ssl
import sys
import types
import urllib.parse
from typing import (
    TYPE_CHECKING, Any, Awaitable, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple,
    cast,
    Union,
)

import tornado.escape
import tornado.httpclient
import tornado.httputil
import tornado.iostream
import tornado.netutil
import tornado.simple_httpclient
import tornado.web
import tornado.websocket
from tornado import gen
from tornado.ioloop import IOLoop
from tornado.log import app_log, gen_log

from . import client as _client
from . import handshake as _hs
from .connection import Connection, Side, State
from .deflate import Compression, DeflateOptions
from .deflate import compression_options as _compression_options
from .exceptions import ConnectionClosed, HandshakeError, PayloadTooBig
from .http import Request, redact_uri
from .protocol import Options, WebSocketProtocol

if TYPE_CHECKING:
    from .handshake import Extension

__all__ = [
    "WebSocketHandler",
    "WebSocketClientConnection",
    "websocket_connect",
    "WebSocketError",
    "WebSocketClosedError",
]

#: Tornado's own exception (so ``except tornado.websocket.WebSocketError``
#: keeps working after the import line changed).
WebSocketError = tornado.websocket.WebSocketError


class WebSocketClosedError(tornado.websocket.WebSocketClosedError, ConnectionClosed):
    """Writing to a closed WebSocket: both Tornado's
    ``tornado.websocket.WebSocketClosedError`` and wsfast's
    :class:`~wsfast.ConnectionClosed` (``code``, ``reason``)."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        ConnectionClosed.__init__(self, code, reason)


#: Tornado's default ``websocket_max_message_size``.
DEFAULT_MAX_MESSAGE_SIZE = 10 * 2**20
# Messages of one read handled before the loop gets a turn (Tornado yields
# after about as many small frames): a flood cannot hold the event loop.
_EVENTS_PER_TURN = 256
_OPEN = State.OPEN
_NOT_FOR_WEBSOCKETS = ("write", "redirect", "set_header", "set_cookie", "set_status",
                       "flush", "finish")


def _not_for_websockets(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("Method not supported for Web Sockets")


_warned: Set[Tuple[float, float]] = set()
# (max_message_size, ping interval, ping timeout, codec) -> Options
_OPTIONS: Dict[Tuple[Any, ...], Options] = {}


def _ping_settings(interval: Optional[float],
                   timeout: Optional[float]) -> Tuple[Optional[float], Optional[float]]:
    """Tornado's ping settings as wsfast Options (interval, timeout): an
    interval of 0/None turns pings off; the timeout defaults to the interval,
    is capped at it, and 0 turns it off."""
    if not interval:
        return None, None
    if timeout is None:
        timeout = interval
    elif timeout > interval:
        if (interval, timeout) not in _warned:  # once, not per connection
            _warned.add((interval, timeout))
            gen_log.warning(
                "The websocket_ping_timeout (%s) cannot be longer than the "
                "websocket_ping_interval (%s); using %s", timeout, interval, interval,
            )
        timeout = interval
    return interval, (timeout or None)


class _HeaderView:
    """Tornado's ``HTTPHeaders`` seen through the two calls wsfast's
    handshake helpers make (``get_all``: the values; ``get_list``: the
    comma-separated tokens)."""

    __slots__ = ("_headers",)

    def __init__(self, headers: tornado.httputil.HTTPHeaders) -> None:
        self._headers = headers

    def get_all(self, name: str) -> List[str]:
        return self._headers.get_list(name)

    def get_list(self, name: str) -> List[str]:
        return [t.strip() for v in self._headers.get_list(name) for t in v.split(",") if t.strip()]


class _TornadoConnection(Connection):
    """wsfast's Connection, closing over-long messages with Tornado's reason
    (1009 "message too big"; the detail goes to the debug log)."""

    def _fail(self, exc: Any) -> Any:
        if type(exc) is PayloadTooBig:
            gen_log.debug("closing with 1009: %s", exc.reason)
            exc = PayloadTooBig("message too big")
        return super()._fail(exc)


class _ServerProtocol(WebSocketProtocol):
    """wsfast's protocol for a connection taken from Tornado: started in
    WebSocket mode (the 101 was Tornado's), errors logged as Tornado logs
    them, ping timeout closed as Tornado closes it, and a long read handed to
    the handler :data:`_EVENTS_PER_TURN` messages per loop turn."""

    __slots__ = ("_start", "_later")
    connection_class = _TornadoConnection

    def __init__(self, options: Options,
                 start: Tuple["WebSocketHandler", bytes, Sequence["Extension"]]) -> None:
        super().__init__(Side.SERVER, options, _OWNER)
        # (handler, bytes Tornado read past the 101, extensions)
        self._start: Optional[Tuple[WebSocketHandler, bytes, Sequence[Extension]]] = start
        self._later: Optional[List[Any]] = None  # messages of a long read waiting for their turn

    def _begin(self) -> None:
        assert self._start is not None  # once
        handler, buffered, extensions = self._start
        self._start = None
        handler._ws_protocol = handler.ws_connection = self  # open() may write
        if not self.upgrade(handler, b"", None, extensions, on_open=handler._ws_open):
            return
        handler._ws_upgraded(self)
        if buffered and self.connection is not None:
            self._receive_ws(self.connection.receive_data(buffered))

    def _receive_ws(self, events: List[Any]) -> None:
        later = self._later
        if later is not None:  # reading went on (our close was sent): keep the order
            later.extend(events)
            self._later = None
            events = later
        elif len(events) <= _EVENTS_PER_TURN or self.connection.state is not _OPEN:
            self._receive_guarded(events)
            return
        if len(events) > _EVENTS_PER_TURN and self.connection.state is _OPEN:
            self._later = events[_EVENTS_PER_TURN:]
            events = events[:_EVENTS_PER_TURN]
            self.pause_reading()
            self._loop.call_soon(self._next_turn)
        self._receive_guarded(events)

    def _receive_guarded(self, events: List[Any]) -> None:
        try:
            WebSocketProtocol._receive_ws(self, events)
        except asyncio.CancelledError:
            # A sync on_message raised CancelledError: a handler failure (as
            # in Tornado), not a cancellation of anything of ours. The rest
            # of this read is dropped; the connection closes with 1011.
            self._later = None
            self._handler_failed("on_message")
            conn = self.connection
            if conn.state is State.CLOSED:
                out = conn.data_to_send()
                if out and not self._lost:
                    self.transport.write(out)
                self._ws_finished()

    def _next_turn(self) -> None:
        later = self._later
        if later is None:
            return
        self._later = None
        if self.closed:
            return
        self._receive_ws(later)
        if self._later is None and not self.closed:
            backlog = self._backlog
            if backlog is None or len(backlog) < self.options.max_queue:
                self.resume_reading()

    def _handler_failed(self, where: str) -> None:
        # Logged as Tornado logs a handler's error ("Uncaught exception ...",
        # on the handler's log_exception), then closed with 1011.
        handler = self.handler
        try:
            handler.log_exception(*sys.exc_info())
        except Exception:
            app_log.error("Uncaught exception in %s", where, exc_info=True)
        self._on_message = _drop_message
        if self._backlog is not None:
            self._backlog.clear()
            self._backlog = None
        self.close(1011, "internal error")

    def is_closing(self) -> bool:
        """True once either side started closing, or TCP is gone (Tornado's
        ``ws_connection.is_closing()``)."""
        conn = self.connection
        return bool(self.closed or conn is None or conn.state is not _OPEN)

    def _pong_timed_out(self) -> None:
        self._pong_timer = None
        if not self.closed:
            gen_log.debug("%s: no pong within websocket_ping_timeout", self.remote_address)
            self.close(1000, "ping timed out")  # Tornado's code and reason


def _tornado_compression(options: Compression) -> Optional[DeflateOptions]:
    """Tornado's ``compression_options`` dict as wsfast's DeflateOptions:
    as in Tornado, every message is compressed unless the dict says
    otherwise (wsfast's own default skips messages under 128 bytes; pass
    ``"threshold"`` to choose)."""
    if isinstance(options, dict) and "threshold" not in options:
        options = dict(options, threshold=0)
    return _compression_options(options)


def _drop_message(message: object) -> None:
    return None


class _Owner:
    """The protocol's owner for taken-over connections: starts WebSocket
    mode as soon as the transport exists, before the first read."""

    __slots__ = ()

    def connection_made(self, protocol: _ServerProtocol) -> None:
        protocol._begin()

    def connection_lost(self, protocol: _ServerProtocol) -> None:
        pass

    async def handle_request(self, protocol: _ServerProtocol, request: Request) -> None:  # never: no HTTP mode here
        raise RuntimeError("wsfast.tornado protocols serve no HTTP requests")


_OWNER = _Owner()


class _StreamTransport(asyncio.Transport):
    """An asyncio transport over a Tornado ``IOStream`` (used for TLS, whose
    session cannot leave Tornado's ``SSLIOStream``): reads go into the
    protocol's buffer (``get_buffer``/``buffer_updated``), writes to the
    stream, with the water marks the protocol sets."""

    def __init__(self, stream: tornado.iostream.IOStream, protocol: _ServerProtocol) -> None:
        super().__init__()
        self._stream = stream
        self._protocol = protocol
        self._paused = False
        self._resume: Optional["asyncio.Future[None]"] = None
        self._closing = False
        self._pending = 0  # bytes written, not yet sent
        self._high = 256 * 1024
        self._low = 64 * 1024
        self._writing_paused = False
        self._extra = {
            "peername": stream.socket.getpeername() if stream.socket else None,
            "sockname": stream.socket.getsockname() if stream.socket else None,
            "socket": stream.socket,
            "sslcontext": None,
        }

    def start(self) -> None:
        self._protocol.connection_made(self)
        asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        stream = self._stream
        protocol = self._protocol
        exc: Optional[BaseException] = None
        try:
            while True:
                while self._paused:
                    self._resume = asyncio.get_running_loop().create_future()
                    await self._resume
                data = await stream.read_bytes(256 * 1024, partial=True)
                view = memoryview(data)
                while view:
                    buf = protocol.get_buffer(len(view))
                    n = min(len(buf), len(view))
                    buf[:n] = view[:n]
                    protocol.buffer_updated(n)
                    view = view[n:]
        except tornado.iostream.StreamClosedError as error:
            exc = error.real_error
            if exc is None and not self._closing:
                protocol.eof_received()
        except Exception as error:  # a bug of ours: do not leave the peer hanging
            exc = error
            app_log.error("error reading a TLS WebSocket", exc_info=True)
        self._closing = True
        if not stream.closed():
            stream.close()
        protocol.connection_lost(exc)

    # -- asyncio.WriteTransport --------------------------------------------------

    def write(self, data: Union[bytes, bytearray, memoryview]) -> None:
        if self._closing or self._stream.closed():
            return
        n = len(data)
        self._pending += n
        future = self._stream.write(bytes(data))
        future.add_done_callback(functools.partial(self._written, n=n))
        if not self._writing_paused and self._pending > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _written(self, future: "asyncio.Future[None]", n: int) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: a closed stream ends in the read loop
        self._pending -= n
        if self._writing_paused and self._pending <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()

    def writelines(self, parts: Iterable[Union[bytes, bytearray, memoryview]]) -> None:
        self.write(b"".join(parts))

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS streams cannot half-close")

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if high is not None:
            self._high = high
        if low is not None:
            self._low = low

    def get_write_buffer_size(self) -> int:
        return self._pending

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        stream = self._stream
        if self._pending and not stream.closed():
            # Send what is buffered (the close frame) first.
            asyncio.ensure_future(self._close_after_flush())
        else:
            stream.close()
        self._wake()

    async def _close_after_flush(self) -> None:
        try:
            await self._stream.write(b"")
        except tornado.iostream.StreamClosedError:
            pass
        self._stream.close()

    def abort(self) -> None:
        self._closing = True
        self._stream.close()
        self._wake()

    def is_closing(self) -> bool:
        return self._closing or self._stream.closed()

    # -- asyncio.ReadTransport ---------------------------------------------------

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self._wake()

    def is_reading(self) -> bool:
        return not self._paused

    def _wake(self) -> None:
        resume = self._resume
        if resume is not None and not resume.done():
            self._resume = None
            resume.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


def _take_socket(stream: tornado.iostream.IOStream) -> Tuple[socket.socket, bytes]:
    """The socket of Tornado's plain ``IOStream`` for asyncio, and the bytes
    it had read past the handshake. Tornado closes its own descriptor (and
    stops watching it); the connection lives on in a duplicate."""
    buffered = b""
    read_buffer = getattr(stream, "_read_buffer", None)
    size = getattr(stream, "_read_buffer_size", None)
    if read_buffer is not None and size:
        buffered = bytes(read_buffer[:size])
    sock = stream.socket
    new = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    stream.close()
    new.setblocking(False)
    return new, buffered


class WebSocketHandler(tornado.web.RequestHandler):
    """Tornado's ``WebSocketHandler`` API, served by wsfast after the 101.

    Override ``open(*args, **kwargs)``, ``on_message(message)`` (may be a
    coroutine: messages are handled one at a time, in order), ``on_close()``,
    and as needed ``on_ping``, ``on_pong``, ``select_subprotocol``,
    ``check_origin``, ``get_compression_options``. Application settings:
    ``websocket_ping_interval``, ``websocket_ping_timeout``,
    ``websocket_max_message_size`` (or override the properties of the same
    names without the prefix). See ``docs/tornado.md`` for what differs.
    """

    def __init__(self, application: tornado.web.Application,
                 request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> None:
        super().__init__(application, request, **kwargs)
        self.ws_connection: Optional[_ServerProtocol] = None
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._ws_protocol: Optional[_ServerProtocol] = None
        self._ws_subprotocol: Optional[str] = None
        self._on_close_called = False
        self.open_args: Tuple[Any, ...] = ()
        self.open_kwargs: Dict[str, Any] = {}

    # -- the opening handshake (Tornado's HTTP server, Tornado's handler) ---------

    def _request_summary(self) -> str:
        # Tornado's access log line, without credentials in the query
        # (access_token=***): a browser's token travels in the URL.
        return f"{self.request.method} {redact_uri(self.request.uri)} ({self.request.remote_ip})"

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.open_args = args
        self.open_kwargs = kwargs
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return self._refuse(400, 'Can "Upgrade" only to "WebSocket".')
        tokens = [t.strip().lower() for t in headers.get("Connection", "").split(",")]
        if "upgrade" not in tokens:
            return self._refuse(400, '"Connection" must be "Upgrade".')
        # After prepare(): check_origin may rely on what prepare() did.
        error = self._origin_error()
        if error is not None:
            return self._refuse(403, "Cross origin websockets not allowed", error)
        if headers.get("Sec-WebSocket-Version") != "13":
            self.set_header("Sec-WebSocket-Version", "13")
            return self._refuse(426, "Upgrade Required")
        key = headers.get("Sec-WebSocket-Key", "").strip()
        try:
            valid = len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
        except (binascii.Error, UnicodeEncodeError):
            valid = False
        if not headers.get("Host") or not valid:
            return self._refuse(400, "Missing/Invalid WebSocket headers")

        options, extensions = self._accept(key)
        written = self.finish()
        stream = self._detach_stream()
        # The connection leaves Tornado's HTTP server: its per-connection
        # objects (HTTP1ServerConnection, its finished task, the IOStream)
        # need not live as long as the WebSocket (memory per connection).
        self.request.server_connection = None
        try:
            await written
        except tornado.iostream.StreamClosedError:
            stream.close()
            self.on_ws_connection_close()
            return
        if isinstance(stream, tornado.iostream.SSLIOStream):
            protocol = _ServerProtocol(options, (self, b"", extensions))
            _StreamTransport(stream, protocol).start()
            return
        try:
            sock, buffered = _take_socket(stream)
        except OSError:  # the peer is gone already
            stream.close()
            self.on_ws_connection_close()
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _ServerProtocol(options, (self, buffered, extensions)), sock
            )
        except OSError:
            sock.close()
            self.on_ws_connection_close()

    def _refuse(self, status: int, message: str, detail: Optional[str] = None) -> None:
        self.set_status(status)
        self.finish(message)
        gen_log.debug("%s%s", message, f": {detail}" if detail else "")

    def _origin_error(self) -> Optional[str]:
        """Tornado's cross-origin rule for WebSockets: same origin by
        ``Sec-Fetch-Site`` (or, without it, ``Origin`` equal to ``Host``) or
        no ``Origin`` at all passes; anything else asks ``check_origin``."""
        headers = self.request.headers
        origin = headers.get("Origin")
        site = headers.get("Sec-Fetch-Site")
        if site is None:
            if origin is None:
                return None  # not a browser
            netloc = urllib.parse.urlsplit(origin).netloc.lower()
            if netloc == headers.get("Host", "").lower() or self.check_origin(origin):
                return None
            return f"Origin {origin!r} not allowed"
        if site in ("same-origin", "none"):
            return None
        if origin and self.check_origin(origin):
            return None
        return f"Sec-Fetch-Site {site} & origin {origin!r} not allowed"

    def _accept(self, key: str) -> Tuple[Options, Sequence["Extension"]]:
        """Answer the upgrade (headers of the 101) and return the wsfast
        Options and negotiated extensions of the connection."""
        headers = self.request.headers
        view = _HeaderView(headers)
        offered = view.get_list("Sec-WebSocket-Protocol")
        selected = self.select_subprotocol(offered)  # once, even with none offered
        if selected:
            if selected not in offered:
                raise ValueError(f"select_subprotocol returned {selected!r}, not one of {offered}")
            self.set_header("Sec-WebSocket-Protocol", selected)
        else:
            selected = None
        self._ws_subprotocol = selected
        extensions: Sequence[Extension] = ()
        compression = self.get_compression_options()
        if compression is not None and headers.get("Sec-WebSocket-Extensions"):
            deflate = _tornado_compression(compression)
            factories = (deflate,) if deflate is not None else ()
            answer, extensions = _hs.negotiate_extensions(_hs.parse_extensions(view), factories)
            if answer:
                self.set_header("Sec-WebSocket-Extensions", answer)
        interval, timeout = _ping_settings(self.ping_interval, self.ping_timeout)
        # "cython"/"python"/None (the best available)
        settings = (self.max_message_size, interval, timeout, self.settings.get("wsfast_codec"))
        options = _OPTIONS.get(settings)
        if options is None:  # one Options per setting, not per connection
            options = Options(max_message_size=settings[0], ping_interval=interval,
                              ping_timeout=timeout, open_timeout=None, codec=settings[3])
            if len(_OPTIONS) < 64:
                _OPTIONS[settings] = options
        self.clear_header("Content-Type")
        self.set_status(101)
        self.set_header("Upgrade", "websocket")
        self.set_header("Connection", "Upgrade")
        self.set_header("Sec-WebSocket-Accept", _hs.accept_key(key))
        return options, extensions

    def _detach_stream(self) -> tornado.iostream.IOStream:
        for name in _NOT_FOR_WEBSOCKETS:
            setattr(self, name, _not_for_websockets)
        return self.detach()

    # -- called by the protocol ------------------------------------------------------

    def _ws_open(self) -> Optional[Awaitable[None]]:
        return self.open(*self.open_args, **self.open_kwargs)

    def _ws_upgraded(self, protocol: _ServerProtocol) -> None:
        on_message = self.on_message
        if inspect.iscoroutinefunction(on_message) or gen.is_coroutine_function(on_message):
            protocol._on_message = self._guarded_on_message

    def _guarded_on_message(self, message: Union[str, bytes]) -> Optional[Awaitable[None]]:
        result = self.on_message(message)
        if result is None:
            return None
        return self._guard(result)

    async def _guard(self, awaitable: Awaitable[None]) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and getattr(task, "cancelling", lambda: 1)():
                raise  # the connection's task itself is cancelled
            # on_message cancelled itself (or awaited something cancelled):
            # a handler failure, logged and closed, as in Tornado.
            raise RuntimeError("on_message was cancelled") from None

    def _ws_closed(self) -> None:
        protocol = self._ws_protocol
        code: Optional[int] = None
        reason: Optional[str] = None
        conn = protocol.connection if protocol is not None else None
        if conn is not None and conn.close_received is not None and conn.close_received.code != 1005:
            # As in Tornado: None when the close frame had no reason.
            code, reason = conn.close_received.code, conn.close_received.reason or None
        try:
            self.on_ws_connection_close(code, reason)
        except Exception:
            self.log_exception(*sys.exc_info())  # as Tornado logs a handler's error

    # -- the API of tornado.websocket.WebSocketHandler ------------------------------

    @property
    def ping_interval(self) -> Optional[float]:
        """Seconds between keepalive pings (``websocket_ping_interval``; 0 or
        None: no pings)."""
        return self.settings.get("websocket_ping_interval", None)

    @property
    def ping_timeout(self) -> Optional[float]:
        """Close (1000, "ping timed out") if no pong comes within this many
        seconds of a ping (``websocket_ping_timeout``; default: the interval,
        at most the interval; 0: never)."""
        return self.settings.get("websocket_ping_timeout", None)

    @property
    def max_message_size(self) -> int:
        """Largest message accepted (``websocket_max_message_size``, 10 MiB by
        default); a bigger one closes the connection with 1009."""
        size: int = self.settings.get("websocket_max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
        return size

    def open(self, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        """Called when the WebSocket is open (may be a coroutine: messages
        wait until it returns)."""
        return None

    def on_message(self, message: Union[str, bytes]) -> Optional[Awaitable[None]]:
        """Called for each message (``str`` or ``bytes``); may be a coroutine."""
        raise NotImplementedError

    def on_ping(self, data: bytes) -> None:
        """Called for each ping (the pong is sent by wsfast)."""

    def on_pong(self, data: bytes) -> None:
        """Called for each pong."""

    def on_close(self) -> None:
        """Called once when the WebSocket is closed; ``close_code`` and
        ``close_reason`` hold what the peer's close frame said (None if none)."""

    def select_subprotocol(self, subprotocols: List[str]) -> Optional[str]:
        """Return one of ``subprotocols`` (maybe empty) or None; called once."""
        return None

    @property
    def selected_subprotocol(self) -> Optional[str]:
        """The subprotocol :meth:`select_subprotocol` chose (or None)."""
        return self._ws_subprotocol

    def get_compression_options(self) -> Optional[Dict[str, Any]]:
        """None (the default): no compression; a dict (``{}`` for the
        defaults; ``compression_level``, ``mem_level``): permessage-deflate."""
        return None

    def check_origin(self, origin: str) -> bool:
        """Accept a cross-origin ``origin``? Called only for requests that are
        not same-origin; by default Tornado's ``check_trusted_origin`` (the
        ``trusted_origins`` setting)."""
        check = getattr(self, "check_trusted_origin", None)
        if check is not None:
            return bool(check(origin))
        return origin in (self.settings.get("trusted_origins") or ())

    def write_message(self, message: Union[str, bytes, bytearray, memoryview, Dict[str, Any]],
                      binary: bool = False) -> Awaitable[None]:
        """Send ``message``: ``str`` (text, or UTF-8 binary if ``binary``),
        bytes (binary if ``binary``, else text as in Tornado: must be UTF-8),
        or a dict (JSON text). Returns an awaitable that completes once the
        write buffer is below its low-water mark. Raises
        :class:`WebSocketClosedError` once the connection is closing."""
        protocol = self.ws_connection
        if protocol is None or protocol._lost:
            raise WebSocketClosedError()
        kind = type(message)
        if kind is dict:
            message = tornado.escape.json_encode(message)
        elif not binary and kind is not str:
            message = bytes(cast(bytes, message)).decode("utf-8")  # Tornado's text frame of bytes
        try:
            drained: Awaitable[None] = protocol.write_message(message, binary)
        except ConnectionClosed as exc:
            raise WebSocketClosedError(exc.code, exc.reason) from None
        return drained

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Send a ping (``data``: at most 125 bytes); ``on_pong`` gets the answer."""
        data = tornado.escape.utf8(data)
        protocol = self.ws_connection
        if protocol is None or protocol.closed:
            raise WebSocketClosedError()
        try:
            protocol.send_ping(data)
        except ConnectionClosed as exc:
            raise WebSocketClosedError(exc.code, exc.reason) from None

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Start the closing handshake; ``on_close`` follows. No ``code`` and
        no ``reason``: a close frame without a status (as in Tornado)."""
        protocol = self.ws_connection
        if protocol is not None:
            if code is None:
                code = 1000 if reason is not None else 1005
            protocol.close(code, reason or "")
            self.ws_connection = None

    def set_nodelay(self, value: bool) -> None:
        """Turn Nagle's algorithm off (True; asyncio's default) or on."""
        assert self.ws_connection is not None
        sock = self.ws_connection.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)
            except OSError:
                pass  # closed meanwhile

    def on_connection_close(self) -> None:
        if self.ws_connection is not None:
            self.ws_connection.abort()
            self.ws_connection = None
        if not self._on_close_called:
            self._on_close_called = True
            self.on_close()
            self._break_cycles()

    def on_ws_connection_close(self, close_code: Optional[int] = None,
                               close_reason: Optional[str] = None) -> None:
        self.close_code = close_code
        self.close_reason = close_reason
        self.ws_connection = None
        self.on_connection_close()

    def _break_cycles(self) -> None:
        # finish() ran at the 101; keep what render_string needs until closed.
        if self.get_status() != 101 or self._on_close_called:
            super()._break_cycles()

    def get_websocket_protocol(self) -> Optional[WebSocketProtocol]:
        """The wsfast protocol once open (Tornado returns its own protocol
        object here; with wsfast the upgrade happens in :meth:`get`)."""
        return self._ws_protocol


# -- the client ----------------------------------------------------------------------


class _ClientHandler(_client.ClientConnection):
    """wsfast's client connection, its events routed through the Tornado
    connection's ``protocol._handle_message`` (where Tornado routes them)."""

    tornado_protocol: Optional["_ClientProtocol"] = None  # set right after the handshake

    def on_message(self, message: Union[str, bytes]) -> None:
        facade = self.tornado_protocol
        if facade is None:  # messages before the facade exists: queued as usual
            super().on_message(message)
            return
        facade._handle_message(1 if type(message) is str else 2, message)

    def on_ping(self, data: bytes) -> None:
        facade = self.tornado_protocol
        if facade is not None:
            facade._handle_message(0x9, data)

    def on_pong(self, data: bytes) -> None:
        facade = self.tornado_protocol
        if facade is not None:
            facade._handle_message(0xA, data)
        else:
            super().on_pong(data)

    def _deliver(self, message: Union[str, bytes]) -> None:
        super().on_message(message)

    def _ws_closed(self) -> None:
        super()._ws_closed()
        facade = self.tornado_protocol
        if facade is not None:
            facade._closed()


class _ClientWireProtocol(_client.ClientProtocol):
    """The client's protocol, counting the bytes received after the 101
    (Tornado's ``ws.protocol._wire_bytes_in``). (The client's fast path
    does not apply: _ClientHandler has its own ``on_message``.)"""

    __slots__ = ("wire_bytes_in",)

    def __init__(self, side: Side, options: Options, owner: Any) -> None:
        super().__init__(side, options, owner)
        self.wire_bytes_in = 0

    def buffer_updated(self, nbytes: int) -> None:
        if self.connection is not None:
            self.wire_bytes_in += nbytes
        super().buffer_updated(nbytes)


class _connect(_client.connect):
    connection_class = _ClientHandler
    protocol_class = _ClientWireProtocol


class _ClientStream:
    """What Tornado's ``ws.stream`` offers that applications use: ``close()``."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.abort()

    def closed(self) -> bool:
        return bool(self._protocol.closed)

    def set_nodelay(self, value: bool) -> None:
        sock = self._protocol.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if value else 0)


class _ClientProtocol:
    """The client's ``ws.protocol``: where received frames are dispatched
    (``_handle_message(opcode, data)``), with Tornado's keepalive, counters
    and close record."""

    def __init__(self, owner: "WebSocketClientConnection", client: _ClientHandler,
                 ping_interval: Optional[float], ping_timeout: Optional[float]) -> None:
        self._owner = owner
        self._client = client
        self._wsfast = cast(_ClientWireProtocol, client.protocol)
        self.selected_subprotocol: Optional[str] = client.subprotocol
        self._message_bytes_in = 0
        self._message_bytes_out = 0
        self._wire_bytes_out = 0
        self._received_pong = False
        self._ping_interval, self._ping_timeout = _ping_settings(ping_interval, ping_timeout)
        self._ping_handle: Optional[asyncio.TimerHandle] = None
        self._loop = asyncio.get_running_loop()
        if self._ping_interval:
            self._ping_handle = self._loop.call_later(self._ping_interval, self._send_keepalive)

    # -- receiving -----------------------------------------------------------------

    def _handle_message(self, opcode: int, data: Any) -> None:
        owner = self._owner
        if opcode == 0x1:
            self._message_bytes_in += len(data) if data.isascii() else len(data.encode("utf-8"))
            self._client._deliver(data)
        elif opcode == 0x2:
            self._message_bytes_in += len(data)
            self._client._deliver(data)
        elif opcode == 0x9:
            owner._run_hook(owner.on_ping, data)
        elif opcode == 0xA:
            self._received_pong = True
            owner._run_hook(owner.on_pong, data)

    def _closed(self) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None
        self._owner._on_closed()

    # -- keepalive (Tornado's: a ping each interval, closed if no pong in time) ------

    def _send_keepalive(self) -> None:
        self._ping_handle = None
        if self.is_closing():
            return
        self._received_pong = False
        self.write_ping(b"")
        timeout = self._ping_timeout
        interval = self._ping_interval
        assert interval is not None  # only scheduled with an interval
        if timeout:
            self._ping_handle = self._loop.call_later(timeout, self._check_pong)
        else:
            self._ping_handle = self._loop.call_later(interval, self._send_keepalive)

    def _check_pong(self) -> None:
        self._ping_handle = None
        if self.is_closing():
            return
        if not self._received_pong:
            self.close(None, "ping timed out")
            return
        assert self._ping_interval is not None and self._ping_timeout is not None  # as scheduled
        wait = max(0.0, self._ping_interval - self._ping_timeout)
        self._ping_handle = self._loop.call_later(wait, self._send_keepalive)

    # -- sending -------------------------------------------------------------------

    def write_message(self, message: Union[str, bytes, bytearray, memoryview, Dict[str, Any]],
                      binary: bool = False) -> "asyncio.Future[None]":
        if self._wsfast._lost:
            raise WebSocketClosedError()
        if isinstance(message, dict):
            message = tornado.escape.json_encode(message)
        data: Union[str, bytes]
        if binary:
            data = tornado.escape.utf8(message)  # type: ignore[arg-type]  # a memoryview too
        elif isinstance(message, str):
            data = message
        else:
            data = bytes(message).decode("utf-8")
        protocol = self._wsfast
        conn = protocol.connection
        try:
            drained = protocol.drained()  # raises once the transport is closing
            frame = conn.send_text(data) if type(data) is str else conn.send_binary(data)  # type: ignore[arg-type]  # (dispatched on the message's type)
        except ConnectionClosed as exc:
            raise WebSocketClosedError(exc.code, exc.reason) from None
        self._message_bytes_out += len(data.encode("utf-8")) if type(data) is str else len(data)
        self._wire_bytes_out += len(frame)
        protocol._send(frame)
        if drained is protocol._done and protocol._write_paused:
            drained = protocol.drained()  # this write crossed the high-water mark
        return _as_future(drained)

    def write_ping(self, data: bytes) -> None:
        try:
            self._wsfast.send_ping(data)
        except ConnectionClosed as exc:
            raise WebSocketClosedError(exc.code, exc.reason) from None

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        if code is None:
            code = 1000 if reason is not None else 1005
        self._wsfast.close(code, reason or "")

    def abort(self) -> None:
        self._wsfast.abort()

    def is_closing(self) -> bool:
        protocol = self._wsfast
        conn = protocol.connection
        return bool(protocol.closed or conn is None or conn.state is not _OPEN)

    @property
    def _wire_bytes_in(self) -> int:
        return self._wsfast.wire_bytes_in

    @property
    def close_code(self) -> Optional[int]:
        return self._owner.close_code

    @property
    def close_reason(self) -> Optional[str]:
        return self._owner.close_reason

    @property
    def stream(self) -> _ClientStream:
        return _ClientStream(self._wsfast)


def _as_future(awaitable: Awaitable[None]) -> "asyncio.Future[None]":
    if isinstance(awaitable, asyncio.Future):
        return awaitable
    return asyncio.ensure_future(awaitable)


class WebSocketClientConnection:
    """Tornado's ``WebSocketClientConnection`` API over wsfast's client (see
    :func:`websocket_connect`)."""

    def __init__(self, client: _ClientHandler, response_headers: tornado.httputil.HTTPHeaders,
                 on_message_callback: Optional[Callable[[Union[str, bytes, None]], object]],
                 ping_interval: Optional[float], ping_timeout: Optional[float]) -> None:
        self._client = client
        self.headers = response_headers
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self._on_message_callback = on_message_callback
        self._reader: Optional["asyncio.Future[None]"] = None
        self._read_lock: Optional[asyncio.Lock] = None
        self._closed_seen = False
        self.protocol: Optional[_ClientProtocol] = _ClientProtocol(
            self, client, ping_interval, ping_timeout)
        self._wire_stats = self.protocol
        client.tornado_protocol = self.protocol
        # Messages that came with the 101, before this object existed.
        early = list(client._messages)
        client._messages.clear()
        for message in early:
            self._wire_stats._handle_message(1 if type(message) is str else 2, message)
        if on_message_callback is not None:
            self._reader = asyncio.ensure_future(self._read_loop())
        if client.closed:
            self._wire_stats._closed()

    # -- Tornado's API ----------------------------------------------------------------

    @property
    def selected_subprotocol(self) -> Optional[str]:
        subprotocol: Optional[str] = self._client.subprotocol
        return subprotocol

    @property
    def stream(self) -> _ClientStream:
        return _ClientStream(self._client.protocol)

    def write_message(self, message: Union[str, bytes, bytearray, memoryview, Dict[str, Any]],
                      binary: bool = False) -> "asyncio.Future[None]":
        """Send a message (``str``, bytes, or dict → JSON); returns a Future
        for flow control. Raises :class:`WebSocketClosedError` once closed."""
        if self.protocol is None:
            raise WebSocketClosedError(1006, "Client connection has been closed")
        return self.protocol.write_message(message, binary=binary)

    def read_message(
        self, callback: Optional[Callable[["asyncio.Future[Union[str, bytes, None]]"], None]] = None,
    ) -> "asyncio.Future[Union[str, bytes, None]]":
        """A Future of the next message, or None once the connection is closed.
        With ``on_message_callback`` given, messages go there instead."""
        future: "asyncio.Future[Union[str, bytes, None]]" = self._client._loop.create_task(
            self._read())
        if callback is not None:
            IOLoop.current().add_future(future, callback)
        return future

    async def _read(self) -> Union[str, bytes, None]:
        # Several read_message() calls may wait at once (Tornado's is a
        # queue): they get the messages in the order they were called.
        lock = self._read_lock
        if lock is None:
            lock = self._read_lock = asyncio.Lock()
        async with lock:
            try:
                message: Union[str, bytes] = await self._client.recv()
            except ConnectionClosed:
                return None
            return message

    async def _read_loop(self) -> None:
        callback = self._on_message_callback
        assert callback is not None  # only started with one
        while True:
            message = await self._read()
            try:
                callback(message)
            except Exception:
                app_log.error("Uncaught exception in on_message_callback", exc_info=True)
            if message is None:
                return

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Send a ping (``data``: at most 125 bytes)."""
        data = tornado.escape.utf8(data)
        if len(data) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if self.protocol is None:
            raise WebSocketClosedError()
        self.protocol.write_ping(data)

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Start the closing handshake (``code``/``reason`` as in
        ``WebSocketHandler.close``)."""
        protocol = self.protocol
        if protocol is not None:
            protocol.close(code, reason)
            self.protocol = None

    def on_ping(self, data: bytes) -> None:
        """Hook: a ping arrived (answered by wsfast)."""

    def on_pong(self, data: bytes) -> None:
        """Hook: a pong arrived."""

    # -- internals ---------------------------------------------------------------------

    def _run_hook(self, hook: Callable[[bytes], object], data: bytes) -> None:
        try:
            hook(data)
        except Exception:
            app_log.error("Uncaught exception in %s", hook, exc_info=True)

    def _on_closed(self) -> None:
        if self._closed_seen:
            return
        self._closed_seen = True
        conn = self._client.protocol.connection
        received = conn.close_received if conn is not None else None
        if received is not None and received.code != 1005:
            self.close_code, self.close_reason = received.code, received.reason or None


class _WithDefaults:
    """An ``HTTPRequest`` whose unset (None) settings read as Tornado's
    defaults (what ``tornado.httpclient`` does for its own requests)."""

    _DEFAULTS = {"connect_timeout": 20.0, "request_timeout": 20.0, "validate_cert": True}

    def __init__(self, request: tornado.httpclient.HTTPRequest) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._request, name)
        if value is None:
            value = self._DEFAULTS.get(name)
        return value


def _ssl_context(request: Any) -> _ssl.SSLContext:
    options = request.ssl_options
    if isinstance(options, _ssl.SSLContext):
        return options
    if isinstance(options, dict):
        return tornado.netutil.ssl_options_to_context(options)
    context = _ssl.create_default_context(cafile=request.ca_certs)
    if request.validate_cert is False:
        context.check_hostname = False
        context.verify_mode = _ssl.CERT_NONE
    if request.client_cert:
        context.load_cert_chain(request.client_cert, request.client_key)
    return context


async def _connect_tornado(
    request: Any, on_message_callback: Optional[Callable[[Union[str, bytes, None]], object]],
    compression_options: Optional[Dict[str, Any]], ping_interval: Optional[float],
    ping_timeout: Optional[float], max_message_size: int, subprotocols: Optional[List[str]],
    resolver: Optional[tornado.netutil.Resolver],
) -> WebSocketClientConnection:
    url = request.url
    if request.proxy_host:
        raise NotImplementedError("wsfast.tornado.websocket_connect does not support proxies")
    if request.network_interface:
        raise NotImplementedError("wsfast.tornado.websocket_connect has no network_interface")
    scheme, sep, rest = url.partition(":")
    if scheme in ("http", "https"):
        url = {"http": "ws", "https": "wss"}[scheme] + sep + rest
    headers: List[Tuple[str, str]] = []
    for name, value in request.headers.get_all():
        if name.lower() in ("host", "upgrade", "connection", "sec-websocket-key",
                            "sec-websocket-version", "sec-websocket-protocol",
                            "sec-websocket-extensions"):
            continue
        headers.append((name, value))
    if request.auth_username is not None:
        if request.auth_mode not in (None, "basic"):
            raise ValueError(f"unsupported auth_mode {request.auth_mode!r}")
        token = f"{request.auth_username}:{request.auth_password or ''}"
        headers.append(("Authorization", "Basic " + base64.b64encode(token.encode()).decode()))
    kwargs: Dict[str, Any] = {}
    secure, host, port, _, _ = _client.parse_uri(url)
    if secure:
        kwargs["ssl"] = _ssl_context(request)
    if resolver is not None:
        addresses = await resolver.resolve(host, port)
        kwargs["host"], kwargs["port"] = addresses[0][1][:2]
        if secure:
            kwargs["server_hostname"] = host
    timeouts = [t for t in (request.connect_timeout, request.request_timeout) if t]
    user_agent = request.user_agent or _client.USER_AGENT
    try:
        client = await _connect(
            url,
            subprotocols=subprotocols,
            extra_headers=headers,
            max_message_size=max_message_size,
            compression=_tornado_compression(compression_options),
            open_timeout=min(timeouts) if timeouts else None,
            # Keepalive is Tornado's (ping_interval/ping_timeout, in
            # _ClientProtocol), off unless asked for: not wsfast's default.
            ping_interval=None,
            user_agent=user_agent,
            max_redirects=0,  # Tornado's websocket_connect raises on a 3xx
            proxy=None,  # Tornado's websocket_connect reads no *_proxy variables
            **kwargs,
        )
    except HandshakeError as exc:
        if exc.status == 101:
            raise WebSocketError(f"invalid WebSocket handshake response: {exc.reason}") from None
        if 200 <= exc.status < 300:
            raise WebSocketError("Non-websocket response") from None
        raise tornado.httpclient.HTTPClientError(exc.status, exc.reason) from None
    except TimeoutError as exc:
        # (tornado.httpclient has no HTTPTimeoutError: this raised AttributeError)
        raise tornado.simple_httpclient.HTTPTimeoutError(str(exc)) from None
    response_headers = tornado.httputil.HTTPHeaders()
    assert client.response is not None  # (the handshake's)
    for name, value in client.response.headers.items():
        response_headers.add(name, value)
    return WebSocketClientConnection(
        cast(_ClientHandler, client), response_headers, on_message_callback, ping_interval,
        ping_timeout,
    )


def websocket_connect(
    url: Union[str, tornado.httpclient.HTTPRequest],
    callback: Optional[Callable[["asyncio.Future[WebSocketClientConnection]"], None]] = None,
    connect_timeout: Optional[float] = None,
    on_message_callback: Optional[Callable[[Union[str, bytes, None]], object]] = None,
    compression_options: Optional[Dict[str, Any]] = None,
    ping_interval: Optional[float] = None,
    ping_timeout: Optional[float] = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    subprotocols: Optional[List[str]] = None,
    resolver: Optional[tornado.netutil.Resolver] = None,
) -> "asyncio.Future[WebSocketClientConnection]":
    """Tornado's ``websocket_connect``: a Future of a
    :class:`WebSocketClientConnection`. ``url``: a ``ws://``/``wss://`` URL
    or a ``tornado.httpclient.HTTPRequest`` (its headers, timeouts, TLS
    settings and basic auth are used). A refusal raises
    ``tornado.httpclient.HTTPClientError`` (``.code``: the status), a 2xx
    answer ``WebSocketError``, a network failure ``OSError``."""
    if isinstance(url, tornado.httpclient.HTTPRequest):
        if connect_timeout is not None:
            raise ValueError("connect_timeout goes in the HTTPRequest when one is given")
        request = url
        request.headers = tornado.httputil.HTTPHeaders(request.headers)
    else:
        request = tornado.httpclient.HTTPRequest(url, connect_timeout=connect_timeout)
    loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]  # (tornado's AsyncIOLoop)
    future: "asyncio.Future[WebSocketClientConnection]" = loop.create_task(
        _connect_tornado(_WithDefaults(request), on_message_callback, compression_options, ping_interval,
                         ping_timeout, max_message_size, subprotocols, resolver)
    )
    if callback is not None:
        import warnings

        warnings.warn(
            "The callback argument to websocket_connect is deprecated. "
            "Use the returned Future instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        IOLoop.current().add_future(future, callback)
    return future


# -- ``import wsfast.tornado as tornado`` --------------------------------------------
#
# Code that names the classes through the package (``import tornado`` then
# ``tornado.websocket.WebSocketHandler``, as Tornado's demos do) switches by
# changing that one line: this module then stands for the ``tornado`` package,
# its ``websocket`` being wsfast's and every other name Tornado's own
# (``tornado.web``, ``tornado.escape``, ``tornado.version``, ...).

websocket = types.ModuleType(
    "wsfast.tornado.websocket", "tornado.websocket's API, served by wsfast (see wsfast.tornado)"
)
for _name in __all__:
    setattr(websocket, _name, globals()[_name])
del _name


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(tornado, name, None)  # tornado.version, version_info
    if value is not None:
        return value
    try:
        return importlib.import_module("tornado." + name)
    except ModuleNotFoundError:
        raise AttributeError(f"module 'wsfast.tornado' has no attribute {name!r}") from None
