"""Proxies for the client: a TCP tunnel to the WebSocket server through an
HTTP proxy (``CONNECT``, RFC 9110 §9.3.6, with basic auth), the same over TLS
to the proxy (an ``https://`` proxy), or a SOCKS5 / SOCKS4 proxy
(``python-socks``: ``pip install wsfast[socks]``). The tunnel is a connected
socket (a TLS transport for an ``https://`` proxy); :func:`wsfast.connect`
runs TLS (for ``wss://``) and the WebSocket handshake over it, through the
same adapter as a direct connection.

Proxy URIs: ``http://[user:pass@]host:port`` (port 80 by default),
``https://[user:pass@]host:port`` (TLS to the proxy, port 443 by default;
``wss://`` through it is TLS inside TLS), ``socks5://`` (the proxy's side
does not resolve names: they are resolved here), ``socks5h://`` (the proxy
resolves them), ``socks4://``, ``socks4a://`` (the proxy resolves them;
SOCKS4 sends the URI's user name as its user id, SOCKS5 does username /
password auth, RFC 1929).

By default (``proxy=True``) the proxy comes from the environment as in
``websockets`` and ``urllib``: ``https_proxy`` for ``wss://``, ``http_proxy``
for ``ws://``, then ``all_proxy`` (upper-case names too), unless ``no_proxy``
lists the host.
"""

import asyncio
import base64
import socket
import ssl as _ssl
import threading
import urllib.request
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, Literal, Optional, Tuple, TypeVar, Union, cast, overload,

)

from urllib.parse import SplitResult, unquote, urlsplit

from .exceptions import ProxyError

if TYPE_CHECKING:
    from typing_extensions import Buffer  # (collections.abc.Buffer from Python 3.12)


__all__ = [
    "proxy_from_environment",
    "open_tunnel",
    "open_tls_tunnel",
    "open_tunnel_sync",
    "wrap_tls",
    "is_tls_proxy",
    "ProxyError",
]

_SCHEMES = ("http", "https", "socks5", "socks5h", "socks4", "socks4a")
_MAX_HEAD = 65536
_T = TypeVar("_T")


def proxy_from_environment(secure: bool, host: str, port: int) -> Optional[str]:
    """The proxy URI for a connection to ``host:port`` from the environment
    variables, or None."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return None
    # proxy_bypass_environment: undocumented, so absent from typeshed
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if bypass(f"{host}:{port}", proxies) or bypass(host, proxies):
        return None
    for key in ("https", "all") if secure else ("http", "all"):
        if proxies.get(key):
            return proxies[key]
    return None


def check_proxy(uri: str) -> str:
    """Validate a proxy URI (raises ``ValueError`` naming what is wrong)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported proxy scheme {parts.scheme!r} (http://, https://, socks5://, "
            "socks5h://, socks4://, socks4a://)"
        )
    if not parts.hostname:
        raise ValueError(f"no host in the proxy URI {uri!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"invalid port in the proxy URI {uri!r}") from None
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"a proxy URI has no path or query: {uri!r}")
    if scheme.startswith("socks"):
        try:
            import python_socks  # noqa: F401
        except ImportError:
            raise ValueError(
                "SOCKS proxies need python-socks: pip install 'wsfast[socks]'"
            ) from None
    return uri


def is_tls_proxy(uri: str) -> bool:
    """Whether ``uri`` names an ``https://`` proxy (TLS to the proxy)."""
    return urlsplit(uri).scheme.lower() == "https"


def _credentials(parts: SplitResult) -> Tuple[Optional[str], Optional[str]]:
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def _split(proxy: str) -> Tuple[SplitResult, str, str]:
    """A proxy URI, checked: its parts, lower-case scheme and host."""
    parts = urlsplit(check_proxy(proxy))
    assert parts.hostname is not None  # check_proxy says so
    return parts, parts.scheme.lower(), parts.hostname


async def open_tunnel(proxy: str, host: str, port: int) -> socket.socket:
    """A connected, non-blocking socket to ``host:port`` through ``proxy``
    (a URI). Raises :class:`~wsfast.ProxyError` when the proxy refuses
    (``.status``: its HTTP status; None for SOCKS), ``OSError`` when it
    cannot be reached."""
    parts, scheme, proxy_host = _split(proxy)
    user, password = _credentials(parts)
    if scheme == "https":
        raise ValueError("an https:// proxy is a TLS transport: open_tls_tunnel()")
    if scheme == "http":
        return await _http_connect(proxy_host, parts.port or 80, user, password, host, port)
    return await _socks_connect(scheme, proxy_host, parts.port or 1080, user, password, host, port)


