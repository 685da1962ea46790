"""The WebSocket client::

    async with wsfast.connect("ws://localhost:8888/websocket") as ws:
        await ws.send("Hello")
        print(await ws.recv())
        async for message in ws:      # ends when the server closes normally
            ...

``connect()`` is awaitable (``ws = await wsfast.connect(...)``) and an async
context manager (closes on exit). It runs the opening handshake (RFC 6455
§4.1), checking the 101 status, ``Upgrade``, ``Connection`` and
``Sec-WebSocket-Accept`` and refusing subprotocols or extensions it did not
offer (:class:`~wsfast.HandshakeError`), then drives the connection through
the same adapter as the server (:mod:`wsfast.protocol`).

Compression: ``connect(uri, compression="deflate")`` offers permessage-deflate
(RFC 7692; ``DeflateOptions`` or a dict for other settings). It is off by
default, as in Tornado and as the server's default: a compressed connection
costs CPU per message and ~50 KiB of zlib state, and the uncompressed path is
wsfast's fast path (docs/deflate.md). Unlike ``websockets``, which offers it
by default, turn it on where the bytes on the wire matter.
"""

import asyncio
import base64
import collections
import inspect
import os
import random
import socket
import ssl as _ssl
import time
from types import ModuleType, TracebackType
from typing import (
    TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Deque, Dict, Generator,
    Iterable, List, Optional, Tuple, Type, Union,
)
from urllib.parse import unquote, urljoin, urlsplit

from . import __version__ as _version
from . import handshake as _hs
from .connection import Fragment, Side, State
from .deflate import Compression, DeflateOptions, PerMessageDeflate
from .deflate import client_offer as _client_offer
from .deflate import compression_options as _compression_options
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidRedirect,
    ProxyError,
)
from .http import HeadersLike, Response, _header_pairs, redact_uri
from .protocol import (
    _BATCH_MAX,
    _JOIN_MAX,
    _OPEN,
    _UNCOPIED_MIN,
    _WS,
    Options,
    WebSocketProtocol,
    _batch_bytes,
)
from .proxy import check_proxy, is_tls_proxy, open_tls_tunnel, open_tunnel, proxy_from_environment

if TYPE_CHECKING:
    from .broadcast import Message

__all__ = ["connect", "ClientConnection", "ClientProtocol"]

USER_AGENT = f"wsfast/{_version}"

#: What :meth:`ClientConnection.send` takes: text, bytes-like, a dict (JSON
#: text), or an iterable or async iterable of str (or of bytes-like) pieces of
#: one fragmented message.
Sendable = Union[
    str, bytes, bytearray, memoryview, Dict[str, Any],
    Iterable[str], Iterable[bytes], AsyncIterable[str], AsyncIterable[bytes],
]
#: A message received: ``str`` (text) or ``bytes`` (binary).
Data = Union[str, bytes]


def parse_uri(uri: str) -> Tuple[bool, str, int, str, str]:
    """``(secure, host, port, resource, host_header)`` for a ws:// or wss:// URI."""
    parts = urlsplit(uri)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URI (ws:// or wss://): {uri!r}")
    secure = parts.scheme == "wss"
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {uri!r}")
    default_port = 443 if secure else 80
    port = parts.port or default_port
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    return secure, host, port, resource, host_header


def basic_auth(uri: str) -> Optional[str]:
    """The ``Authorization: Basic`` value for the user information of ``uri``
    (``ws://user:pass@host/``, percent-decoded; RFC 7617), or None."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return None
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


#: The redirect statuses the handshake follows (RFC 9110 §15.4).
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
#: Handshake refusals that are worth retrying when reconnecting (the server
#: or a proxy in front of it is failing or restarting).
RETRY_STATUSES = frozenset((500, 502, 503, 504))


def _origin_of(uri: str) -> Tuple[Optional[str], int]:
    parts = urlsplit(uri)
    return parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80)


def redirect_target(uri: str, location: str) -> str:
    """The ws:// or wss:// URI a ``Location`` header sends ``uri`` to
    (relative references resolved, http(s):// mapped to ws(s)://)."""
    target = urljoin(uri, location.strip())
    scheme, sep, rest = target.partition(":")
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    return scheme + sep + rest


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


def _cancelling() -> bool:
    """Is a cancellation of the current task pending (Python 3.11+)?"""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())


def retryable(exc: BaseException) -> bool:
    """Whether reconnecting after ``exc`` (raised by opening a connection)
    may succeed: the TCP connection failed, was refused, reset or timed out,
    the connection was lost during the handshake, or the server answered
    500/502/503/504. A refusal (other statuses), an invalid answer, a bad
    certificate or a bad URI is final."""
    if isinstance(exc, (HandshakeError, ProxyError)):
        return exc.status in RETRY_STATUSES and not isinstance(exc, InvalidRedirect)
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ConnectionClosedError):
        return exc.code == 1006
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError, EOFError))


