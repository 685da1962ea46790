"""wsfast under uvicorn: a WebSocket protocol class for ASGI applications.

    uvicorn app:app --ws wsfast.asgi:WSFastProtocol
    python -m wsfast asgi app:app            # the same, shorter
    uvicorn.Config(app, ws=WSFastProtocol)   # programmatically

FastAPI and Starlette applications run unchanged; their WebSocket traffic
goes through wsfast's codec, :class:`~wsfast.connection.Connection` and
write path instead of uvicorn's pure-Python WebSocket layers.

Theory of operation
-------------------

uvicorn parses the HTTP request itself. When it sees an upgrade it builds
this class with ``config``, ``server_state`` and ``app_state``, calls
``connection_made(transport)``, hands over the request head with
``data_received(head)``, then makes the protocol the transport's reader.

:class:`WSFastProtocol` *is* wsfast's one I/O adapter
(:class:`~wsfast.protocol.WebSocketProtocol`), given the head as a read of
its own: it parses and checks it (a bad one is answered 400/426 without
bothering the application) and hands it to an :class:`ASGISession`, which
runs the application as one task (kept in ``server_state.tasks``) and maps
ASGI messages onto the adapter:

* ``websocket.accept`` → :meth:`~wsfast.protocol.WebSocketProtocol.upgrade`
  with the 101 (uvicorn's default headers first, then the application's;
  the subprotocol; permessage-deflate when ``ws_per_message_deflate``);
* ``websocket.send`` → ``write_message``; a send waits first while the
  transport's buffer is above its high-water mark (backpressure);
* ``websocket.close`` → the closing handshake (before accept: 403);
* ``websocket.http.response.start``/``.body`` → a denial response: with a
  ``Content-Length`` it streams; without, a single body gets one computed,
  several go chunked.

Received messages go to the application as ``websocket.receive`` events:
straight into the ``receive()`` it is waiting in, else into a queue.
Reading pauses as soon as a message waits while the application is not
receiving (as uvicorn's own classes do), or when ``ws_max_queue`` messages
wait while it is; it resumes when the queue is empty. Replies the
application sends while more messages wait are corked: one transport write
per loop turn, not one per message. A close that arrives behind
unanswered messages waits (at most a second) until the application has
taken them, so its replies go out before the close reply (the adapter's
*held close*). ``websocket.disconnect`` comes last, with the code and reason
of the close (1006 when TCP went without one; 1012 on server shutdown).

Settings honoured: ``ws_max_size`` (1009 above it), ``ws_ping_interval`` and
``ws_ping_timeout`` (0 or None turns keepalive off; a missing pong closes
with 1011), ``ws_per_message_deflate``, ``ws_max_queue`` (see above; at
least 1),
``root_path``, the server's default headers (``server``, ``date``),
graceful shutdown (``shutdown()``: 1012, then the close reply is awaited for
``close_timeout`` seconds) and ``server_state.connections``.
"""

import asyncio
import collections
import functools
import logging
import weakref
from typing import (
    TYPE_CHECKING, Any, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union, cast,
)
from urllib.parse import unquote

from .connection import Side, State
from .deflate import DeflateOptions
from .exceptions import HandshakeError, WebSocketError
from .handshake import (
    build_accept_response,
    check_request,
    negotiate_extensions,
    parse_extensions,
    parse_subprotocols,
)
from .http import Request, build_response
from .protocol import Options, WebSocketProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from .handshake import Extension

try:  # the exception uvicorn's own classes raise; Starlette turns any OSError into a disconnect
    from uvicorn.protocols.utils import ClientDisconnected
except ImportError:  # pragma: no cover - uvicorn is the point of this module

    class ClientDisconnected(OSError):  # type: ignore[no-redef]  # (uvicorn's, when installed)
        """The client is gone: the message cannot be sent."""


__all__ = ["WSFastProtocol", "ASGISession", "ClientDisconnected"]

log = logging.getLogger("uvicorn.error")

#: The close timeout of uvicorn's own WebSocket classes (seconds).
CLOSE_TIMEOUT = 10.0