class _Connecting(asyncio.Protocol):
    """The protocol of an https:// proxy's transport while ``CONNECT`` is
    answered (and, for wss://, the inner TLS handshake runs: it receives
    nothing then, as the server speaks only after the client)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head = b""
        self.answered: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.answered.done():
            # Bytes before the client spoke (TLS or HTTP) would be lost to
            # the handshake: fail the tunnel (the caller sees it closed).
            self.transport.abort()
            return
        self.head += data
        if b"\r\n\r\n" in self.head:
            try:
                _check_connect_answer(self.head)
            except ProxyError as exc:
                self.answered.set_exception(exc)
            else:
                self.answered.set_result(None)
        elif len(self.head) > _MAX_HEAD:
            self.answered.set_exception(ProxyError(None, "the proxy's answer to CONNECT is too long"))

    def eof_received(self) -> None:
        self.connection_lost(None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.answered.done():
            self.answered.set_exception(
                ProxyError(None, "the proxy closed the connection during CONNECT")
            )


async def open_tls_tunnel(proxy: str, host: str, port: int, ssl: Optional[_ssl.SSLContext] = None,
                          server_hostname: Optional[str] = None) -> asyncio.Transport:
    """A tunnel to ``host:port`` through an ``https://`` proxy: TLS to the
    proxy (``ssl``: an ``ssl.SSLContext``, a default verifying one if None;
    ``server_hostname``: the name to verify, the proxy's host by default),
    then ``CONNECT`` over it. Returns the TLS transport, whose protocol is a
    placeholder until the caller sets its own (``transport.set_protocol(p)``,
    then ``p.connection_made(transport)``), or wraps it in TLS again for
    ``wss://`` (``loop.start_tls``). Raises :class:`~wsfast.ProxyError` when
    the proxy refuses, ``ssl.SSLError`` when TLS to it fails, ``OSError``
    when it cannot be reached."""
    loop = asyncio.get_running_loop()
    parts, _, proxy_host = _split(proxy)
    user, password = _credentials(parts)
    if ssl is None:
        ssl = _ssl.create_default_context()
    connecting = _Connecting(_connect_request(user, password, host, port))
    transport, _ = await loop.create_connection(
        lambda: connecting,
        proxy_host,
        parts.port or 443,
        ssl=ssl,
        server_hostname=server_hostname or proxy_host,
    )
    try:
        await connecting.answered
    except BaseException:
        transport.abort()
        raise
    return transport


def open_tunnel_sync(proxy: str, host: str, port: int, timeout: Optional[float] = None,
                     ssl: Optional[_ssl.SSLContext] = None,
                     server_hostname: Optional[str] = None) -> socket.socket:
    """:func:`open_tunnel` for blocking code (``wsfast.sync``): a connected
    blocking socket to ``host:port`` through ``proxy`` (an ``ssl.SSLSocket``
    for an ``https://`` proxy: ``ssl`` and ``server_hostname`` as for
    :func:`open_tls_tunnel`; :func:`wrap_tls` runs ``wss://`` inside it)."""
    parts, scheme, proxy_host = _split(proxy)
    user, password = _credentials(parts)
    if scheme in ("http", "https"):
        default_port = 443 if scheme == "https" else 80
        sock = socket.create_connection((proxy_host, parts.port or default_port), timeout=timeout)
        try:
            if scheme == "https":
                context = ssl if ssl is not None else _ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=server_hostname or proxy_host)
            sock.sendall(_connect_request(user, password, host, port))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ProxyError(None, "the proxy closed the connection during CONNECT")
                head += chunk
                if len(head) > _MAX_HEAD:
                    raise ProxyError(None, "the proxy's answer to CONNECT is too long")
            _check_connect_answer(head)
            return sock
        except BaseException:
            sock.close()
            raise
    from python_socks import ProxyError as SocksError
    from python_socks import ProxyType
    from python_socks.sync import Proxy

    kind = ProxyType.SOCKS5 if scheme.startswith("socks5") else ProxyType.SOCKS4
    tunnel = Proxy(kind, proxy_host, parts.port or 1080, username=user, password=password,
                   rdns=scheme in ("socks5h", "socks4a"))
    try:
        return tunnel.connect(host, port, timeout=timeout)
    except SocksError as exc:
        raise ProxyError(None, f"the SOCKS proxy refused: {exc}") from None


def wrap_tls(sock: socket.socket, context: _ssl.SSLContext,
             server_hostname: Optional[str]) -> Union[_ssl.SSLSocket, "TLSInTLS"]:
    """TLS to the server over ``sock`` (blocking): ``context.wrap_socket``,
    or, over the ``ssl.SSLSocket`` of an ``https://`` proxy, a socket-like
    :class:`TLSInTLS` (an SSLSocket cannot wrap another)."""
    if isinstance(sock, _ssl.SSLSocket):
        return TLSInTLS(sock, context, server_hostname)
    return context.wrap_socket(sock, server_hostname=server_hostname)


class TLSInTLS:
    """A TLS connection inside the TLS connection ``sock`` (an
    ``ssl.SSLSocket``), through memory BIOs; what ``wsfast.sync`` needs of a
    socket: ``sendall``, ``recv``, ``settimeout``, ``shutdown``, ``close``.
    The handshake runs here, under ``sock``'s timeout. One thread may
    ``recv()`` while another ``sendall()``s: the TLS object and writes to
    ``sock`` are serialized by a lock, reading from ``sock`` is not."""

    def __init__(self, sock: _ssl.SSLSocket, context: _ssl.SSLContext,
                 server_hostname: Optional[str]) -> None:
        self._sock = sock
        self._incoming = _ssl.MemoryBIO()
        self._outgoing = _ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._lock = threading.Lock()
        self._call(self._tls.do_handshake)

    def _call(self, operation: Callable[..., _T], *args: Any) -> _T:
        while True:
            with self._lock:
                try:
                    return operation(*args)
                except _ssl.SSLWantReadError:
                    pass
                finally:
                    out = self._outgoing.read()
                    if out:
                        self._sock.sendall(out)
            data = self._sock.recv(65536)
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()

    def sendall(self, data: "Buffer") -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self._call(self._tls.write, view):]

    def recv(self, size: int) -> bytes:
        try:
            return self._call(self._tls.read, size)
        except (_ssl.SSLZeroReturnError, _ssl.SSLEOFError):
            return b""  # the server's close_notify, or TCP closed

    def settimeout(self, timeout: Optional[float]) -> None:
        self._sock.settimeout(timeout)

    def setsockopt(self, level: int, option: int, value: Union[int, "Buffer"]) -> None:
        self._sock.setsockopt(level, option, value)

    @overload
    def getpeercert(self, binary_form: Literal[False] = False) -> Optional[Dict[str, Any]]: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> Optional[bytes]: ...

    def getpeercert(self, binary_form: bool = False) -> Union[Dict[str, Any], bytes, None]:
        return self._tls.getpeercert(binary_form)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()