class ClientConnection:
    """An open client WebSocket (from :func:`connect`).

    ``await send(message)`` (str → text, bytes → binary, an iterable or
    async iterable of them → one message in fragments), ``await recv()``,
    ``async for chunk in ws.recv_streaming()`` (one message as its pieces
    arrive), ``async for message in ws``, ``await ping()``,
    ``await close(code, reason)``.
    ``subprotocol``: the one the server chose (or None); ``extensions``: the
    negotiated extensions (``[PerMessageDeflate(...)]`` or ``[]``);
    ``response``: the server's 101 (``.headers``); ``close_code``/``close_reason``
    once closed.
    """

    def __init__(self, options: Options, key: str, subprotocols: Optional[Iterable[str]],
                 request: bytes, compression: Optional[DeflateOptions] = None,
                 on_message: Optional[Callable[[Union[str, memoryview]], object]] = None) -> None:
        self.options = options
        # set by connection_made(), before anything else uses it
        self.protocol: WebSocketProtocol = None  # type: ignore[assignment]
        self.subprotocol: Optional[str] = None
        self.response: Optional[Response] = None
        self.extensions: List[PerMessageDeflate] = []
        self._compression = compression  # the DeflateOptions offered, or None
        self._request = request
        self._key = key
        self._subprotocols = list(subprotocols or ())
        self._messages: Deque[Data] = collections.deque()
        # Fragments of the message recv_streaming() reads
        self._chunks: Deque[Fragment] = collections.deque()
        self._reading_stream = False  # recv_streaming() is reading a message
        self._dropping = False  # the rest of a message recv_streaming() left is dropped
        self._waiter: Optional["asyncio.Future[None]"] = None
        self._replying = False  # recv() waited: the next send goes out at once (see send)
        self._closed = False
        # payload -> (future, sent at)
        self._pings: "collections.OrderedDict[bytes, Tuple[asyncio.Future[float], float]]" = (
            collections.OrderedDict())
        self._loop = asyncio.get_running_loop()
        self._handshake = self._loop.create_future()
        self._lost = self._loop.create_future()
        self._callback = on_message
        if on_message is not None:
            # The protocol's zero-copy mechanism, as for a server handler
            # with zero_copy = True: binary messages come as a memoryview
            # released when the callback returns, and the parser reuses a
            # large message's storage for the next (FrameParser.reuse_buffer).
            self.zero_copy = True
            self.on_message = on_message  # type: ignore[assignment]  # the callback is the handler's on_message

    # -- the public API --------------------------------------------------------

    async def send(self, message: Sendable, compress: bool = True) -> None:
        """Send a message: ``str`` as text, bytes-like as binary. Waits while
        the write buffer is above its high-water mark. ``compress=False``
        sends it uncompressed when permessage-deflate is on. Raises
        :class:`~wsfast.ConnectionClosed` once the connection is closing.

        An iterable or async iterable of ``str`` (or of bytes-like) pieces
        (not a ``dict``, which goes as JSON text) is sent as one message in
        fragments, a frame per piece and an empty last frame (RFC 6455
        §5.4), waiting for the write buffer after each piece: a message of
        any length from a generator, in bounded memory. Pieces of the other
        type raise ``TypeError``; if that, or an exception from the
        iterable, happens after the first piece, the message cannot be
        finished and the connection is closed with 1011 first."""
        if self._closed:
            raise self._closed_error()
        kind = type(message)
        protocol = self.protocol
        if (kind is bytes or kind is str) and compress and not self.extensions:
            # The hot path: protocol.write_message's work for a client
            # without extensions, inline. Nothing to wait for unless the
            # write buffer is full, so no awaitable is made or awaited.
            if protocol._lost or protocol.transport.is_closing():
                raise protocol.closed_error()
            if not protocol._write_paused:
                conn = protocol.connection
                data = conn.send_binary(message) if kind is bytes else conn.send_text(message)  # type: ignore[arg-type]  # (dispatched on the message's type)
                batch = protocol._batch
                if batch is None:
                    if not self._replying and len(data) < _UNCOPIED_MIN:
                        # Corked until the end of this loop turn: the sends
                        # of one turn (a burst, many tasks) cost one syscall.
                        protocol._cork(data)
                        return
                    # The first send after a recv() that waited (a reply,
                    # most likely alone in this loop turn; the next one in
                    # the turn is corked), or a large frame: written now.
                    self._replying = False
                    protocol.transport.write(data)
                else:
                    batch.append(data)
                    if len(batch) < _BATCH_MAX and (
                        len(data) < _JOIN_MAX or _batch_bytes(batch) < self.options.write_buffer_high
                    ):
                        return
                    protocol._write_batch()  # many frames, or many bytes: written now
                if protocol._write_paused:  # that write filled the buffer: wait for it
                    await protocol.drained()
                return
        elif kind is not str and kind is not bytes and (
            hasattr(message, "__iter__") or hasattr(message, "__aiter__")
        ) and not isinstance(message, (str, dict)):
            try:
                memoryview(message)  # type: ignore[arg-type]  # bytearray, memoryview, array...: one binary message
            except TypeError:
                await self._send_pieces(message, compress)  # type: ignore[arg-type]  # (pieces)
                return
        await protocol.write_message(message, False, compress)  # type: ignore[arg-type]  # (not pieces, by here)

    async def _send_pieces(
        self, pieces: Union[Iterable[Union[str, bytes]], AsyncIterable[Union[str, bytes]]],
        compress: bool,
    ) -> None:
        protocol = self.protocol
        empty: Optional[Data] = None  # the last frame's empty payload, once the first piece went
        try:
            if isinstance(pieces, AsyncIterable):
                async for piece in pieces:
                    await protocol.send_fragment(piece, False, compress)
                    if empty is None:
                        empty = "" if type(piece) is str else b""
            else:
                for piece in pieces:
                    await protocol.send_fragment(piece, False, compress)
                    if empty is None:
                        empty = "" if type(piece) is str else b""
        except BaseException as exc:
            if empty is not None and not isinstance(exc, ConnectionClosed):
                # Half a message is out and its end never will be: the
                # peer cannot be left waiting for it (websockets' habit).
                protocol.close(1011, "error while sending a fragmented message")
            raise
        if empty is not None:
            await protocol.send_fragment(empty, True, compress)

    async def recv_streaming(self) -> AsyncIterator[Data]:
        """The next message as its pieces arrive, without assembling it:
        ``async for chunk in ws.recv_streaming():`` yields ``str`` pieces for
        a text message (a character is never split) and ``bytes`` for a
        binary one, ending after the last. A message of any length passes
        through bounded memory: each frame is limited by
        ``max_message_size`` (after decompression), the message is not, and
        reading pauses while ``max_queue`` pieces wait. A message already
        received whole comes as one piece. Raises
        :class:`~wsfast.ConnectionClosed` as :meth:`recv` does. Leaving the
        loop early drops the rest of that message."""
        if self._callback is not None:
            raise self._callback_mode()
        if self._reading_stream:
            raise RuntimeError("recv_streaming() is already reading a message")
        if self._messages or self._closed:
            yield await self.recv()
            return
        chunks = self._chunks
        self.protocol.connection.stream_next()
        self._reading_stream = True
        fin = started = False
        try:
            while not fin:
                while not chunks:
                    if not started and self._messages:
                        # The rest of an abandoned stream held the one-shot
                        # stream_next(): this message came whole.
                        self._reading_stream = False
                        yield await self.recv()
                        return
                    if self._closed:
                        raise self._closed_error()
                    if self._waiter is not None:
                        raise RuntimeError("recv() is already waiting in another task")
                    waiter = self._waiter = self._loop.create_future()
                    try:
                        await waiter
                    finally:
                        self._waiter = None
                fragment = chunks.popleft()
                protocol = self.protocol
                if protocol._read_paused and len(chunks) <= self.options.max_queue // 2:
                    protocol.resume_reading()
                if not chunks and not self._messages:
                    protocol.consumed()  # a close held behind this piece may go now
                fin = fragment.fin
                started = True
                yield fragment.data
        finally:
            self._reading_stream = False
            if started and not fin:  # abandoned: drop the rest of this message
                while chunks:
                    if chunks.popleft().fin:
                        break
                else:
                    self._dropping = True
                if self.protocol._read_paused:
                    self.protocol.resume_reading()

    async def recv(self) -> Data:
        """The next message (``str`` or ``bytes``). Raises
        :class:`~wsfast.ConnectionClosedOK` after a normal close (1000/1001),
        :class:`~wsfast.ConnectionClosedError` otherwise, once every message
        received before the close was returned."""
        messages = self._messages
        while not messages:  # (a queued message is returned without suspending)
            if self._callback is not None:
                raise self._callback_mode()
            if self._closed:
                raise self._closed_error()
            if self._waiter is not None:
                raise RuntimeError("recv() is already waiting in another task")
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            self._replying = True
        message = messages.popleft()
        protocol = self.protocol
        if protocol._read_paused and len(messages) <= self.options.max_queue // 2:
            protocol.resume_reading()
        if protocol._close_held and not messages:
            protocol.consumed()  # a close held behind this message may go now
        return message

    def __aiter__(self) -> "ClientConnection":
        return self

    async def __anext__(self) -> Data:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def write_message(self, message: "Message", binary: bool = False,
                      compress: bool = True) -> Awaitable[None]:
        """Send ``message`` now, from a plain function that cannot await
        (a callback; a loop that awaits uses :meth:`send`): as the server
        handler's ``write_message``, ``str`` as text (UTF-8 binary if
        ``binary``), bytes-like as binary, ``dict``/``list`` as JSON text.
        Written with what else goes out in this loop turn (inside a read,
        with that read's other writes: one syscall). Returns an awaitable
        that is done unless the write buffer is above its high-water mark
        (await it where you can, to slow a producer down). Raises
        :class:`~wsfast.ConnectionClosed` once the connection is closing."""
        if self._closed:
            raise self._closed_error()
        return self.protocol.write_message(message, binary, compress)

    async def ping(self, data: Union[str, bytes, bytearray, memoryview, None] = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in
        seconds. ``data``: the payload (≤ 125 bytes, random 4 bytes by default).
        Raises ``ConnectionClosed`` if the connection closes first."""
        if self._closed:
            raise self._closed_error()
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        elif isinstance(data, str):
            payload = data.encode("utf-8")
        else:
            payload = bytes(data)
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its pong")
        waiter: "asyncio.Future[float]" = self._loop.create_future()
        self._pings[payload] = (waiter, time.monotonic())
        self.protocol.send_ping(payload)
        return await waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``, and wait (bounded by the close
        timeout, twice: for the server's close frame, then for it to close TCP)."""
        self.protocol.close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        timeout = self.options.close_timeout
        if timeout is None:
            await asyncio.shield(self._lost)
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), 2 * timeout + 1)
        except asyncio.TimeoutError:
            self.protocol.abort()
            await asyncio.shield(self._lost)

    @property
    def closed(self) -> bool:
        """True once the closing handshake is done (or the connection was lost)."""
        return self._closed

    @property
    def state(self) -> Optional[State]:
        conn = self.protocol.connection
        state: Optional[State] = conn.state if conn is not None else None
        return state

    @property
    def close_code(self) -> Optional[int]:
        conn = self.protocol.connection
        code: Optional[int] = conn.close_code if conn is not None else None
        return code

    @property
    def close_reason(self) -> Optional[str]:
        conn = self.protocol.connection
        reason: Optional[str] = conn.close_reason if conn is not None else None
        return reason

    @property
    def remote_address(self) -> Any:
        """The server's address (``getpeername()``), or None before the connection."""
        return self.protocol.remote_address

    @property
    def local_address(self) -> Any:
        return self.protocol.local_address

    def _closed_error(self) -> ConnectionClosed:
        return self.protocol.closed_error()

    @staticmethod
    def _callback_mode() -> RuntimeError:
        return RuntimeError(
            "messages go to the on_message callback given to connect(): "
            "recv() and recv_streaming() have none (await ws.wait_closed() to wait for the end)"
        )

    # -- handler interface (called by WebSocketProtocol) ----------------------------

    def _unconsumed(self) -> bool:
        return bool(self._messages) or bool(self._chunks)

    def on_message(self, message: Data) -> None:
        messages = self._messages
        messages.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(messages) >= self.options.max_queue:
            self.protocol.pause_reading()  # recv() lags: let TCP push back

    def on_fragment(self, fragment: Fragment) -> None:
        """A piece of the message recv_streaming() reads (Connection.stream_next)."""
        if self._dropping:  # the rest of a message recv_streaming() left
            if fragment.fin:
                self._dropping = False
            return
        chunks = self._chunks
        chunks.append(fragment)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(chunks) >= self.options.max_queue:
            self.protocol.pause_reading()  # the reader lags: let TCP push back

    def on_ping(self, data: bytes) -> None:
        pass

    def on_pong(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return  # unsolicited
        now = time.monotonic()
        # RFC 6455 §5.5.3: a pong may answer only the latest ping; it
        # answers every earlier one too.
        while pings:
            payload, (waiter, sent) = pings.popitem(last=False)
            if not waiter.done():
                waiter.set_result(now - sent)
            if payload == data:
                break

    def _ws_closed(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._pings:
            error = self._closed_error()
            for pong_waiter, _ in self._pings.values():
                if not pong_waiter.done():
                    pong_waiter.set_exception(error)
            self._pings.clear()

    # -- owner interface (called by WebSocketProtocol) ---------------------------

    def connection_made(self, protocol: WebSocketProtocol) -> None:
        self.protocol = protocol
        protocol.write(self._request)

    def handshake_response(self, protocol: WebSocketProtocol, response: Response) -> None:
        self.response = response
        try:
            compression = self._compression
            self.subprotocol = _hs.check_response(
                response, self._key, self._subprotocols, compression is not None
            )
            if compression is not None:
                self.extensions = _hs.accept_extensions(response, compression)
        except HandshakeError as exc:
            # RFC 6455 §4.1: fail the connection (an answer we cannot accept).
            self.handshake_failed(protocol, exc)
            protocol.abort()
            return
        protocol.upgrade(self, extensions=self.extensions)
        if not self._handshake.done():
            self._handshake.set_result(None)

    def handshake_failed(self, protocol: WebSocketProtocol, exc: BaseException) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)

    def connection_lost(self, protocol: WebSocketProtocol, exc: Optional[BaseException]) -> None:
        self._closed = True
        if not self._handshake.done():
            self._handshake.set_exception(
                ConnectionClosedError(1006, "connection lost during the opening handshake")
            )
        if not self._lost.done():
            self._lost.set_result(None)

    def __repr__(self) -> str:
        state = self.state.name if self.state is not None else "CONNECTING"
        return f"<ClientConnection {state} {self.remote_address}>"


class ClientProtocol(WebSocketProtocol):
    """The client's :class:`~wsfast.protocol.WebSocketProtocol`: a read that
    completes only messages (no control frame, no close, nothing to answer)
    puts them straight on the :class:`ClientConnection`'s ``recv()`` queue,
    skipping the generic dispatch (``_receive_ws``: a batch, a handler call
    per message, the replies' write). Anything else, or a handler whose
    ``on_message`` is not :meth:`ClientConnection.on_message` (a subclass's,
    a zero-copy callback), takes the generic path."""

    __slots__ = ("_client", "_slice", "_slice_len")

    def __init__(self, side: Side, options: Options, owner: ClientConnection) -> None:
        super().__init__(side, options, owner)
        # the ClientConnection, while the fast path applies
        self._client: Optional[ClientConnection] = None
        # The last slice of the shared read buffer given to the parser, kept
        # for the next read of the same length (a request/response loop's
        # replies): making a memoryview slice costs more than parsing a
        # small frame. The parser reads it during the call only.
        self._slice: Optional[memoryview] = None
        self._slice_len = -1

    def upgrade(self, handler: Any, *args: Any, **kwargs: Any) -> bool:
        upgraded: bool = super().upgrade(handler, *args, **kwargs)
        on_message = getattr(self._on_message, "__func__", None)
        if upgraded and on_message is ClientConnection.on_message and isinstance(handler, ClientConnection):
            self._client = handler
        return upgraded

    def buffer_updated(self, nbytes: int) -> None:
        client = self._client
        if client is None or self._windowed or self._mode != _WS:
            return WebSocketProtocol.buffer_updated(self, nbytes)
        conn = self.connection
        if nbytes == self._slice_len:
            data = self._slice
        else:
            data = self._slice = self._view[:nbytes]
            self._slice_len = nbytes
        events = conn.receive_data(data)  # type: ignore[arg-type]  # (the slice: set just above)
        if conn.state is not _OPEN or conn._out:  # a close, a failure, a pong to send
            return self._receive_ws(events)
        if not events:
            return None  # a partial frame
        for event in events:
            kind = type(event)
            if kind is not bytes and kind is not str:  # a ping, a pong, a fragment
                return self._receive_ws(events)
        # ClientConnection.on_message for each, at once:
        messages = client._messages
        messages.extend(events)  # type: ignore[arg-type]  # (only str and bytes events here: checked above)
        waiter = client._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(messages) >= self.options.max_queue:
            self.pause_reading()  # recv() lags: let TCP push back
        return None


class connect:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    Use ``async with connect(uri) as ws:`` or ``ws = await connect(uri)``.

    ``subprotocols``: offered, in order of preference (``ws.subprotocol``
    tells which was chosen); ``extra_headers``: dict or ``(name, value)``
    pairs added to the request (e.g. ``Authorization``); ``origin``: the
    ``Origin`` header; ``ssl``: an ``ssl.SSLContext`` for ``wss://`` (a
    default verifying one if None); ``server_hostname``: for TLS;
    ``max_message_size`` (16 MiB), ``open_timeout`` (10 s),
    ``close_timeout`` (5 s), ``ping_interval`` (20 s: keepalive pings that
    often; None turns it off) and ``ping_timeout`` (20 s without the pong,
    then close 1011), ``max_queue`` (32 unread messages before reading
    pauses), ``write_buffer_high``/``write_buffer_low``,
    ``max_write_buffer`` (None: 4 × the high mark; a ``send()`` while more
    is unsent closes with 1008 "slow consumer", see
    :class:`~wsfast.protocol.Options`), ``max_fragments`` (the most frames
    one message may come in, else 1009; None: ``max(1024,
    max_message_size // 64)``); ``codec``:
    "cython"/"python"/None. ``host``/``port``/``sock`` connect somewhere else
    than the URI says (the URI still gives ``Host`` and the path).
    ``compression``: None (the default: offer nothing), ``"deflate"`` (offer
    permessage-deflate with the defaults: ``permessage-deflate;
    client_max_window_bits``), a dict of
    :class:`~wsfast.deflate.DeflateOptions` keywords or a ``DeflateOptions``;
    ``ws.extensions`` tells what the server accepted (a server may decline).

    Redirects (301/302/303/307/308 with ``Location``) are followed, at
    most ``max_redirects`` (10; 0 raises the 3xx as a ``HandshakeError``);
    ws:// to wss:// is allowed, wss:// to ws:// raises
    :class:`~wsfast.InvalidRedirect`. ``ws://user:pass@host/`` sends HTTP basic
    auth (RFC 7617; an explicit ``Authorization`` header wins), kept across
    redirects to the same host and port only. ``additional_headers`` is the
    same as ``extra_headers`` (websockets' name).

    Proxies: ``proxy=True`` (the default) takes one from the environment
    (``https_proxy`` for wss://, ``http_proxy`` for ws://, then
    ``all_proxy``; not for hosts in ``no_proxy``), ``proxy="http://user:pass@host:port"``,
    ``"https://user:pass@host:port"`` (TLS to the proxy, then CONNECT:
    ``proxy_ssl`` is its ``ssl.SSLContext``, a default verifying one if
    None, ``proxy_server_hostname`` the name its certificate must match,
    the proxy's host by default; both are a ``ValueError`` with another kind
    of proxy), ``"socks5://user:pass@..."``, ``"socks5h://..."``,
    ``"socks4://..."``, ``"socks4a://..."`` names one (SOCKS needs
    ``pip install wsfast[socks]``), ``proxy=None`` connects directly. A
    refusal raises :class:`~wsfast.ProxyError` (``.status``: the HTTP
    proxy's status; None for SOCKS, whose message says why, e.g. a failed
    username/password authentication). See :mod:`wsfast.proxy`.

    Zero-copy receive, opt in: ``on_message=callback`` (a plain function)
    gets every message instead of the :meth:`~ClientConnection.recv` queue:
    text as ``str``, binary as a read-only ``memoryview`` of the payload,
    valid until the callback returns (released then: a view used later
    raises ``ValueError``; copy what you keep with ``bytes(view)``). The
    compiled codec then reads the next large message into the same storage
    once the previous one was handled (``FrameParser.reuse_buffer``, as for
    a server handler with ``zero_copy = True``). ``recv()`` and ``recv_streaming()`` raise
    ``RuntimeError`` on such a connection (``wait_closed()`` waits for its
    end); an exception in the callback is logged and closes with 1011.

    Reconnecting: ``async for ws in connect(uri):`` yields a new open
    connection each time round the loop (closing the previous one); opening
    is retried with exponential backoff and jitter (``backoff_min`` 1 s ×
    ``backoff_factor`` 1.618 per failure up to ``backoff_max`` 60 s, each
    delay × 0.5-1) while it fails for a reason that may pass
    (:func:`retryable`), other errors are raised. Catch
    :class:`~wsfast.ConnectionClosed` in the loop body and ``continue`` to
    reconnect after a drop. Leaving the loop (``break``, an exception)
    closes the connection it gave, as leaving ``async with`` does.

    Raises :class:`~wsfast.HandshakeError` if the server refuses (``.status``),
    ``TimeoutError`` if the handshake takes longer than ``open_timeout``
    (redirects included), ``OSError`` if the TCP connection fails.
    """

    #: The handler class of the connection (a front-end such as
    #: :mod:`wsfast.tornado` passes a subclass of :class:`ClientConnection`).
    connection_class: Type[ClientConnection] = ClientConnection
    #: The protocol class (:class:`ClientProtocol`, or another
    #: :class:`~wsfast.protocol.WebSocketProtocol` subclass).
    protocol_class: Type[WebSocketProtocol] = ClientProtocol

    def __init__(
        self,
        uri: str,
        *,
        subprotocols: Optional[Iterable[str]] = None,
        extra_headers: Optional[HeadersLike] = None,
        additional_headers: Optional[HeadersLike] = None,
        origin: Optional[str] = None,
        ssl: Union[_ssl.SSLContext, bool, None] = None,
        server_hostname: Optional[str] = None,
        max_message_size: int = 16 * 2**20,
        open_timeout: Optional[float] = 10.0,
        close_timeout: Optional[float] = 5.0,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        max_queue: int = 32,
        write_buffer_high: int = 256 * 1024,
        write_buffer_low: int = 64 * 1024,
        max_write_buffer: Optional[int] = None,
        max_fragments: Optional[int] = None,
        codec: Union[str, ModuleType, None] = None,
        compression: Compression = None,
        user_agent: Optional[str] = USER_AGENT,
        host: Optional[str] = None,
        port: Optional[int] = None,
        sock: Optional[socket.socket] = None,
        max_redirects: int = 10,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        backoff_factor: float = 1.618,
        proxy: Union[str, bool, None] = True,
        proxy_ssl: Optional[_ssl.SSLContext] = None,
        proxy_server_hostname: Optional[str] = None,
        on_message: Optional[Callable[[Union[str, memoryview]], object]] = None,
    ) -> None:
        self.uri = uri
        if on_message is not None:
            if not callable(on_message):
                raise TypeError(f"on_message must be callable, not {type(on_message).__name__}")
            if inspect.iscoroutinefunction(on_message):
                raise TypeError(
                    "on_message must be a plain function: it gets a memoryview valid during "
                    "the call, which an async function would outlive (await ws.recv() instead)"
                )
        self._on_message = on_message
        secure = parse_uri(uri)[0]  # a bad URI fails here, before any connection
        self._ssl_arg = ssl
        self._server_hostname = server_hostname
        self._host_arg = host
        self._port_arg = port
        self._sock = sock
        self._subprotocols = list(subprotocols or ())
        headers: List[Tuple[str, str]] = []
        for extra in (extra_headers, additional_headers):
            if extra is None:
                continue
            headers.extend(_header_pairs(extra))
        if user_agent and not any(n.lower() == "user-agent" for n, _ in headers):
            headers.append(("User-Agent", user_agent))
        self._headers = headers
        self._origin = origin
        self._compression = _compression_options(compression)
        self.open_timeout = open_timeout
        if max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        self.max_redirects = max_redirects
        if not 0 < backoff_min <= backoff_max or backoff_factor < 1:
            raise ValueError("need 0 < backoff_min <= backoff_max and backoff_factor >= 1")
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self.options = Options(
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
            write_buffer_high=write_buffer_high,
            write_buffer_low=write_buffer_low,
            max_write_buffer=max_write_buffer,
            codec=codec,
            max_fragments=max_fragments,
        )
        self._proxy: Union[str, bool]
        if proxy is True or proxy is None or proxy is False:
            self._proxy = proxy is True  # True: from the environment
        else:
            self._proxy = self._check_proxy(check_proxy(proxy), proxy_ssl, proxy_server_hostname)
        self._proxy_ssl = proxy_ssl
        self._proxy_server_hostname = proxy_server_hostname
        self._ws: Optional[ClientConnection] = None

    @staticmethod
    def _check_proxy(proxy: str, proxy_ssl: Optional[_ssl.SSLContext],
                     proxy_server_hostname: Optional[str]) -> str:
        if (proxy_ssl is not None or proxy_server_hostname is not None) and not is_tls_proxy(proxy):
            raise ValueError(
                "proxy_ssl and proxy_server_hostname are for an https:// proxy, not "
                f"{redact_uri(proxy)}"
            )
        return proxy

    def _proxy_for(self, secure: bool, host: str, port: int) -> Optional[str]:
        if self._proxy is True:
            proxy = proxy_from_environment(secure, host, port)
            if proxy is None:
                return None
            return self._check_proxy(check_proxy(proxy), self._proxy_ssl, self._proxy_server_hostname)
        return self._proxy or None

    async def _open(self, uri: str, first: bool, auth: Optional[str]) -> ClientConnection:
        """One handshake with ``uri`` (``first``: the URI given, where
        ``host``/``port``/``sock`` apply; ``auth``: the Authorization value)."""
        loop = asyncio.get_running_loop()
        secure, uri_host, uri_port, resource, host_header = parse_uri(uri)
        host, port = uri_host, uri_port
        sock: Optional[socket.socket] = None
        if first:
            host = self._host_arg if self._host_arg is not None else uri_host
            port = self._port_arg if self._port_arg is not None else uri_port
            sock = self._sock
        ssl: Union[_ssl.SSLContext, bool, None] = None
        if secure:
            ssl = self._ssl_arg
            if ssl is None or ssl is False:
                ssl = _ssl.create_default_context()
        headers = self._headers
        if auth is not None and not any(n.lower() == "authorization" for n, _ in headers):
            headers = headers + [("Authorization", auth)]
        key = _hs.generate_key()
        compression = self._compression
        request = _hs.build_request(
            host_header,
            resource,
            key,
            self._subprotocols,
            headers,
            self._origin,
            extensions=_client_offer(compression) if compression is not None else None,
        )
        extra = {} if self._on_message is None else {"on_message": self._on_message}
        client = self.connection_class(
            self.options, key, self._subprotocols, request, compression, **extra
        )

        def factory() -> WebSocketProtocol:
            return self.protocol_class(Side.CLIENT, self.options, client)

        kwargs: Dict[str, Any] = {}
        if ssl is not None:
            kwargs["ssl"] = ssl
            if self._server_hostname is not None and first:
                kwargs["server_hostname"] = self._server_hostname
            elif sock is not None or host != uri_host:
                kwargs["server_hostname"] = uri_host
        tunnel = None
        proxy = self._proxy_for(secure, host, port) if sock is None else None
        if proxy is not None and ssl is not None and "server_hostname" not in kwargs:
            kwargs["server_hostname"] = uri_host
        if proxy is not None and is_tls_proxy(proxy):
            await self._through_tls_proxy(proxy, host, port, factory, kwargs)
        else:
            if proxy is not None:
                sock = tunnel = await open_tunnel(proxy, host, port)
            if sock is not None:
                try:
                    await loop.create_connection(factory, sock=sock, **kwargs)
                except BaseException:
                    if tunnel is not None:
                        tunnel.close()
                    raise
            else:
                await loop.create_connection(factory, host, port, **kwargs)
        try:
            await client._handshake
        except BaseException:
            if client.protocol is not None:
                client.protocol.abort()
            raise
        return client

    async def _through_tls_proxy(self, proxy: str, host: str, port: int,
                                 factory: Callable[[], WebSocketProtocol],
                                 kwargs: Dict[str, Any]) -> None:
        """Connect ``factory()``'s protocol through an https:// proxy: TLS to
        the proxy, CONNECT, and for wss:// TLS to the server inside it."""
        transport: asyncio.Transport = await open_tls_tunnel(
            proxy, host, port, self._proxy_ssl, self._proxy_server_hostname
        )
        try:
            ssl = kwargs.get("ssl")
            if ssl is not None:
                loop = asyncio.get_running_loop()
                tls = await loop.start_tls(
                    transport,
                    transport.get_protocol(),
                    ssl,
                    server_hostname=kwargs["server_hostname"],
                )
                assert tls is not None  # (None only for a closing transport)
                transport = tls
            protocol = factory()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except BaseException:
            transport.abort()
            raise

    async def _open_following(self) -> ClientConnection:
        """The handshake, following redirects (at most ``max_redirects``)."""
        uri = self.uri
        auth = basic_auth(uri)
        redirects = 0
        while True:
            try:
                return await self._open(uri, redirects == 0, auth)
            except HandshakeError as exc:
                if (
                    exc.status not in REDIRECT_STATUSES
                    or isinstance(exc, InvalidRedirect)
                    or not self.max_redirects
                ):
                    raise  # max_redirects=0: a redirect is an answer like any other
                target = self._redirect(uri, exc, redirects)
                redirects += 1
                if basic_auth(target) is not None or _origin_of(target) != _origin_of(uri):
                    # Credentials go only where the user sent them (the
                    # same host and port), or where the redirect names them.
                    auth = basic_auth(target)
                uri = target

    def _redirect(self, uri: str, exc: HandshakeError, redirects: int) -> str:
        status = exc.status
        locations = [v for n, v in exc.headers if n.lower() == "location"]
        if not locations:
            raise InvalidRedirect(status, f"HTTP {status} redirect without a Location header", exc.headers)
        if redirects >= self.max_redirects:
            raise InvalidRedirect(
                status, f"too many redirects (more than {self.max_redirects})", exc.headers
            )
        if self._sock is not None:
            raise InvalidRedirect(
                status, "cannot follow a redirect on a connection opened with sock=", exc.headers
            )
        target = redirect_target(uri, locations[0])
        try:
            new_secure = parse_uri(target)[0]
        except ValueError as error:
            raise InvalidRedirect(status, f"invalid redirect: {error}", exc.headers) from None
        if uri.lower().startswith("wss:") and not new_secure:
            raise InvalidRedirect(
                status,
                f"refused redirect from wss:// to ws:// ({redact_uri(target)}): it would drop TLS",
                exc.headers,
            )
        return target

    async def _connect(self) -> ClientConnection:
        if self.open_timeout is None:
            return await self._open_following()
        try:
            if _timeout is not None:  # Python 3.11+: never swallows a cancellation
                async with _timeout(self.open_timeout):
                    return await self._open_following()
            # wait_for before 3.12 can lose a cancellation that races the
            # inner result: __aiter__ checks for that itself.
            return await asyncio.wait_for(self._open_following(), self.open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"opening handshake with {redact_uri(self.uri)} took longer than {self.open_timeout} s"
            ) from None

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._ws = await self._connect()
        return self._ws

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        assert self._ws is not None  # __aenter__ set it
        await self._ws.close()

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        """Reconnect forever: ``async for ws in connect(uri):`` yields a new
        open connection each time round the loop (the previous one closed
        first). Opening is retried with exponential backoff and jitter
        while it fails for a reason that may go away (:func:`retryable`:
        refused, reset, timed out, 5xx); other errors are raised."""
        delay = self.backoff_min
        while True:
            try:
                ws = await self._connect()
            except Exception as exc:
                if not retryable(exc):
                    raise
                if _cancelling():
                    raise asyncio.CancelledError from exc  # we were cancelled meanwhile
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * self.backoff_factor, self.backoff_max)
                continue
            delay = self.backoff_min
            try:
                yield ws
            finally:
                if not ws.closed:
                    await ws.close()
