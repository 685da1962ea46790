"""The one asyncio adapter: a ``BufferedProtocol`` that drives a sans-IO
:class:`~wsfast.connection.Connection`, for the server and for the client.

Theory of operation
-------------------

A :class:`WebSocketProtocol` goes through three modes:

* **HTTP** — server: requests are parsed (:class:`~wsfast.http.RequestParser`)
  and handed, one at a time and in order (pipelining), to the owner's
  ``handle_request(protocol, request)`` coroutine, which answers through
  :meth:`~WebSocketProtocol.finish_http` or switches to WebSocket with
  :meth:`~WebSocketProtocol.upgrade`. Client: the request is written by the
  owner, the answer parsed (:class:`~wsfast.http.ResponseParser`) and given to
  the owner's ``handshake_response(protocol, response)``.
  A timer (the opening handshake timeout, also the keep-alive idle timeout)
  closes connections that do not send a request head in time.
* **WebSocket** — the hot path. ``get_buffer()`` returns one buffer shared by
  every connection on the event loop (the frame parser copies only an
  unfinished frame, and ``buffer_updated()`` consumes the bytes
  synchronously), so a read allocates nothing per connection.
  ``buffer_updated(n)`` → ``Connection.receive_data()`` → for each message
  ``handler.on_message(msg)``; the handler's ``write_message()`` writes
  ``Connection.send_text()`` into the read's batch, written in one call at
  the end of the read. No coroutine, task or future is created per message.
  An ``async def on_message`` coroutine is run at once too, inside the read,
  as the connection's consumer task (one per connection, created at the
  first coroutine): one that completes without suspending costs about what
  a sync handler costs. One that suspends is handed to that task, and the
  messages after it go through a queue to the task, in order; when the queue
  holds ``max_queue`` messages, reading pauses until it drains; once it is
  empty, coroutines run in the read again.
  Writes made outside a read (a task, a timer, the consumer) are corked:
  batched until the end of the loop turn (or 64 frames), one call for all.
* **Closed** — once the closing handshake is done (``State.CLOSED``), the
  server half-closes TCP (``write_eof``) and drops it if the client has not
  closed its side within ``close_timeout``; the client waits for the server
  to close first, bounded by ``close_timeout`` (RFC 6455 §7.1.1). Input that
  still arrives is discarded.

Writes return an awaitable: a completed future shared by the whole event loop
while the transport buffer is below its high-water mark, otherwise one future
per paused period, resolved by ``resume_writing()`` (or when the connection is
lost). Timers are ``loop.call_later`` handles, never tasks.

The protocol talks to its *owner* (the server, or the client connection) and
to its *handler* (the application object: a ``WebSocketHandler`` or the
client connection), which provides ``on_message(msg)``, ``on_ping(data)``,
``on_pong(data)`` and ``_ws_closed()``.
"""

import asyncio
import collections
import contextvars
import inspect
import json
import logging
import os
import sys
import types
from typing import (
    TYPE_CHECKING, Any, Awaitable, Callable, Dict, Generator, List, NoReturn, Optional,
    Sequence, Union, cast,
)

from .connection import (
    Connection, Fragment, Ping, Pong, Side, State, check_max_fragments, get_connection_class,
)
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    WebSocketError,
)
from .http import Request, RequestParser, ResponseParser, build_response

if TYPE_CHECKING:
    from .broadcast import Message
    from .handshake import Extension

__all__ = ["Options", "WebSocketProtocol", "READ_BUFFER_SIZE"]

log = logging.getLogger("wsfast")

#: Size of the read buffer shared by all connections of one event loop.
READ_BUFFER_SIZE = 256 * 1024
# The rest of a frame at least this long is read straight into the frame's
# storage (Connection.read_window), not through the shared read buffer.
WINDOW_MIN = 64 * 1024

_HTTP = 0  # server: parsing requests; client: waiting for the 101
_WS = 1
_DONE = 2  # closing handshake done or failed: discard input

_CLOSED = State.CLOSED
_HOLD_LIMIT = 1.0  # seconds a close may wait for an async consumer (see _hold_close)
_OPEN = State.OPEN
_EMPTY = b""
_JOIN_MAX = 1024  # frames of a batch shorter than this are joined (_write_list)
_BATCH_MAX = 64  # frames a batch holds before it is written (write_message)
# A binary payload at least this big (bytes) is written after its frame header
# as it is, not copied into one frame (Connection.send_binary_parts): at this
# size the copy and its fresh pages cost more than a second iovec.
_UNCOPIED_MIN = 64 * 1024


class Options:
    """Per-connection limits and timeouts (seconds; None turns a timer off).

    ``max_message_size``: largest message accepted (1009 above it);
    ``ping_interval``/``ping_timeout``: keepalive, on by default (20 s / 20 s,
    as websockets): a ping every ``ping_interval`` seconds, and a connection
    whose pong does not come within ``ping_timeout`` is closed with 1011
    (an idle or dead peer does not hold a connection forever; None turns
    either off); ``open_timeout``: the opening
    handshake (and, on the server, a keep-alive connection's wait for its
    next request head); ``close_timeout``: the closing handshake and the wait
    for the peer to close TCP; ``max_queue``: messages held for an
    ``async def on_message`` (or unread by the client's ``recv()``) before
    reading pauses; ``write_buffer_high``/``write_buffer_low``: the transport's
    write water marks (an awaited ``write_message`` waits above the high one
    until the buffer drains below the low one; above the high one, reading
    pauses too, so a peer that sends without reading gets TCP back pressure
    instead of growing our buffer, and only the latest ping's pong waits,
    RFC 6455 §5.5.3); ``max_write_buffer``: the hard cap on what a
    connection's write buffer may hold (None: 4 × ``write_buffer_high``,
    1 MiB by default; at least ``write_buffer_high``). A write when more is
    still unsent makes the peer a *slow consumer*: the connection is closed
    with 1008 "slow consumer" (dropped after ``close_timeout`` if that close
    cannot be delivered either), the write raises ``ConnectionClosedError``,
    and ``stats["slow_consumers"]`` of the server counts it. So no handler,
    broadcast or timer can make one peer that does not read cost unbounded
    memory; a producer that awaits ``write_message`` never meets the cap.
    ``max_header_size`` and ``max_body_size`` for HTTP requests; ``codec``:
    a frame codec or its name; ``max_fragments``: the most frames one
    message may come in (None: ``max(1024, max_message_size // 64)``, so a
    message at the size limit in 64-byte fragments passes); the frame after
    that fails the connection with 1009, as a message too big does: it
    bounds the CPU a peer's endless message of tiny or empty fragments
    costs, which the size limit cannot see (docs/DESIGN.md, "Limits on a
    message in progress").
    """

    __slots__ = (
        "max_message_size",
        "ping_interval",
        "ping_timeout",
        "open_timeout",
        "close_timeout",
        "max_queue",
        "write_buffer_high",
        "write_buffer_low",
        "max_write_buffer",
        "max_header_size",
        "max_body_size",
        "codec",
        "max_fragments",
    )

    def __init__(
        self,
        max_message_size: int = 16 * 2**20,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        open_timeout: Optional[float] = 10.0,
        close_timeout: Optional[float] = 5.0,
        max_queue: int = 32,
        write_buffer_high: int = 256 * 1024,
        write_buffer_low: int = 64 * 1024,
        max_write_buffer: Optional[int] = None,
        max_header_size: int = 64 * 1024,
        max_body_size: int = 1024 * 1024,
        codec: Union[str, "types.ModuleType", None] = None,
        max_fragments: Optional[int] = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.write_buffer_high = write_buffer_high
        self.write_buffer_low = write_buffer_low
        self.max_write_buffer = max_write_buffer
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.codec = codec
        self.max_fragments = max_fragments
        self._check()

    def _check(self) -> None:
        check_max_fragments(self.max_fragments)
        cap = self.max_write_buffer
        if cap is not None and cap < self.write_buffer_high:
            raise ValueError(
                f"max_write_buffer ({cap}) must be at least write_buffer_high "
                f"({self.write_buffer_high})"
            )

    @property
    def write_buffer_cap(self) -> int:
        """``max_write_buffer``, or its default (4 × ``write_buffer_high``)."""
        cap = self.max_write_buffer
        return 4 * self.write_buffer_high if cap is None else cap

    def replace(self, **changes: Any) -> "Options":
        """A copy with ``changes`` applied (unknown names raise TypeError)."""
        new = Options.__new__(Options)
        for name in Options.__slots__:
            setattr(new, name, getattr(self, name))
        for name, value in changes.items():
            if name not in Options.__slots__:
                raise TypeError(f"unknown option {name!r}")
            setattr(new, name, value)
        new._check()
        return new

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in Options.__slots__)
        return f"Options({fields})"


