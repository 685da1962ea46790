"""A synchronous (blocking, threading) WebSocket client for scripts and
tests, on the same sans-IO :class:`~wsfast.connection.Connection` as the
asyncio client; no event loop::

    from wsfast.sync import connect

    with connect("ws://127.0.0.1:8000/websocket") as ws:
        ws.send("hello")
        print(ws.recv())            # blocks; recv(timeout=1.0) raises TimeoutError
        for message in ws:          # ends when the server closes normally
            ...

One thread may ``recv()`` while others ``send()``: writes are serialized by
a lock, and pings are answered as frames are read (by whichever thread is
in ``recv()``; a connection nobody reads does not answer pings). It follows
redirects, sends basic auth from the URI, ``additional_headers`` and
``origin``, and goes through proxies (``proxy=``, ``proxy_ssl=``,
``proxy_server_hostname=``, or the environment) as :func:`wsfast.connect`
does (``wss://`` through an ``https://`` proxy is TLS inside TLS:
:class:`wsfast.proxy.TLSInTLS`); it has no compression or keepalive support
(use :func:`wsfast.connect` for those).
"""

import collections
import json
import socket
import ssl as _ssl
import threading
import time
from types import ModuleType, TracebackType
from typing import (
    Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Type, Union, cast,
)

from . import handshake as _hs
from .client import (
    REDIRECT_STATUSES,
    USER_AGENT,
    _origin_of,
    basic_auth,
    parse_uri,
    redirect_target,
)
from .connection import (
    Close, Connection, Fragment, Ping, Pong, Side, State, check_max_fragments, get_connection_class,
)
from .exceptions import ConnectionClosedError, ConnectionClosedOK, HandshakeError, InvalidRedirect
from .http import HeadersLike, Response, ResponseParser, _header_pairs, redact_uri
from .proxy import (
    TLSInTLS, check_proxy, is_tls_proxy, open_tunnel_sync, proxy_from_environment, wrap_tls,
)

__all__ = ["connect", "ClientConnection"]

_READ = 65536

#: What ``ClientConnection.socket`` is: a socket, a TLS one, or TLS inside
#: an ``https://`` proxy's TLS.
Socket = Union[socket.socket, TLSInTLS]
#: What :meth:`ClientConnection.send` takes: text, bytes-like, a dict (as
#: JSON), or pieces of one fragmented message.
Sendable = Union[str, bytes, bytearray, memoryview, Dict[str, Any], Iterable[str], Iterable[bytes]]