def _connect_request(user: Optional[str], password: Optional[str], host: str, port: int) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _check_connect_answer(head: bytes) -> None:
    head, _, rest = head.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or not fields[1].isdigit():
        raise ProxyError(None, f"invalid answer from the proxy: {status_line[:100]!r}")
    status = int(fields[1])
    if not 200 <= status < 300:
        reason = fields[2] if len(fields) > 2 else ""
        raise ProxyError(status, f"the proxy refused CONNECT: HTTP {status} {reason}".rstrip())
    if rest:
        # Nothing may come before the client speaks (TLS or HTTP): bytes
        # here would be lost to the handshake.
        raise ProxyError(status, "the proxy sent data after its answer to CONNECT")


async def _open_socket(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: Optional[OSError] = None
    for family, type_, proto, _, address in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            return sock
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
    raise OSError(error.errno if error else None, f"cannot connect to the proxy {host}:{port}: {error}")


async def _http_connect(proxy_host: str, proxy_port: int, user: Optional[str],
                        password: Optional[str], host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = await _open_socket(proxy_host, proxy_port)
    try:
        await loop.sock_sendall(sock, _connect_request(user, password, host, port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ProxyError(None, "the proxy closed the connection during CONNECT")
            head += chunk
            if len(head) > _MAX_HEAD:
                raise ProxyError(None, "the proxy's answer to CONNECT is too long")
        _check_connect_answer(head)
        return sock
    except BaseException:
        sock.close()
        raise


async def _socks_connect(scheme: str, proxy_host: str, proxy_port: int, user: Optional[str],
                         password: Optional[str], host: str, port: int) -> socket.socket:

    from python_socks import ProxyError as SocksError
    from python_socks import ProxyType
    from python_socks.async_.asyncio import Proxy

    kind = ProxyType.SOCKS5 if scheme.startswith("socks5") else ProxyType.SOCKS4
    proxy = Proxy(
        kind,
        proxy_host,
        proxy_port,
        username=user,
        password=password,
        rdns=scheme in ("socks5h", "socks4a"),
        loop=asyncio.get_running_loop(),
    )
    try:
        # The caller's open_timeout bounds this; python-socks wants one too.
        sock = await proxy.connect(host, port, timeout=3600)
    except SocksError as exc:
        raise ProxyError(None, f"the SOCKS proxy refused: {exc}") from None
    sock.setblocking(False)
    return sock