class _LoopShared:
    """What all connections of one event loop share: the read buffer and the
    completed future that ``write_message`` returns when nothing waits."""

    __slots__ = ("view", "done", "loop", "corked", "flush_pending", "slice", "slice_len")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.view = memoryview(bytearray(READ_BUFFER_SIZE))
        # The last slice of the view handed to a parser (view[:slice_len]),
        # kept for the next read of the same length, whichever connection
        # makes it (request/response: every read is one frame of one size).
        # Making a memoryview slice costs more than parsing a small frame;
        # the parsers read it during the call only, as they read the view.
        self.slice: Optional[memoryview] = None
        self.slice_len = -1
        self.done = loop.create_future()
        self.done.set_result(None)
        self.loop = loop
        # Protocols whose writes wsfast.broadcast corked in this loop turn
        # (see WebSocketProtocol._cork), written by flush_corked soon after.
        self.corked: List[WebSocketProtocol] = []
        self.flush_pending = False

    def flush_corked(self) -> None:
        corked = self.corked
        self.corked = []
        self.flush_pending = False
        for protocol in corked:
            # protocol._flush_batch(), inline (a call less per connection and turn)
            batch = protocol._batch
            if batch is None:
                continue  # its own read wrote it already
            protocol._batch = None
            if batch and not protocol._lost:
                if len(batch) == 1:
                    protocol.transport.write(batch[0])
                else:
                    _write_list(protocol.transport, batch)


_SHARED_ATTR = "_wsfast_shared"
_shared_fallback: Dict[int, _LoopShared] = {}  # loops that take no attributes (none known): id -> state


def _loop_shared(loop: asyncio.AbstractEventLoop) -> _LoopShared:
    # Kept on the loop itself, so it goes away with the loop (a weak-keyed
    # table would keep every loop alive: the done future refers to its loop).
    shared = getattr(loop, _SHARED_ATTR, None)
    if shared is None:
        shared = _LoopShared(loop)
        try:
            setattr(loop, _SHARED_ATTR, shared)
        except AttributeError:
            shared = _shared_fallback.setdefault(id(loop), shared)
    return shared


def _batch_bytes(batch: List[bytes]) -> int:
    """The bytes a batch holds."""
    return sum(map(len, batch))


def _write_list(transport: asyncio.WriteTransport, batch: List[bytes]) -> None:
    """Write the frames of a batch (non-empty, in order) in one call. Small
    frames are joined: for uvloop one buffer costs less than several (about
    60 ns per extra buffer; joining costs a copy, cheaper below ~1 KiB).
    Batches of bigger frames go as they are (large payloads do not wait in
    a batch: see _send_parts)."""
    if len(batch) == 1:
        transport.write(batch[0])
    elif len(batch[0]) < _JOIN_MAX and len(batch[-1]) < _JOIN_MAX:
        transport.write(_EMPTY.join(batch))
    else:
        transport.writelines(batch)


def _zero_copy(on_message: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``on_message`` for a handler with ``zero_copy = True`` (picows'
    habit): a binary message comes as a ``memoryview`` valid until
    on_message returns, released then, so its storage serves the next large
    message (``FrameParser.reuse_buffer``: no fresh 16 MiB allocation and its
    page faults per message). Keep ``bytes(view)`` to keep the data. Text
    still comes as ``str``; an ``async def on_message`` gets ``bytes``."""
    if inspect.iscoroutinefunction(on_message):
        return on_message

    def call(message: Any) -> Any:
        if type(message) is not bytes:
            return on_message(message)
        view = memoryview(message)
        message = None
        try:
            return on_message(view)
        finally:
            try:
                view.release()
            except BufferError:  # the handler kept a slice: no reuse, nothing breaks
                pass

    return call


def _drop(message: object) -> None:  # on_message after the handler failed: ignore the rest
    return None


_COROUTINE = types.CoroutineType
# Run a coroutine's first step as a given task (WebSocketProtocol._receive_ws):
# what Task.__step does around each step, in asyncio since Python 3.7.
_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
# create_task(context=) (3.11+): the first step runs in the consumer task's
# own contextvars context, so what it sets is there after a suspension.
# Before 3.11, every coroutine goes to the consumer task as it always did.
_TASK_CONTEXT = sys.version_info >= (3, 11)


# What a step driver yields when the coroutine it ran has returned.
_STEP_DONE = object()


@types.coroutine
def _step_driver() -> Generator[Any, Any, None]:
    """A generator that runs the coroutines sent to it, one after another,
    each to its end or its first suspension: ``send(coro)`` returns
    ``_STEP_DONE`` when ``coro`` returned without suspending, else what
    ``coro`` yielded (the driver is then inside ``coro``: _Resume continues
    it). Driving ``coro.send(None)`` directly would raise and catch a
    StopIteration per message; ``yield from`` takes the return in C."""
    coro = yield
    while True:
        yield from coro
        coro = yield _STEP_DONE


@types.coroutine
def _primed() -> Generator[None, None, None]:
    """Where a consumer task's coroutine waits for the task's first step:
    _new_consumer runs _consume() to this yield before it makes the task,
    so that a Task.cancel() landing before that step is thrown in here,
    inside _consume's try (into a coroutine that has not started it would
    end it before its first line: no except, no finally)."""
    yield


def _new_step() -> Any:
    """A primed step driver's ``send``."""
    driver = _step_driver()
    driver.send(None)
    return driver.send