class ClientConnection:
    """An open WebSocket (from :func:`connect`): ``send``, ``recv``,
    iteration, ``close``; ``subprotocol``, ``response``, ``close_code``,
    ``close_reason``."""

    def __init__(self, sock: Socket, connection: Connection, response: Response,
                 subprotocol: Optional[str], close_timeout: Optional[float], trailing: bytes) -> None:
        self.socket = sock
        self.connection = connection
        self.response = response
        self.subprotocol = subprotocol
        self.close_timeout = close_timeout
        self._events: Deque[Union[str, bytes]] = collections.deque()
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._eof = False
        if trailing:
            self._feed(trailing)

    # -- sending ---------------------------------------------------------------

    def _write(self, data: Optional[bytes]) -> None:
        if data:
            try:
                self.socket.sendall(data)
            except OSError:
                self._lost()
                raise self.connection._closed_error() from None

    def send(self, message: Sendable) -> None:
        """Send ``str`` as text, bytes-like as binary, a ``dict`` as JSON
        text, an iterable of ``str`` (or of bytes) as one fragmented message.
        Raises :class:`~wsfast.ConnectionClosed` once the connection closes."""
        conn = self.connection
        with self._send_lock:
            kind = type(message)
            if kind is str:
                self._write(conn.send_text(message))  # type: ignore[arg-type]  # (dispatched on the message's type)
            elif kind is dict:
                self._write(conn.send_text(json.dumps(message)))
            elif kind is bytes:
                self._write(conn.send_binary(message))  # type: ignore[arg-type]  # (dispatched on the message's type)
            else:
                try:
                    data = memoryview(message)  # type: ignore[arg-type]  # TypeError tells
                except TypeError:
                    if not hasattr(message, "__iter__"):
                        raise TypeError(f"cannot send {kind.__name__}") from None
                    self._send_pieces(cast(Union[Iterable[str], Iterable[bytes]], message))
                else:
                    self._write(conn.send_binary(data))

    def _send_pieces(self, pieces: Union[Iterable[str], Iterable[bytes]]) -> None:
        conn = self.connection
        empty: Union[str, bytes, None] = None
        try:
            for piece in pieces:
                self._write(conn.send_fragment(piece, False))
                if empty is None:
                    empty = "" if type(piece) is str else b""
        except BaseException as exc:
            if empty is not None and not isinstance(exc, (ConnectionClosedOK, ConnectionClosedError)):
                self._write(conn.fail(1011, "error while sending a fragmented message"))
            raise
        if empty is not None:
            self._write(conn.send_fragment(empty, True))

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Send a ping (its pong is not waited for)."""
        with self._send_lock:
            self._write(self.connection.send_ping(data.encode() if isinstance(data, str) else data))

    # -- receiving -------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        conn = self.connection
        events = conn.receive_data(data)
        with self._send_lock:
            out = conn.data_to_send()
            if out:
                try:
                    self.socket.sendall(out)
                except OSError:
                    pass
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                self._events.append(event)  # type: ignore[arg-type]  # (kind is str or bytes)
            elif kind is Ping or kind is Pong or kind is Close or kind is Fragment:
                pass
        if conn.state is State.CLOSED:
            self._shutdown()

    def _lost(self) -> None:
        if self.connection.state is not State.CLOSED:
            self.connection.receive_eof()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._eof:
            return
        self._eof = True
        try:
            self.socket.close()
        except OSError:
            pass

    def recv(self, timeout: Optional[float] = None) -> Union[str, bytes]:
        """The next message (``str`` or ``bytes``), waiting at most
        ``timeout`` seconds (None: no limit; ``TimeoutError`` then). Raises
        :class:`~wsfast.ConnectionClosedOK` after a normal close,
        :class:`~wsfast.ConnectionClosedError` otherwise, once every message
        received before the close was returned."""
        events = self._events
        if events:
            return events.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._recv_lock:
            while not events:
                if self._eof:
                    raise self.connection._closed_error()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no message within {timeout} s")
                    self.socket.settimeout(left)
                else:
                    self.socket.settimeout(None)
                try:
                    data = self.socket.recv(_READ)
                except (socket.timeout, TimeoutError):
                    raise TimeoutError(f"no message within {timeout} s") from None
                except OSError:
                    if self._eof:  # closed by close() in another thread
                        continue
                    data = b""
                if not data:
                    self._lost()
                    continue
                self._feed(data)
            return events.popleft()

    def __iter__(self) -> Iterator[Union[str, bytes]]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- closing ---------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``: send the close frame, read
        (dropping messages) until the server's close or ``close_timeout``,
        then close TCP."""
        conn = self.connection
        if self._eof:
            return
        with self._send_lock:
            try:
                self._write(conn.send_close(code, reason))
            except (ConnectionClosedOK, ConnectionClosedError):
                return
        timeout = self.close_timeout or 0
        deadline = time.monotonic() + timeout
        # Another thread in recv() reads the server's close for us.
        if not self._recv_lock.acquire(timeout=timeout):
            try:
                self.socket.shutdown(socket.SHUT_RDWR)  # wakes that thread
            except OSError:
                pass
            self._lost()
            return
        try:
            while not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.socket.settimeout(left)
                try:
                    data = self.socket.recv(_READ)
                except OSError:
                    break
                if not data:
                    self._lost()
                    break
                self._feed(data)
            self._lost()
        finally:
            self._recv_lock.release()

    @property
    def closed(self) -> bool:
        return self._eof

    @property
    def close_code(self) -> Optional[int]:
        return self.connection.close_code

    @property
    def close_reason(self) -> Optional[str]:
        return self.connection.close_reason

    def __enter__(self) -> "ClientConnection":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<wsfast.sync.ClientConnection {self.connection.state.name}>"