# uvicorn's own classes offer permessage-deflate with these windows (memory
# per connection: 2**12-byte windows, zlib memLevel 5).
_DEFLATE = DeflateOptions(server_max_window_bits=12, client_max_window_bits=12, mem_level=5)

# receive()'s waiter: a future of the protocol's loop (the application's
# task runs in it), made by a partial of the class with the loop bound: not
# loop.create_future() (uvloop's is a Python-level call that passes the
# loop as a keyword: ~10 ns more), and not Future() without a loop, which
# looks the running loop up and so makes a getpid() system call per message
# (the C get_running_loop checks the pid; callgrind does not count it,
# strace -c does: ~120 ns here).
_Future = asyncio.Future
# Called unbound: a C future's method lookup is not specialised by the
# interpreter (its instance dict slot is empty), the call of the method
# descriptor is (callgrind, a loop of Future() and set_result: 133
# instructions less per call).
_set_result = _Future.set_result

_OPEN = State.OPEN
_CLOSING = State.CLOSING

# ASGISession states
_CONNECTING = 0  # before websocket.accept / a denial response
_ACCEPTED = 1  # WebSocket open (as far as the application is concerned)
_RESPONDING = 2  # a denial response is being sent
_ENDED = 3  # closing or closed, response sent, or connection lost

_INTERNAL_ERROR = b"Internal Server Error"

#: An ASGI event (what ``receive()`` returns and ``send()`` takes) and scope.
Event = Dict[str, Any]
Scope = Dict[str, Any]

# uvicorn Config -> {codec: Options}
_options_cache: "weakref.WeakKeyDictionary[Config, Dict[Optional[str], Options]]" = (
    weakref.WeakKeyDictionary())


def _options_for(config: "Config", codec: Optional[str]) -> Options:
    """The adapter's Options for a uvicorn Config (one per Config and codec)."""
    try:
        return _options_cache[config][codec]
    except (KeyError, TypeError):
        pass
    max_queue = config.ws_max_queue
    if max_queue is not None and max_queue < 1:
        raise ValueError(f"ws_max_queue must be at least 1, not {max_queue!r}")
    interval = config.ws_ping_interval
    options = Options(
        max_message_size=config.ws_max_size,
        ping_interval=interval if interval and interval > 0 else None,
        ping_timeout=config.ws_ping_timeout or None,
        close_timeout=CLOSE_TIMEOUT,
        max_queue=max_queue or 32,
        codec=codec,
    )
    try:
        _options_cache.setdefault(config, {})[codec] = options
    except TypeError:  # pragma: no cover - a Config that takes no weak reference
        pass
    return options