class _Resume:
    """Awaiting this continues a step driver (``_step_driver``) whose
    coroutine suspended outside the awaiting task, having yielded
    ``yielded``: what the coroutine yields goes up to the task, what the
    task sends or throws goes down, as if the task had awaited the coroutine
    from the start (a ``yield from`` by hand), until the driver reports the
    coroutine done."""

    __slots__ = ("coro", "yielded", "thrown")

    def __init__(self, coro: Any, yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded
        #: A cancellation meant for the coroutine that reached the task
        #: before the task took the coroutine over (_consume): thrown in
        #: first, where the coroutine is suspended, as Task.cancel() would.
        self.thrown: Optional[BaseException] = None

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value, thrown = self.coro, self.yielded, self.thrown
        self.coro = self.yielded = self.thrown = None
        if thrown is not None:
            cancel = getattr(value, "cancel", None)
            if cancel is not None:  # what it waited on, as Task.cancel() cancels it
                cancel()
            value = coro.throw(thrown)
            if value is _STEP_DONE:
                return None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task (a cancellation)
                value = coro.throw(exc)
            else:
                value = coro.send(sent)
            if value is _STEP_DONE:
                return None


class WebSocketProtocol(asyncio.BufferedProtocol):
    """Drives one TCP connection; see the module docstring.

    ``side``: :class:`~wsfast.connection.Side`; ``options``: :class:`Options`
    (the server replaces them per handler at :meth:`upgrade`); ``owner``: on
    the server an object with ``connection_made(protocol)``,
    ``connection_lost(protocol)`` and ``handle_request(protocol, request)``
    (a coroutine; or ``start_request(protocol, request)``, a plain function); on the client one with ``connection_made(protocol)``,
    ``connection_lost(protocol, exc)`` and
    ``handshake_response(protocol, response)``.
    """

    #: The sans-IO class :meth:`upgrade` instantiates (a front-end such as
    #: :mod:`wsfast.tornado` may use a subclass: e.g. its close reasons);
    #: None: the build of :class:`~wsfast.connection.Connection` that goes
    #: with the codec (``get_connection_class``: compiled, or pure Python
    #: with the pure-Python codec).
    connection_class: Optional[Callable[..., Connection]] = None

    __slots__: "tuple[str, ...]" = (
        "side", "options", "owner", "transport", "connection", "handler",
        "remote_address", "local_address", "_loop", "_view", "_done", "_mode",
        "_server", "_parser", "_requests", "_busy", "_eof", "_shutting_down",
        "_head_timer", "_read_paused", "_pending_error", "_on_message", "_backlog",
        "_consumer", "_idle", "_ws_closed", "_notified", "_lost", "_write_paused",
        "_drain", "_batch", "_close_timer", "_ping_timer", "_pong_timer",
        "_close_held", "_hold_timer", "_bare_build", "_windowed", "_write_cap", "_shared",
        "_consumer_context", "_step", "_write_now",
    )  # many connections: no per-instance dict

    def __init__(self, side: Side, options: Options, owner: Any) -> None:
        self.side = side
        self.options = options
        self.owner = owner
        # Typed as what they are once set: the transport, loop and shared
        # buffers by connection_made(), before any other call; the sans-IO
        # Connection and on_message by upgrade(), before WebSocket mode
        # (None before that: code that may run earlier checks).
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.connection: Connection = None  # type: ignore[assignment]
        self.handler: Any = None  # the handler (server) or the ClientConnection
        self.remote_address: Any = None  # getpeername(), once connected
        self.local_address: Any = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._view: memoryview = None  # type: ignore[assignment]
        self._done: "asyncio.Future[None]" = None  # type: ignore[assignment]
        self._shared: _LoopShared = None  # type: ignore[assignment]
        self._mode = _HTTP
        self._server = side is Side.SERVER

        # HTTP
        self._parser: Any = None  # a RequestParser (server) or ResponseParser
        # rarely more than one: a list is 56 bytes, a deque 600
        self._requests: List[Request] = []
        self._busy = False  # a request is being handled
        self._eof = False
        self._shutting_down = False
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._read_paused = False  # by us, for any reason; see pause_reading
        # a parse error behind pipelined requests
        self._pending_error: Optional[HandshakeError] = None

        # WebSocket
        self._on_message: Callable[[Any], Any] = None  # type: ignore[assignment]
        # a deque, once on_message returned a coroutine (None: "direct mode")
        self._backlog: Any = None
        self._consumer: Optional["asyncio.Task[None]"] = None
        # the consumer task's contextvars.Context
        self._consumer_context: Any = None
        # a step driver's send (_new_step), between reads
        self._step: Any = None
        # the consumer's wait for the next message
        self._idle: Optional["asyncio.Future[None]"] = None
        self._ws_closed = False  # the handler was or will be told
        self._notified = False
        self._lost = False
        self._write_paused = False
        self._drain: Optional["asyncio.Future[None]"] = None
        # a list while a read's messages are handled
        self._batch: Optional[List[bytes]] = None
        # The next frame write_message writes outside a batch goes to the
        # transport at once instead of being corked: set by a front-end whose
        # application is about to answer a message it waited for (wsfast.asgi:
        # one message in flight; corked, the answer would cost another loop
        # iteration, an epoll_wait, per message).
        self._write_now = False
        self._close_timer: Optional[asyncio.TimerHandle] = None
        self._ping_timer: Optional[asyncio.TimerHandle] = None
        self._pong_timer: Optional[asyncio.TimerHandle] = None
        # The close frame of a read is held back while the application still
        # has messages from before it to answer (see _hold_close).
        self._close_held = False
        self._hold_timer: Optional[asyncio.TimerHandle] = None
        # The codec's build_frame on a server without extensions, where a
        # data frame is the bare frame (see write_message), else None.
        self._bare_build: Optional[Callable[..., bytes]] = None
        self._windowed = False  # get_buffer returned the connection's read_window
        self._write_cap = options.write_buffer_cap  # see Options.max_write_buffer

    # -- asyncio.BufferedProtocol ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (a stream transport)
        loop = self._loop = asyncio.get_running_loop()
        shared = self._shared = _loop_shared(loop)
        self._view = shared.view
        self._done = shared.done
        opts = self.options
        self.transport.set_write_buffer_limits(high=opts.write_buffer_high, low=opts.write_buffer_low)
        self.remote_address = transport.get_extra_info("peername")
        self.local_address = transport.get_extra_info("sockname")
        if self._server:
            self._parser = RequestParser(
                max_header_size=opts.max_header_size, max_body_size=opts.max_body_size
            )
            self._arm_head_timer()
        else:
            self._parser = ResponseParser(max_header_size=opts.max_header_size)
        self.owner.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # Event loops may ask again without reporting a read (libuv asks
        # before every read attempt; one that finds nothing is not reported):
        # whatever this returns, _windowed says so for the next buffer_updated.
        if self._mode == _WS and self.connection.in_frame:  # (a connection once in _WS)
            window: Optional[memoryview] = self.connection.read_window(WINDOW_MIN)
            if window is not None:
                self._windowed = True
                return window
            self._windowed = False  # in_frame is now False: the next call skips all this
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self._mode == _WS:
            if self._windowed:
                self._windowed = False
                self._receive_ws(self.connection.receive_window(nbytes))
            else:
                shared = self._shared
                if nbytes == shared.slice_len:
                    data = shared.slice
                else:
                    data = shared.slice = self._view[:nbytes]
                    shared.slice_len = nbytes
                self._receive_ws(self.connection.receive_data(data))  # type: ignore[arg-type]  # (the slice: set with its length)
        elif self._mode == _HTTP:
            if self._server:
                self._receive_request(self._view[:nbytes])
            else:
                self._receive_response(self._view[:nbytes])
        # _DONE: the closing handshake is over; discard.

    def data_received(self, data: bytes) -> None:
        """Bytes read by someone else, processed as a read of ours: a server
        that parsed the request head itself hands it over this way (uvicorn,
        see :mod:`wsfast.asgi`) before it gives us the transport."""
        if self._mode == _WS:
            self._receive_ws(self.connection.receive_data(data))
        elif self._mode == _HTTP:
            if self._server:
                self._receive_request(data)
            else:
                self._receive_response(data)
        # _DONE: the closing handshake is over; discard.

    def eof_received(self) -> Optional[bool]:
        self._eof = True
        if self._mode == _WS:
            if self._close_held:
                # The peer's close came before its EOF, and an async
                # consumer still answers the messages before it: the socket
                # stays open for writing until the held close has gone out
                # after those answers (_release_close closes it).
                return True
            if self._unconsumed():
                # A half-close without a close frame: the same, for the
                # messages that arrived before the EOF (bounded like a held
                # close); _release_close then takes the EOF.
                self._hold_close()
                return True
            self.connection.receive_eof()
            self._ws_finished()
            return False
        if self._mode == _HTTP and self._server and self._busy:
            # A half-closed client still gets the answer to its request.
            return True
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._lost = True
        self._cancel_timers()
        if self._mode == _WS:
            self.connection.receive_eof()
            self._mode = _DONE
        self._mode = _DONE
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)  # the next write raises ConnectionClosed
        if self.connection is not None:
            self._notify_closed()
        owner = self.owner
        if self._server:
            owner.connection_lost(self)
        else:
            owner.connection_lost(self, exc)

    def pause_writing(self) -> None:
        # The write buffer is over its high-water mark: the peer reads
        # slower than we write. Stop reading what it sends (its pings, the
        # messages whose answers would grow the buffer): TCP pushes back on
        # it. Pongs wait, only the latest kept (RFC 6455 §5.5.3).
        self._write_paused = True
        conn = self.connection
        if self._mode == _WS:
            conn.defer_pongs = True
            if self._read_blocked_by_write() and not self._read_paused:
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        conn = self.connection
        if self._mode == _WS:
            conn.defer_pongs = False
            pong = conn.deferred_pong()
            if pong:
                self._send(pong)
            if not self._read_paused and not self._eof and not self.transport.is_closing():
                self.transport.resume_reading()
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def _read_blocked_by_write(self) -> bool:
        """Is reading paused because the write buffer is full? Not once our
        close was sent: the peer's close reply must be read."""
        return (
            self._write_paused
            and self._mode == _WS
            and self.connection.close_sent is None
            and not self._eof
            and not self._lost
        )

    def _write_buffer_full(self) -> bool:
        """Does the transport hold more than ``max_write_buffer`` unsent?
        (It may only when its writing is paused: the cap is at least the
        high-water mark.)"""
        return self._write_paused and self.transport.get_write_buffer_size() > self._write_cap

    def _close_slow_consumer(self) -> bool:
        """Close a connection whose peer does not read what we send: 1008
        "slow consumer", counted in the owner's ``stats`` (if it has one).
        The close frame waits behind the full buffer; the close timer drops
        the connection if it cannot be delivered in time. True if this
        started the close."""
        conn = self.connection
        if conn is None or conn.state is not _OPEN or self._lost:
            return False
        log.info(
            "%s: slow consumer (%d bytes unsent); closing with 1008",
            self.remote_address, self.transport.get_write_buffer_size(),
        )
        self.close(1008, "slow consumer")
        stats = getattr(self.owner, "stats", None)
        if stats is not None:
            stats["slow_consumers"] += 1
        return True

    def _refuse_write(self) -> NoReturn:
        """A write to a peer over the cap: close it (once), then raise."""
        self._close_slow_consumer()
        raise self.closed_error()

    # -- reading control ---------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the socket (the application lags); idempotent.
        Not once our close was sent: the peer's close reply must be read
        (RFC 6455 §7.1.1), or the closing handshake waits out its timeout."""
        conn = self.connection
        if conn is not None and conn.close_sent is not None:
            return
        if not self._read_paused:
            self._read_paused = True
            if not self._lost and not self._eof and not self._read_blocked_by_write():
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading` (unless the write buffer
        is full: then once it drains); idempotent."""
        self._read_paused = False
        # After the EOF there is nothing to read (and the stdlib loop would
        # report the EOF again).
        if (
            not self._lost
            and not self._eof
            and not self._read_blocked_by_write()
            and not self.transport.is_closing()
        ):
            self.transport.resume_reading()

    # -- HTTP, server side ---------------------------------------------------------

    def _arm_head_timer(self) -> None:
        timeout = self.options.open_timeout
        if timeout is not None:
            self._head_timer = self._loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._mode == _HTTP and not self._busy:
            log.debug("%s: no request within the opening handshake timeout", self.remote_address)
            self.transport.abort()

    def _receive_request(self, data: Union[bytes, bytearray, memoryview]) -> None:
        try:
            requests = self._parser.feed(data)
        except HandshakeError as exc:
            if self._busy or self._requests:
                # Answer the requests before the bad one first.
                self.pause_reading()
                self._pending_error = exc
            else:
                self._http_error(exc)
            return
        if requests:
            self._cancel_head_timer()
            remote = self.remote_address
            for request in requests:
                request.remote = remote
                self._requests.append(request)
            self._next_request()
        if self._mode == _HTTP and (self._parser.upgraded or len(self._requests) > 8):
            # After an upgrade request the bytes are WebSocket frames: hold
            # them in the kernel until the handshake is decided (unless it
            # was, by an owner's start_request: then the mode is no longer HTTP).
            self.pause_reading()

    def _next_request(self) -> None:
        if self._busy or self._mode != _HTTP:
            return
        if not self._requests:
            error = self._pending_error
            if error is not None:
                self._pending_error = None
                self._http_error(error)
            return
        request = self._requests.pop(0)
        self._busy = True
        if self._read_paused and not self._parser.upgraded and len(self._requests) <= 4:
            self.resume_reading()
        start = getattr(self.owner, "start_request", None)
        if start is not None:
            # An owner that answers without a coroutine of its own (wsfast.asgi
            # starts the application's task itself): no task per request.
            start(self, request)
            return
        self._loop.create_task(self._run_request(request))

    async def _run_request(self, request: Request) -> None:
        try:
            await self.owner.handle_request(self, request)
        except Exception:
            log.exception("error while handling %r", request)
            if self._busy and self._mode == _HTTP and not self._lost:
                self.finish_http(build_response(500, [("Connection", "close")], b""), False)

    def write(self, data: bytes) -> None:
        """Write raw bytes (HTTP mode: a response, or part of one)."""
        if not self._lost:
            self.transport.write(data)

    def finish_http(self, data: bytes, keep_alive: bool) -> None:
        """Write the answer ``data`` to the current request; then serve the
        next one if ``keep_alive``, else close the connection."""
        if self._lost:
            return
        if data:
            self.transport.write(data)
        self._busy = False
        if self._shutting_down or not keep_alive or self._parser.upgraded:
            self._close_gracefully()
        elif self._requests or self._pending_error is not None:
            self._next_request()
        elif self._eof or self._parser.finished:
            self._close_gracefully()
        else:
            self.resume_reading()
            self._arm_head_timer()

    def _http_error(self, exc: HandshakeError) -> None:
        """Answer a request we cannot parse or accept, then close."""
        headers = list(exc.headers) + [("Connection", "close"), ("Content-Type", "text/plain")]
        body = (exc.reason + "\n").encode("utf-8", "replace")
        self._busy = False
        self._cancel_head_timer()
        if not self._lost:
            self.transport.write(build_response(exc.status, headers, body))
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        """Half-close (so that the peer reads all we wrote, even if it is still
        sending), then drop the connection after ``close_timeout``."""
        self._mode = _DONE
        self._cancel_head_timer()
        transport = self.transport
        if self._lost or transport.is_closing():
            return
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()  # read and discard until the peer closes
        if transport.can_write_eof() and not self._eof:
            self._half_close(transport)
        else:
            transport.close()

    def _half_close(self, transport: asyncio.WriteTransport) -> None:
        """Shut our side (the peer reads all we wrote), then drop TCP if the
        peer has not closed its side within ``close_timeout``. A peer already
        gone makes shutdown() fail (ENOTCONN): then there is nothing to wait for."""
        try:
            transport.write_eof()
        except OSError:
            transport.abort()
            return
        self._arm_close_timer(abort=True)

    # -- HTTP, client side ------------------------------------------------------

    def _receive_response(self, data: Union[bytes, bytearray, memoryview]) -> None:
        try:
            response = self._parser.feed(data)
        except HandshakeError as exc:
            self._mode = _DONE
            self.owner.handshake_failed(self, exc)
            self.transport.abort()
            return
        if response is not None:
            self.pause_reading()  # until the owner decides
            self.owner.handshake_response(self, response)

    # -- the switch to WebSocket -------------------------------------------------

    def upgrade(self, handler: Any, response: bytes = b"", options: Optional[Options] = None,
                extensions: Sequence["Extension"] = (),
                on_open: Optional[Callable[[], Optional[Awaitable[None]]]] = None) -> bool:
        """Switch to WebSocket: write ``response`` (the server's 101), create
        the Connection with ``options``, call ``on_open()`` (the handler's
        ``open``; if it returns a coroutine, messages wait for it), then
        process any frames that came with the handshake and resume reading.
        Returns False if the connection was lost meanwhile."""
        if self._lost or self._mode != _HTTP:
            return False
        if options is not None:
            self.options = options
        opts = self.options
        self.transport.set_write_buffer_limits(
            high=opts.write_buffer_high, low=opts.write_buffer_low
        )
        self._write_cap = opts.write_buffer_cap
        if response:
            self.transport.write(response)
        self._cancel_head_timer()
        self._busy = False
        self.handler = handler
        self._on_message = handler.on_message
        connection_class = self.connection_class or get_connection_class(opts.codec)
        self.connection = connection_class(
            self.side,
            max_message_size=opts.max_message_size,
            codec=opts.codec,
            extensions=extensions,
            max_fragments=opts.max_fragments,
        )
        if self._server and not extensions:
            self._bare_build = self.connection.codec.build_frame
        if getattr(handler, "zero_copy", False):
            self._on_message = _zero_copy(handler.on_message)
            self.connection.reuse_buffer = True
        self._mode = _WS
        if opts.ping_interval:
            self._ping_timer = self._loop.call_later(opts.ping_interval, self._keepalive)
        if on_open is not None:
            try:
                result = on_open()
            except Exception:
                self._handler_failed("open")
                result = None
            if result is not None and result is not self._done and inspect.isawaitable(result):
                self._start_consumer(result)
        pending = self._parser.trailing
        self._parser = None
        if self._mode == _WS and pending:
            self._receive_ws(self.connection.receive_data(pending))
        if self._shutting_down and self._mode == _WS:
            self.close(1001, "server shutting down")
        self.resume_reading()
        return True

    def refuse(self, exc: HandshakeError) -> None:
        """Server: answer the upgrade request with ``exc`` (a HandshakeError) and close."""
        self._http_error(exc)

    # -- WebSocket: receiving ----------------------------------------------------

    def _receive_ws(self, events: List[Any]) -> None:
        conn = self.connection
        # Frames corked by a broadcast earlier in this loop turn go first.
        batch = self._batch
        if events:
            # Replies written while handling this read are batched into one
            # transport write (one syscall for a read full of messages).
            if batch is None:
                batch = self._batch = []
            # the consumer task, entered for on_message coroutines (then
            # run_in_host is its context's run())
            host: Any = None
            try:
                # on_message while messages go straight to it (no consumer
                # task), else None; read again whenever that may change.
                on_message = self._on_message if self._backlog is None else None
                for event in events:
                    kind = type(event)
                    if kind is str or kind is bytes:
                        if on_message is not None:
                            try:
                                result = on_message(event)
                            except ConnectionClosed:
                                # A reply to a message that came with the
                                # close (or a failure) in one read: the
                                # connection is closing, not a handler bug.
                                continue
                            except Exception:
                                self._handler_failed("on_message")
                                on_message = self._on_message if self._backlog is None else None
                                continue
                            if result is not None and result is not self._done:
                                if type(result) is _COROUTINE:  # async def on_message
                                    # Its first step now, as the consumer task
                                    # (the section "async def on_message" below).
                                    if host is None:
                                        host = self._consumer
                                        if host is None or not _TASK_CONTEXT:
                                            host = self._enter_consumer()
                                        else:  # _enter_consumer's common case, inline
                                            try:
                                                _enter_task(self._loop, host)
                                            except RuntimeError:
                                                host = False
                                        if host:
                                            run_in_host = self._consumer_context.run
                                    if host:
                                        # the driver is ours again only if the
                                        # coroutine returns without suspending
                                        step = self._step or _new_step()
                                        self._step = None
                                        try:
                                            yielded = run_in_host(step, result)
                                        except ConnectionClosed:
                                            continue
                                        except (Exception, asyncio.CancelledError):
                                            self._handler_failed("on_message")
                                        else:
                                            if yielded is _STEP_DONE:  # done without suspending
                                                self._step = step
                                                continue
                                            # suspended: the consumer continues it
                                            self._start_consumer(_Resume(step.__self__, yielded))
                                    else:  # inside another task: the consumer runs it
                                        self._start_consumer(result)
                                elif inspect.isawaitable(result):
                                    # A pending write awaitable (or another
                                    # awaitable): later messages wait for it.
                                    self._start_consumer(result)
                                on_message = self._on_message if self._backlog is None else None
                        else:
                            self._enqueue(event)
                    elif kind is Ping:
                        self._call_handler(self.handler.on_ping, event.data)
                    elif kind is Pong:
                        if self._pong_timer is not None:
                            self._pong_timer.cancel()
                            self._pong_timer = None
                        self._call_handler(self.handler.on_pong, event.data)
                    elif kind is Fragment:  # a streamed message (Connection.stream_next)
                        self._call_handler(self.handler.on_fragment, event)
                    # Close: the Connection queued the reply; the state tells the rest.
            finally:
                self._batch = None
                if host:
                    _leave_task(self._loop, host)
        elif batch is None:
            batch = []
        else:
            self._batch = None
        if conn.state is _CLOSED:
            if conn.close_pending and self._unconsumed():
                out = conn.data_to_send(hold_close=True)
                self._hold_close()
            else:
                out = conn.data_to_send()
            if out:
                batch.append(out)
            if batch and not self._lost:
                _write_list(self.transport, batch)
            if not self._close_held:
                self._ws_finished()
            return
        # Open (or closing): the automatic replies (pongs, a close) queued,
        # if any; data_to_send() without its call when none is.
        if conn._out or conn._pending_close is not None:
            out = conn.data_to_send()
            if out:
                batch.append(out)
        if batch and not self._lost:
            if len(batch) == 1:  # _write_list's common case, inline
                self.transport.write(batch[0])
            else:
                _write_list(self.transport, batch)

    # -- the close of a read, held while earlier messages are unanswered ----------
    #
    # RFC 6455 §5.5.1 lets an endpoint finish its current message before its
    # close frame. When a read completes messages *and* a close (the peer's,
    # or one failing the connection on a violation behind them), a sync
    # on_message has answered them before the close goes out. An async
    # consumer (``async def on_message``, the client's recv()) has not: the
    # close waits until it has taken those messages (and had a turn to
    # answer), or for at most _HOLD_LIMIT seconds (close_timeout if shorter).

    def _unconsumed(self) -> bool:
        """Messages received but not yet handled by an async consumer?"""
        backlog = self._backlog
        if backlog is not None:  # async def on_message: busy, or messages queued
            return bool(backlog) or (self._consumer is not None and self._idle is None)
        pending = getattr(self.handler, "_unconsumed", None)  # the client's recv() queue
        return pending is not None and pending()

    def _hold_close(self) -> None:
        self._close_held = True
        limit = self.options.close_timeout
        limit = _HOLD_LIMIT if limit is None else min(limit, _HOLD_LIMIT)
        self._hold_timer = self._loop.call_later(limit, self._release_close)

    def _release_close(self) -> None:
        """Send the held close frame and finish (called outside any batch)."""
        if not self._close_held:
            return
        self._close_held = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        conn = self.connection
        out = conn.data_to_send()
        self._flush_batch()  # what a broadcast corked goes before the close
        if out and not self._lost:
            self.transport.write(out)
        if self._eof and conn.state is not _CLOSED:
            conn.receive_eof()  # a half-close held by eof_received
        if conn.state is _CLOSED:
            self._ws_finished()

    def consumed(self) -> None:
        """The async consumer took the last queued message: let the held
        close go after its current turn (so a reply it sends first still
        precedes the close)."""
        if self._close_held:
            self._loop.call_soon(self._release_close)

    # -- corking: many small writes to one transport in one loop turn ------------
    #
    # wsfast.broadcast does not write to a transport that has no batch open:
    # it opens one (``_cork``) and a callback of the same loop turn's end
    # (``_LoopShared.flush_corked``) writes it. Several broadcasts in one turn
    # (a fan-out wave, commands that came in one read) then cost one syscall
    # per connection, not one per message. Everything written meanwhile
    # (write_message, pongs, a close) joins the batch, so the order holds; a
    # read of that connection writes the batch itself; _ws_finished flushes
    # it before the half-close.

    def cork(self) -> None:
        """Batch what is written from now to the end of this loop turn into
        one transport write (a front-end that answers several queued
        messages in one turn: wsfast.asgi). A no-op while a batch is open."""
        if self._batch is None:
            self._cork(None)

    def _cork(self, data: Optional[bytes]) -> None:
        """Open a batch holding ``data`` (None: empty); it is written at the end of this loop turn."""
        self._batch = [data] if data is not None else []
        shared = self._shared
        shared.corked.append(self)
        if not shared.flush_pending:
            shared.flush_pending = True
            self._loop.call_soon(shared.flush_corked)

    def _flush_batch(self) -> None:
        """Write the open batch now and close it."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        if batch and not self._lost:
            _write_list(self.transport, batch)

    def _write_batch(self) -> None:
        """Write what the open batch holds now, keeping it open (a read that
        owns it may still append)."""
        batch = self._batch
        if batch and not self._lost:
            _write_list(self.transport, batch)
        del batch[:]  # type: ignore[union-attr]  # (open: not None)

    def _send(self, data: bytes) -> None:
        """Write ``data`` after whatever is batched (see ``_receive_ws``)."""
        batch = self._batch
        if batch is not None:
            batch.append(data)
        elif data and not self._lost:
            self.transport.write(data)

    def _send_parts(self, parts: Sequence[Union[bytes, memoryview]]) -> None:
        """Write ``parts`` (a tuple of buffers, large ones among them) now,
        in one call after whatever is batched, none of them copied. An open
        batch stays open, emptied (its owner may still append)."""
        batch = self._batch
        if batch:
            parts = (*batch, *parts)
            del batch[:]
        if not self._lost:
            self.transport.writelines(parts)

    def _call_handler(self, method: Callable[[Any], Any], arg: Any) -> None:
        try:
            result = method(arg)
        except Exception:
            log.exception("error in %s", getattr(method, "__qualname__", method))
            return
        if result is not None and asyncio.iscoroutine(result):
            self._loop.create_task(result)

    def _enqueue(self, message: Any) -> None:
        backlog = self._backlog
        backlog.append(message)
        if len(backlog) >= self.options.max_queue:
            self.pause_reading()  # the application lags: stop reading

    # -- async def on_message -------------------------------------------------------
    #
    # A coroutine that on_message returns is run at once, inside the read
    # (in _receive_ws): one that completes without suspending (it only calls
    # write_message) costs about what a sync on_message costs, and its
    # writes join the read's batch. Its step runs as the connection's
    # consumer task (a task per connection with an async handler, created
    # at the first coroutine) and in that task's contextvars context, so
    # current_task(), asyncio.timeout(), wait_for() and context variables
    # behave as in any task (Python 3.11+; before, the task runs them all). When it suspends, it is handed to
    # that task (_start_consumer: "queued mode", _backlog a deque), and the
    # messages after it wait in _backlog, in order, for the task to await
    # their coroutines; max_queue of them pause reading. Once the backlog
    # is empty (and a held close sent), the task sets _backlog to None
    # ("direct mode") and waits for the next suspended coroutine.

    def _enter_consumer(self) -> Any:
        """Make the consumer task (created if need be) the current task, as
        Task.__step does around a step; the caller leaves it (_leave_task)
        at the end of its read. False inside another task (the frames that
        came with the 101 are handled in the request's task)."""
        if not _TASK_CONTEXT:
            return False
        host = self._consumer
        if host is None:
            host = self._new_consumer()
        try:
            _enter_task(self._loop, host)
        except RuntimeError:
            return False
        return host

    def _new_consumer(self) -> "asyncio.Task[None]":
        consume = self._consume()
        consume.send(None)  # to its _primed() yield: see there
        if _TASK_CONTEXT:
            context = self._consumer_context = contextvars.copy_context()
            task = self._loop.create_task(consume, context=context)
        else:
            task = self._loop.create_task(consume)
        self._consumer = task
        return task

    def _start_consumer(self, first: Any) -> None:
        """Queued mode: the consumer task awaits ``first`` (a suspended
        on_message, an ``async def open``, a pending write awaitable), and
        the messages that follow wait behind it."""
        self._backlog = collections.deque((first,))
        consumer = self._consumer
        if consumer is None:
            self._new_consumer()
            return
        idle = self._idle
        if idle is not None:
            self._idle = None
            if not idle.done():
                idle.set_result(None)

    async def _consume(self) -> None:
        """The consumer task of a connection whose handler is async: awaits,
        in order, what waits in the backlog (see above)."""
        low = max(self.options.max_queue // 2, 0)
        done = self._done
        try:
            try:
                await _primed()  # _new_consumer ran us to here; the task goes on
            except asyncio.CancelledError as exc:
                # Cancelled before its first step: the first coroutine of a
                # connection ran its first step as this task, just created
                # (a timer of its asyncio.timeout() due when the loop next
                # looks: uvloop runs due timers before call_soon callbacks).
                if not self._to_coroutine(exc):
                    raise
            while True:
                backlog = self._backlog
                if backlog:
                    item = backlog.popleft()
                    kind = type(item)
                    if kind is str or kind is bytes:  # a message
                        if self._read_paused and len(backlog) <= low and self._mode == _WS:
                            self.resume_reading()
                        try:
                            item = self._on_message(item)
                        except ConnectionClosed:
                            continue
                    if item is not None and item is not done and inspect.isawaitable(item):
                        try:
                            await item
                        except ConnectionClosed:
                            pass  # wrote to a closing connection: not a handler bug
                    continue
                if self._close_held:  # every message before the close answered
                    self._release_close()
                    continue
                if self._ws_closed or self._on_message is _drop:
                    break
                self._backlog = None  # direct mode: the next coroutine runs in the read
                idle = self._idle = self._loop.create_future()
                try:
                    await idle
                except asyncio.CancelledError as exc:
                    if not self._to_coroutine(exc):
                        raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", None)  # Python 3.11+
            if cancelling is not None and not cancelling():
                # on_message raised it: a handler bug like any other exception,
                # which would otherwise leave the connection open and deaf.
                self._handler_failed("on_message")
                return
            # This task was cancelled: the loop shuts down, or someone (the
            # handler itself) cancelled it. Before 3.11 that cannot be told
            # from a CancelledError that on_message raised: logged as its
            # failure too. Idle (direct mode), the next coroutine gets a new
            # task; a backlog would wait for this one forever: closed (1011).
            if self._backlog is not None:
                if cancelling is None:
                    self._handler_failed("on_message")
                else:
                    self._give_up()
            raise
        except Exception:
            self._handler_failed("on_message")
        finally:
            self._consumer = None
            if self._ws_closed:
                self._notify_closed()

    def _to_coroutine(self, exc: BaseException) -> bool:
        """A cancellation that reached the consumer task while it waited
        (idle, or for its first step): a coroutine that suspended in a read
        ran as this task, and asyncio.timeout()/wait_for() inside it cancel
        this task. When that lands after the coroutine was handed over but
        before the task woke to take it, it is the coroutine's: thrown in
        there (the timeout turns it into TimeoutError). False: not the
        coroutine's (none waits at the head of the backlog)."""
        backlog = self._backlog
        if backlog and type(backlog[0]) is _Resume:
            backlog[0].thrown = exc
            return True
        return False

    def _handler_failed(self, where: str) -> None:
        log.exception("error in %s of %r; closing the connection with 1011", where, self.handler)
        self._give_up()

    def _give_up(self) -> None:
        """Close (1011) a connection whose handler cannot go on: it failed
        (_handler_failed, logged), or its consumer task was cancelled with
        messages (or an on_message, an ``async def open``, a write) waiting
        for it, which would otherwise wait, and the connection with them,
        for a task that is gone (not logged: a cancellation is no handler
        error). Later messages go to _drop; what waits is dropped."""
        self._on_message = _drop
        backlog = self._backlog
        if backlog is not None:
            self._backlog = None  # later messages go to _drop directly
            for item in backlog:
                close = getattr(item, "close", None)
                if close is not None and inspect.iscoroutine(item):
                    close()  # never started: no "never awaited" warning
            backlog.clear()
        self.close(1011, "internal error")

    # -- WebSocket: sending --------------------------------------------------------

    def write_message(self, message: "Message", binary: bool = False,
                      compress: bool = True) -> Awaitable[None]:
        """Send a message: ``str`` as text (or as UTF-8 binary if ``binary``),
        bytes-like as binary, ``dict``/``list`` as JSON text. ``compress=False``
        sends this one uncompressed when permessage-deflate was negotiated
        (no effect otherwise). Returns an awaitable that is done unless the
        write buffer is above its high-water mark, in which case it completes
        once the buffer has drained; awaiting it slows a fast producer down.
        Raises ``ConnectionClosed`` once the connection is closing or closed."""
        conn = self.connection
        if conn is None:
            raise WebSocketError("the WebSocket connection is not open yet")
        if self._lost or self.transport.is_closing():
            # The transport is gone (a reset, an abort): its writes would
            # vanish, and the completed future returned below would let a
            # `while True: await write_message(x)` loop spin without ever
            # yielding to the loop that is to report the loss (as
            # StreamWriter.drain() raises).
            raise self.closed_error()
        if self._write_paused and self._write_buffer_full():
            self._refuse_write()
        kind = type(message)
        # The hot path: on a server without extensions, while data frames may
        # be sent and no automatic reply is queued, Connection.send_binary /
        # send_text return exactly build_frame(opcode, message); build it here
        # and save that call (in any other state they decide, or raise). The
        # test stays inline in both branches: a local flag measured ~130
        # instructions more per message.
        build = self._bare_build  # None on a client or with extensions
        if kind is bytes and compress:  # the most common case first
            if len(message) < _UNCOPIED_MIN:
                if build is not None and conn._can_send and not conn._out:
                    data = build(2, message)
                else:
                    data = conn.send_binary(message)  # type: ignore[arg-type]  # (dispatched on the message's type)
            elif build is None:  # a client masks, an extension transforms: a copy anyway
                data = conn.send_binary(message)  # type: ignore[arg-type]  # (dispatched on the message's type)
            else:
                self._write_now = False  # (written now in any case)
                self._send_parts(conn.send_binary_parts(message))  # type: ignore[arg-type]  # (dispatched on the message's type)
                return self.drained()
        elif not compress:  # rare: the opt-out keeps the common path unchanged
            data = self._encode_uncompressed(conn, message, kind, binary)
        elif kind is str:
            if binary:
                data = conn.send_binary(cast(str, message).encode())
            elif build is not None and conn._can_send and not conn._out:
                data = build(1, message)
            else:
                data = conn.send_text(message)  # type: ignore[arg-type]  # (dispatched on the message's type)
        elif kind is dict or kind is list:
            data = conn.send_text(json.dumps(message))
        else:
            data = conn.send_binary(message)  # type: ignore[arg-type]  # (dispatched on the message's type)
        batch = self._batch
        if batch is not None:
            batch.append(data)
            if len(batch) >= _BATCH_MAX or self._write_paused or (
                len(data) >= _JOIN_MAX and _batch_bytes(batch) >= self.options.write_buffer_high
            ):
                # Many frames in one batch, a full buffer, or as many bytes
                # as the high-water mark: the transport sees them now, so
                # the water marks and the cap apply (a loop awaiting
                # write_message gets its back pressure, never the cap).
                self._write_batch()
        elif self._write_now:  # the answer a peer waits for (see __init__)
            self._write_now = False
            self.transport.write(data)
        elif self._write_paused or len(data) >= _UNCOPIED_MIN:
            self.transport.write(data)  # a large frame gains nothing from waiting
        else:
            # Outside a read (a task, a timer, the consumer after a
            # suspension): corked until the end of this loop turn, so
            # several writes cost one syscall.
            self._cork(data)
        if not self._write_paused:
            return self._done
        drain = self._drain
        if drain is None:
            drain = self._drain = self._loop.create_future()
        return drain

    @staticmethod
    def _encode_uncompressed(conn: Connection, message: Any, kind: type, binary: bool) -> bytes:
        data: bytes
        if kind is str:
            if binary:
                data = conn.send_binary(message.encode(), compress=False)
            else:
                data = conn.send_text(message, compress=False)
        elif kind is dict or kind is list:
            data = conn.send_text(json.dumps(message), compress=False)
        else:
            data = conn.send_binary(message, compress=False)
        return data

    def drained(self) -> Awaitable[None]:
        """An awaitable that completes when the write buffer is below its
        low-water mark (at once if it is). Raises ``ConnectionClosed`` once
        the transport is closing or lost."""
        if self._lost or self.transport.is_closing():
            raise self.closed_error()
        if not self._write_paused:
            return self._done
        drain = self._drain
        if drain is None:
            drain = self._drain = self._loop.create_future()
        return drain

    def send_fragment(self, data: Union[str, bytes, bytearray, memoryview], fin: bool = False,
                      compress: bool = True) -> Awaitable[None]:
        """Send the next piece of a message sent in pieces
        (``Connection.send_fragment``: the first piece's type makes it text
        or binary, ``fin=True`` ends it); returns :meth:`drained`."""
        self._send(self._open_connection().send_fragment(data, fin, compress))
        return self.drained()

    def send_ping(self, data: Union[str, bytes] = b"") -> None:
        """Send a ping (``data``: at most 125 bytes). Raises
        ``ConnectionClosed`` once the connection is closed or its transport
        is closing."""
        self._send(self._open_connection().send_ping(data))

    def send_pong(self, data: Union[str, bytes] = b"") -> None:
        """Send an unsolicited pong (a heartbeat, RFC 6455 §5.5.3)."""
        self._send(self._open_connection().send_pong(data))

    def _open_connection(self) -> Any:
        conn = self.connection
        if conn is None:
            raise WebSocketError("the WebSocket connection is not open yet")
        if self._lost or self.transport.is_closing():
            raise self.closed_error()
        if self._write_buffer_full():
            self._refuse_write()
        return conn

    # -- keepalive ---------------------------------------------------------------

    def _keepalive(self) -> None:
        self._ping_timer = None
        conn = self.connection
        if self._mode != _WS or conn.state is not _OPEN:
            return
        opts = self.options
        self._send(conn.send_ping(os.urandom(4)))
        if opts.ping_timeout is not None and self._pong_timer is None:
            self._pong_timer = self._loop.call_later(opts.ping_timeout, self._pong_timed_out)
        interval = opts.ping_interval
        assert interval is not None  # (armed only with one)
        self._ping_timer = self._loop.call_later(interval, self._keepalive)

    def _pong_timed_out(self) -> None:
        self._pong_timer = None
        if self._mode == _WS:
            log.debug("%s: no pong within the ping timeout", self.remote_address)
            self.close(1011, "keepalive ping timeout")

    # -- closing -------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); the connection ends
        when the peer answers, or after ``close_timeout``. Before the upgrade,
        closes TCP. Does nothing if a close was sent already."""
        if self._lost:
            return
        if self._mode == _HTTP:
            if not self._busy:
                self._close_gracefully()
            else:
                self._shutting_down = True
            return
        if self._close_held:  # the peer's close (or a failure) is answered now
            self._loop.call_soon(self._release_close)
            return
        conn = self.connection
        if conn is None or conn.state is not _OPEN:
            return
        self._send(conn.send_close(code, reason))
        self.resume_reading()  # a lagging application paused it: the reply must be read
        self._cancel_keepalive()
        self._arm_close_timer(abort=True)

    def shutdown(self) -> None:
        """Server shutdown: close WebSocket connections with 1001, idle HTTP
        connections at once, busy ones after their answer."""
        self._shutting_down = True
        if self._mode == _WS:
            self.close(1001, "server shutting down")
        elif self._mode == _HTTP and not self._busy and not self._lost:
            # Idle between requests: nothing in flight either way.
            self._mode = _DONE
            self._cancel_head_timer()
            self.transport.close()

    def close_transport(self) -> None:
        """Close TCP once everything written so far has gone out, what is
        corked for the end of this loop turn included (``transport.close()``
        alone would drop that). No closing handshake: see :meth:`close`."""
        self._flush_batch()
        if not self._lost:
            self.transport.close()

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        if not self._lost:
            self.transport.abort()

    def _arm_close_timer(self, abort: bool) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        timeout = self.options.close_timeout
        if timeout is None:
            return
        callback = self.transport.abort if abort else self.transport.close
        self._close_timer = self._loop.call_later(timeout, callback)

    def _ws_finished(self) -> None:
        """The Connection is CLOSED (closing handshake done, failure, or EOF)."""
        if self._mode != _WS:
            return
        self._mode = _DONE
        self._cancel_keepalive()
        self._flush_batch()  # corked frames go out before the half-close
        if not self._lost:
            transport = self.transport
            self._read_paused = False
            if not self._eof and not transport.is_closing():
                transport.resume_reading()  # read (and discard) until the peer closes
            if self._eof:
                transport.close()
            elif self._server:
                # RFC 6455 §7.1.1: the server closes TCP first.
                if transport.can_write_eof():
                    self._half_close(transport)
                else:
                    transport.close()
            else:
                # The client waits for the server to close, bounded.
                self._arm_close_timer(abort=False)
        self._notify_closed()

    def _notify_closed(self) -> None:
        """Tell the handler once, after the messages it was given."""
        self._ws_closed = True
        if self._notified:
            return
        consumer = self._consumer
        if consumer is not None and not consumer.done():
            idle = self._idle
            if idle is not None:
                self._idle = None
                if not idle.done():
                    idle.set_result(None)
            return  # the consumer calls us again when its queue is empty
        self._notified = True
        try:
            self.handler._ws_closed()
        except Exception:
            log.exception("error in on_close of %r", self.handler)

    def _cancel_keepalive(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_keepalive()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    # -- introspection -------------------------------------------------------------

    @property
    def is_websocket(self) -> bool:
        return self.connection is not None

    @property
    def closed(self) -> bool:
        return self._mode == _DONE or self._lost

    def closed_error(self) -> ConnectionClosed:
        """The ``ConnectionClosed`` exception that tells how the connection
        ended (or is ending: the code of the close we sent)."""
        conn = self.connection
        code = reason = None
        if conn is not None:
            code, reason = conn.close_code, conn.close_reason
            if code is None and conn.close_sent is not None:
                code, reason = conn.close_sent.code, conn.close_sent.reason
        if code is None:
            code, reason = 1006, ""
        cls = ConnectionClosedOK if code in (1000, 1001) else ConnectionClosedError
        return cls(code, reason or "")  # (a reason comes with a code)

    def __repr__(self) -> str:
        mode = {_HTTP: "HTTP", _WS: "WebSocket", _DONE: "closed"}[self._mode]
        return f"<WebSocketProtocol {self.side.name} {mode} {self.remote_address}>"