def connect(
    uri: str,
    *,
    subprotocols: Optional[Iterable[str]] = None,
    additional_headers: Optional[HeadersLike] = None,
    origin: Optional[str] = None,
    ssl: Union[_ssl.SSLContext, bool, None] = None,
    server_hostname: Optional[str] = None,
    max_message_size: int = 16 * 2**20,
    open_timeout: Optional[float] = 10.0,
    close_timeout: Optional[float] = 5.0,
    codec: Union[str, ModuleType, None] = None,
    max_fragments: Optional[int] = None,
    user_agent: Optional[str] = USER_AGENT,
    max_redirects: int = 10,
    sock: Optional[socket.socket] = None,
    proxy: Union[str, bool, None] = True,
    proxy_ssl: Optional[_ssl.SSLContext] = None,
    proxy_server_hostname: Optional[str] = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` (``ws://`` or ``wss://``) and
    return a :class:`ClientConnection` (a context manager: closes on exit).
    The arguments are those of :func:`wsfast.connect` of the same names.
    Raises :class:`~wsfast.HandshakeError` if the server refuses,
    :class:`~wsfast.InvalidRedirect`, ``TimeoutError`` past ``open_timeout``,
    ``OSError`` if TCP fails."""
    parse_uri(uri)
    check_max_fragments(max_fragments)
    if proxy is not True and proxy is not None and proxy is not False:
        _check_proxy(check_proxy(proxy), proxy_ssl, proxy_server_hostname)
    offered = list(subprotocols or ())
    headers: List[Tuple[str, str]] = []
    if additional_headers is not None:
        headers.extend(_header_pairs(additional_headers))
    if user_agent and not any(n.lower() == "user-agent" for n, _ in headers):
        headers.append(("User-Agent", user_agent))
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    auth = basic_auth(uri)
    redirects = 0
    while True:
        try:
            return _open(uri, sock if redirects == 0 else None, offered, headers, auth, origin, ssl,
                         server_hostname if redirects == 0 else None, max_message_size, max_fragments,
                         deadline, close_timeout, codec, proxy, proxy_ssl, proxy_server_hostname)
        except HandshakeError as exc:
            if exc.status not in REDIRECT_STATUSES or not max_redirects:
                raise
            locations = [v for n, v in exc.headers if n.lower() == "location"]
            if not locations:
                raise InvalidRedirect(exc.status, f"HTTP {exc.status} redirect without a Location header",
                                      exc.headers) from None
            if redirects >= max_redirects:
                raise InvalidRedirect(exc.status, f"too many redirects (more than {max_redirects})",
                                      exc.headers) from None
            if sock is not None:
                raise InvalidRedirect(exc.status, "cannot follow a redirect on a connection opened "
                                      "with sock=", exc.headers) from None
            target = redirect_target(uri, locations[0])
            try:
                secure = parse_uri(target)[0]
            except ValueError as error:
                raise InvalidRedirect(exc.status, f"invalid redirect: {error}", exc.headers) from None
            if uri.lower().startswith("wss:") and not secure:
                raise InvalidRedirect(exc.status, f"refused redirect from wss:// to ws:// "
                                      f"({redact_uri(target)}): it would drop TLS", exc.headers) from None
            if basic_auth(target) is not None or _origin_of(target) != _origin_of(uri):
                auth = basic_auth(target)
            uri = target
            redirects += 1


def _left(deadline: Optional[float], uri: str) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"opening handshake with {redact_uri(uri)} timed out")
    return left


def _check_proxy(proxy: str, proxy_ssl: Optional[_ssl.SSLContext],
                 proxy_server_hostname: Optional[str]) -> None:
    if (proxy_ssl is not None or proxy_server_hostname is not None) and not is_tls_proxy(proxy):
        raise ValueError(
            f"proxy_ssl and proxy_server_hostname are for an https:// proxy, not {redact_uri(proxy)}"
        )


def _open(uri: str, given: Optional[socket.socket], subprotocols: List[str],
          headers: List[Tuple[str, str]], auth: Optional[str], origin: Optional[str],
          ssl: Union[_ssl.SSLContext, bool, None], server_hostname: Optional[str],
          max_message_size: int, max_fragments: Optional[int], deadline: Optional[float], close_timeout: Optional[float],
          codec: Union[str, ModuleType, None], proxy: Union[str, bool, None],
          proxy_ssl: Optional[_ssl.SSLContext],
          proxy_server_hostname: Optional[str]) -> ClientConnection:
    secure, host, port, resource, host_header = parse_uri(uri)
    if given is not None:
        tcp = given
    else:
        if proxy is True:
            proxy = proxy_from_environment(secure, host, port)
            if proxy is not None:
                _check_proxy(check_proxy(proxy), proxy_ssl, proxy_server_hostname)
        if isinstance(proxy, str) and proxy:
            tcp = open_tunnel_sync(proxy, host, port, timeout=_left(deadline, uri),
                                   ssl=proxy_ssl, server_hostname=proxy_server_hostname)
        else:
            tcp = socket.create_connection((host, port), timeout=_left(deadline, uri))
    sock: Socket = tcp
    try:
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            context = ssl if isinstance(ssl, _ssl.SSLContext) else _ssl.create_default_context()
            tcp.settimeout(_left(deadline, uri))
            sock = wrap_tls(tcp, context, server_hostname or host)
        if auth is not None and not any(n.lower() == "authorization" for n, _ in headers):
            headers = headers + [("Authorization", auth)]
        key = _hs.generate_key()
        request = _hs.build_request(host_header, resource, key, subprotocols, headers, origin)
        sock.settimeout(_left(deadline, uri))
        sock.sendall(request)
        parser = ResponseParser()
        response = None
        while response is None:
            sock.settimeout(_left(deadline, uri))
            try:
                data = sock.recv(_READ)
            except (socket.timeout, TimeoutError):
                raise TimeoutError(f"opening handshake with {redact_uri(uri)} timed out") from None
            if not data:
                raise ConnectionClosedError(1006, "connection lost during the opening handshake")
            response = parser.feed(data)
        subprotocol = _hs.check_response(response, key, subprotocols, False)
        connection = get_connection_class(codec)(Side.CLIENT, max_message_size=max_message_size, codec=codec,
                                                 max_fragments=max_fragments)
        sock.settimeout(None)
        return ClientConnection(sock, connection, response, subprotocol, close_timeout,
                                parser.trailing)
    except BaseException:
        sock.close()
        raise