def _address(info: Any) -> Optional[Tuple[str, Optional[int]]]:
    if isinstance(info, (tuple, list)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if isinstance(info, str):
        return (info, None)
    return None


class _Minimal:
    """A transport with only part of the asyncio API (uvicorn's tests drive
    protocols through one with write/close/pause/resume): the rest filled in
    the way that transport can. Real transports are used as they are."""

    __slots__ = ("_t",)

    def __init__(self, transport: Any) -> None:
        self._t = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        pass

    def writelines(self, parts: Iterable[bytes]) -> None:
        self._t.write(b"".join(parts))

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        self._t.close()


_NEEDED = ("set_write_buffer_limits", "writelines", "can_write_eof", "write_eof", "abort")


class _Owner:
    """The adapter's owner for every WSFastProtocol: routes its calls to the protocol."""

    __slots__ = ()

    def connection_made(self, protocol: "WSFastProtocol") -> None:
        protocol._connections.add(protocol)

    def connection_lost(self, protocol: "WSFastProtocol") -> None:
        protocol._connections.discard(protocol)
        session = protocol.session
        if session is not None and protocol.connection is None:
            session._lost_before_accept()

    def start_request(self, protocol: "WSFastProtocol", request: Request) -> None:
        protocol._start_session(request)


_OWNER = _Owner()


if TYPE_CHECKING:
    # uvicorn annotates Config(ws=...) and run(ws=...) as type[asyncio.Protocol]
    # (or an import string), and WebSocketProtocol is an asyncio.BufferedProtocol.
    # It implements asyncio.Protocol's methods as well (data_received is how
    # uvicorn hands over the request head), so for type checkers it is one,
    # and `ws=WSFastProtocol` checks. Not at run time: uvloop reads into a
    # protocol's own buffer (get_buffer/buffer_updated) only when it is NOT
    # an asyncio.Protocol (uvloop/handles/stream.pyx and sslproto.pyx,
    # _set_protocol), and a protocol fed by data_received copies every read
    # into a new bytes and loses the zero-copy window for large frames.
    # tests/test_asgi.py test_reads_go_through_get_buffer keeps it so.
    class _ProtocolBase(WebSocketProtocol, asyncio.Protocol):
        __slots__ = ()
else:
    _ProtocolBase = WebSocketProtocol


class WSFastProtocol(_ProtocolBase):
    """The protocol class to give uvicorn (``--ws wsfast.asgi:WSFastProtocol``).

    uvicorn builds one per upgrade request with its ``config``,
    ``server_state`` and ``app_state``. Attributes beyond the adapter's:
    ``config``, ``app_state``, ``session`` (the :class:`ASGISession`, once
    the request head is in), and the timeouts uvicorn's classes expose:
    ``close_timeout`` (settable), ``close_timer`` (the wait for the peer's
    close reply, or None) and ``ping_timer``.
    """

    __slots__ = ("config", "app_state", "session", "_connections", "_tasks", "_default_headers")

    #: The frame codec: None for the fastest available, or "cython"/"python"
    #: (a subclass that sets it is a class to give uvicorn, like this one).
    codec: Optional[str] = None

    def __init__(self, config: "Config", server_state: "ServerState", app_state: Dict[str, Any],
                 _loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if not config.loaded:
            config.load()
        super().__init__(Side.SERVER, _options_for(config, self.codec), _OWNER)
        self.config = config
        self.app_state = app_state
        self.session: Optional[ASGISession] = None
        self._connections: Set[Any] = server_state.connections
        self._tasks: Set["asyncio.Task[None]"] = server_state.tasks
        self._default_headers: List[Tuple[bytes, bytes]] = server_state.default_headers

    # -- what uvicorn (and its tests) read and set ------------------------------

    @property
    def close_timeout(self) -> Optional[float]:
        return self.options.close_timeout

    @close_timeout.setter
    def close_timeout(self, value: Optional[float]) -> None:
        self.options = self.options.replace(close_timeout=value)

    @property
    def close_timer(self) -> Optional[asyncio.TimerHandle]:
        """The timer bounding the wait for the peer's close reply, or None
        when no close of ours waits for one."""
        conn = self.connection
        if conn is None or conn.state is not _CLOSING or self.closed or self.transport.is_closing():
            return None
        return self._close_timer

    @property
    def ping_timer(self) -> Optional[asyncio.TimerHandle]:
        """The keepalive timer (None when keepalive is off)."""
        return self._ping_timer

    # -- asyncio ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not all(hasattr(transport, name) for name in _NEEDED):
            transport = cast(asyncio.BaseTransport, _Minimal(transport))
        super().connection_made(transport)

    def shutdown(self) -> None:
        """Server shutdown (uvicorn calls it on every connection): an open
        WebSocket is closed with 1012 (the application gets its disconnect
        now; the peer's close reply is awaited, bounded by ``close_timeout``);
        one already closing is dropped; a handshake still waiting for the
        application is answered 500."""
        session = self.session
        conn = self.connection
        if conn is not None:
            if conn.state is _OPEN:
                assert session is not None  # (upgraded by it)
                session._disconnected(1012)
                self.close(1012)
            elif not self.closed and not self.transport.is_closing():
                self.close_transport()
            return
        if session is None:
            super().shutdown()
        else:
            session._shutdown_before_accept()

    def _pong_timed_out(self) -> None:
        # No pong within ws_ping_timeout: the peer is gone or stuck, so fail
        # the connection (close frame 1011, then TCP) as uvicorn's own classes
        # do, rather than wait close_timeout for a close reply that will not
        # come. The application's disconnect says 1011.
        self._pong_timer = None
        conn = self.connection
        if conn is not None and conn.state is _OPEN and not self.closed:
            log.debug("%s: no pong within the ping timeout", self.remote_address)
            self._send(conn.fail(1011, "keepalive ping timeout"))
            self._ws_finished()

    # -- the handshake -----------------------------------------------------------

    def _start_session(self, request: Request) -> None:
        try:
            key = check_request(request)
        except HandshakeError as exc:
            log.info('%s - "WebSocket %s" %d', _client(self), request.log_uri, exc.status)
            self.refuse(exc)
            return
        session = self.session = ASGISession(self, request, key)
        task = self._loop.create_task(session.run_asgi())
        tasks = self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def _client(protocol: WebSocketProtocol) -> str:
    address = _address(protocol.remote_address)
    if address is None:
        return ""
    return f"{address[0]}:{address[1]}"


def _latin1(pairs: Iterable[Tuple[bytes, bytes]]) -> List[Tuple[str, str]]:
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in pairs]


class ASGISession:
    """One WebSocket request's ASGI side: the ``scope``, the ``receive`` and
    ``send`` callables, and the handler the adapter calls (``on_message``,
    ``on_ping``, ``on_pong``, ``_ws_closed``)."""

    __slots__ = (
        "protocol", "scope", "_key", "_request", "_state", "_app_closed", "_queue", "_waiter",
        "_handed", "_disconnect", "_response", "_chunked", "_new_future",
    )

    def __init__(self, protocol: WSFastProtocol, request: Request, key: str) -> None:
        self.protocol = protocol
        self._key = key
        # the request, until accepted
        self._request: Request = request
        self._state = _CONNECTING
        self._app_closed = False  # the application sent websocket.close (or a response)
        self._queue: Deque[Event] = collections.deque(({"type": "websocket.connect"},))
        # the future a receive() waits on
        self._waiter: Optional["asyncio.Future[Event]"] = None
        self._handed = False  # a message went straight to a waiting receive()
        # the websocket.disconnect event, once known
        self._disconnect: Optional[Event] = None
        # (status, headers) of a denial response not started yet
        self._response: Optional[Tuple[int, List[Tuple[str, str]]]] = None
        self._chunked = False
        self._new_future = functools.partial(_Future, loop=protocol._loop)
        config = protocol.config
        transport = protocol.transport
        root_path = config.root_path
        raw_path = request.path
        self.scope: Scope = {
            "type": "websocket",
            "asgi": {"version": config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if transport.get_extra_info("sslcontext") else "ws",
            "server": _address(protocol.local_address),
            "client": _address(protocol.remote_address),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": request.query.encode("ascii"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.items()
            ],
            "subprotocols": parse_subprotocols(request.headers),
            "state": protocol.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }

    # -- the application task ------------------------------------------------------

    async def run_asgi(self) -> None:
        protocol = self.protocol
        try:
            result = await protocol.config.loaded_app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except asyncio.CancelledError:
            self._end_abruptly()
            raise
        except Exception:
            log.exception("Exception in ASGI application\n")
            if self._state is _CONNECTING:
                self._respond_500()
        else:
            if self._state is _CONNECTING:
                log.error("ASGI callable returned without completing handshake.")
                self._respond_500()
            elif self._state is _RESPONDING:
                log.error("ASGI callable returned without completing response.")
            elif result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
        self._end_abruptly()

    def _end_abruptly(self) -> None:
        """The application is done: end what it left open. A WebSocket it
        did not close is dropped without a close frame (the peer sees 1006),
        as uvicorn's own classes do; an unfinished response is cut."""
        protocol = self.protocol
        if protocol.closed:
            return
        if self._state is _RESPONDING:
            self._state = _ENDED
            protocol.finish_http(b"", False)
        conn = protocol.connection
        if conn is not None and conn.state is _OPEN and not protocol.transport.is_closing():
            protocol.close_transport()  # after the replies still corked

    def _respond_500(self) -> None:
        self._state = _ENDED
        headers = [*_latin1(self.protocol._default_headers),
                   ("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
        self.protocol.finish_http(build_response(500, headers, _INTERNAL_ERROR), False)

    # -- receive ---------------------------------------------------------------

    async def receive(self) -> Event:
        """The next event: websocket.connect, websocket.receive (text or
        bytes), then websocket.disconnect (again on every later call)."""
        protocol = self.protocol
        # The first send after this answers what it returns: written at once
        # (one message in flight), not corked to the end of the loop turn,
        # which would cost another loop iteration (an epoll_wait) per
        # message; later sends before the next receive() are corked (a
        # burst: one write). See WebSocketProtocol._write_now.
        protocol._write_now = True
        # The message handed over last time has had its turn: a close held
        # behind it may go ("protocol._close_held": consumed()'s test, saving
        # a call per message).
        if protocol._close_held and self._handed:
            protocol.consumed()
        self._handed = False
        queue = self._queue
        if queue:
            event = queue.popleft()
            if not queue and self._state is _ACCEPTED:
                protocol.resume_reading()
                # A close held behind these messages goes once the
                # application comes back for more (it has answered this one).
                self._handed = True
            return event
        disconnect = self._disconnect
        if disconnect is not None:
            return disconnect
        # Whoever resolves the waiter clears _waiter first (on_message,
        # _set_disconnect); a cancelled one is found done and replaced.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            raise RuntimeError("receive() called while another receive() of this connection waits")
        waiter = self._waiter = self._new_future()
        return await waiter

    def on_message(self, message: Union[str, bytes]) -> None:
        event: Event
        if type(message) is str:
            event = {"type": "websocket.receive", "text": message}
        else:
            event = {"type": "websocket.receive", "bytes": message}
        waiter = self._waiter
        if waiter is not None:
            # A receive() waits: then nothing is queued (it waits only on an
            # empty queue) and the state is _ACCEPTED (whatever ends it
            # resolves the waiter with the disconnect, _set_disconnect),
            # unless that receive() was cancelled.
            self._waiter = None
            try:
                _set_result(waiter, event)
            except asyncio.InvalidStateError:
                pass  # cancelled (so was that receive()): queued for the next one
            else:
                self._handed = True
                return
        if self._state is not _ACCEPTED:
            return  # the application sent its close: what crosses it is dropped
        queue = self._queue
        queue.append(event)
        # Leave the rest in the kernel while the application is not receiving
        # (as uvicorn's own classes do), or is but ws_max_queue messages wait.
        if not self._handed or len(queue) >= self.protocol.options.max_queue:
            self.protocol.pause_reading()

    def on_ping(self, data: bytes) -> None:
        pass  # the adapter answers

    def on_pong(self, data: bytes) -> None:
        pass  # the adapter's keepalive watches pongs

    def _unconsumed(self) -> bool:
        """Messages the application has not taken, or not yet had a turn to
        answer (the adapter holds a close behind them)."""
        return self._handed or bool(self._queue)

    def _ws_closed(self) -> None:
        """The adapter: the WebSocket is over (closing handshake, failure, or TCP lost)."""
        conn = self.protocol.connection
        self._state = _ENDED
        self._set_disconnect(
            {"type": "websocket.disconnect", "code": conn.close_code, "reason": conn.close_reason or ""}
        )

    def _disconnected(self, code: int, reason: Optional[str] = None) -> None:
        self._state = _ENDED
        event: Event = {"type": "websocket.disconnect", "code": code}
        if reason is not None:
            event["reason"] = reason
        self._set_disconnect(event)

    def _set_disconnect(self, event: Event) -> None:
        if self._disconnect is not None:
            return
        self._disconnect = event
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(event)

    def _lost_before_accept(self) -> None:
        self._disconnected(1006)

    def _shutdown_before_accept(self) -> None:
        if self._state is _CONNECTING:
            self._respond_500()
        elif not self.protocol.closed:
            self.protocol.close_transport()
        self._disconnected(1006)

    # -- send --------------------------------------------------------------------

    async def send(self, message: Event) -> None:
        """Carry out one ASGI message; raises ClientDisconnected (an OSError)
        once the client is gone, RuntimeError for a message out of turn."""
        protocol = self.protocol
        if protocol._write_paused:  # (drained()'s test, saving a call per message)
            try:
                drained = protocol.drained()
            except WebSocketError:
                pass  # the transport is closing or gone: the state below decides
            else:
                await drained  # backpressure: the buffer is above its high-water mark
        kind = message["type"]
        if self._state is _ACCEPTED:
            if kind == "websocket.send":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("websocket.send needs 'bytes' or 'text'")
                if self._queue:
                    # More messages to answer in this loop turn (a pipelining
                    # peer): their replies go out in one write at its end.
                    protocol.cork()
                # (else the first send since receive() is written at once:
                # see there)
                try:
                    protocol.write_message(data)
                except WebSocketError:
                    raise ClientDisconnected() from None
            elif kind == "websocket.close":
                code = message.get("code") or 1000
                reason = message.get("reason") or ""
                self._app_closed = True
                self._disconnected(code, reason)
                protocol.close(code, reason)
            else:
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
                )
        elif self._state is _CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._deny_403()
            elif kind == "websocket.http.response.start":
                self._response_start(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got {kind!r}."
                )
        elif self._state is _RESPONDING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._response_body(message)
        elif self._app_closed:
            raise RuntimeError(f"Unexpected ASGI message '{kind}', after sending 'websocket.close'.")
        elif kind == "websocket.close":
            self._app_closed = True  # closing what the peer or the server closed: nothing to do
        else:
            raise ClientDisconnected()

    def _accept(self, message: Event) -> None:
        protocol = self.protocol
        if protocol.closed:
            raise ClientDisconnected()
        request = self._request
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(
                f"subprotocol {subprotocol!r} was not offered by the client "
                f"(it offered {self.scope['subprotocols']})"
            )
        headers = _latin1(protocol._default_headers)
        headers += _latin1(message.get("headers") or ())
        ext_header: Optional[str] = None
        extensions: "Sequence[Extension]" = ()
        if protocol.config.ws_per_message_deflate and "Sec-WebSocket-Extensions" in request.headers:
            ext_header, extensions = negotiate_extensions(
                parse_extensions(request.headers), (_DEFLATE,)
            )
        response = build_accept_response(self._key, subprotocol, ext_header, headers)
        self._request = None  # type: ignore[assignment]  # not needed for the life of the connection
        self._state = _ACCEPTED
        log.info('%s - "WebSocket %s" [accepted]', _client(protocol), request.log_uri)
        if not protocol.upgrade(self, response, None, extensions):
            self._state = _ENDED
            raise ClientDisconnected()

    def _deny_403(self) -> None:
        protocol = self.protocol
        log.info('%s - "WebSocket %s" 403', _client(protocol), self._request.log_uri)
        self._app_closed = True
        self._disconnected(1006)
        headers = [*_latin1(protocol._default_headers), ("Connection", "close")]
        protocol.finish_http(build_response(403, headers), False)

    # -- websocket.http.response ---------------------------------------------------

    def _response_start(self, message: Event) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        protocol = self.protocol
        log.info('%s - "WebSocket %s" %d', _client(protocol), self._request.log_uri, status)
        headers = _latin1(message.get("headers") or ())
        names = {name.lower() for name, _ in headers}
        headers = [*_latin1(protocol._default_headers), *headers]
        if "connection" not in names:
            headers.append(("Connection", "close"))
        self._state = _RESPONDING
        if "content-length" in names:
            protocol.write(build_response(status, headers))  # the body streams after it
        else:
            self._response = (status, headers)  # the length comes with the body

    def _response_body(self, message: Event) -> None:
        protocol = self.protocol
        body = message.get("body", b"")
        more = message.get("more_body", False)
        pending = self._response
        if pending is not None:
            self._response = None
            status, headers = pending
            if not more:  # one body: its length is known
                self._finish_response(build_response(status, headers, body))
                return
            headers.append(("Transfer-Encoding", "chunked"))
            head = build_response(status, headers)
            # build_response counted an empty body: replace that Content-Length
            head = head.replace(b"Content-Length: 0\r\n", b"", 1)
            self._chunked = True
            protocol.write(head)
        if self._chunked:
            if body:
                protocol.write(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                self._finish_response(b"0\r\n\r\n")
        elif not more:
            self._finish_response(body)
        elif body:
            protocol.write(body)

    def _finish_response(self, data: bytes) -> None:
        self._state = _ENDED
        self._app_closed = True
        self._disconnected(1006)
        self.protocol.finish_http(data, False)

