"""The Tornado-style server API: :class:`Application`, :class:`RequestHandler`,
:class:`WebSocketHandler`, :class:`StaticFileHandler`, :func:`run`.

::

    class EchoWebSocket(wsfast.WebSocketHandler):
        def open(self):
            print("opened")

        def on_message(self, message):
            self.write_message("You said: " + message)

        def on_close(self):
            print("closed", self.close_code)

    app = wsfast.Application([(r"/", MainPage), (r"/websocket", EchoWebSocket)])
    wsfast.run(app, host="127.0.0.1", port=8888)   # or: server = await app.listen(8888)

Plain HTTP and WebSocket share the port. Routes are ``(regex, HandlerClass)``
or ``(regex, HandlerClass, kwargs)``; the regex must match the whole path,
its groups (percent-decoded) are passed to ``get(*args)`` / ``open(*args)``
(named groups as keyword arguments), and ``kwargs`` to ``initialize()``.

**Refusing a WebSocket upgrade** (authentication): override
``prepare()`` (it may be ``async def``) and raise :class:`HTTPError`::

    class Chat(wsfast.WebSocketHandler):
        async def prepare(self):
            if not await valid_token(self.get_argument("token", None)):
                raise wsfast.HTTPError(401, headers={"WWW-Authenticate": "Bearer"})

``prepare()`` runs before the handshake is checked; the client gets the
status and the connection is closed. ``check_origin(origin)`` (403) and
``select_subprotocol(subprotocols)`` run after it.

**Settings** (``Application(..., **settings)``; a handler class can override
each ``websocket_*`` one with a class attribute of the name without the prefix,
e.g. ``max_message_size = 1024``): ``websocket_max_message_size`` (16 MiB),
``websocket_ping_interval`` (20 s: a keepalive ping that often; None or 0
turns it off, as 0 does in Tornado), ``websocket_ping_timeout`` (20 s without
the pong, then close 1011; None or 0: no timeout), ``websocket_close_timeout``
(5 s), ``websocket_max_queue`` (32 messages waiting for an ``async def
on_message`` before reading pauses), ``websocket_write_buffer_high`` /
``websocket_write_buffer_low`` (256 KiB / 64 KiB), ``websocket_max_write_buffer``
(the hard cap on one connection's unsent bytes, None: 4 × the high mark;
past it the peer is a slow consumer, closed with 1008 and counted in
``app.stats["slow_consumers"]``; see :class:`~wsfast.protocol.Options`),
``websocket_max_fragments`` (the most frames one message may come in, else
1009; None: ``max(1024, max_message_size // 64)``); per connection:
``handshake_timeout`` (10 s for a request head), ``max_header_size``
(64 KiB, else 431), ``max_body_size`` (1 MiB, else 413); ``codec``
("cython", "python" or None for the fastest available); ``static_path`` /
``static_url_prefix`` ("/static/") to serve files; ``websocket_close_wait``
(bounded wait of a graceful shutdown, default: close timeout + 1 s);
``default_handler_class`` / ``default_handler_args`` (the handler of paths
no route matches; default: 404). Security (docs/security.md):
``trusted_proxies`` (peers whose ``Forwarded``/``X-Forwarded-For``/``X-Real-IP``
give ``request.remote_ip``), ``proxy_protocol`` (every connection starts with
a PROXY protocol v1/v2 header, e.g. HAProxy's ``send-proxy``),
``allowed_hosts`` (host names a request's ``Host`` must name, else 400;
default any), ``trusted_origins`` (origins the default ``check_origin``
accepts besides the same origin), ``max_connections`` (then 503; default
from the fd limit). The list is ``wsfast.web.SETTINGS``: any other name is
an error, and the Tornado settings wsfast.web does not implement
(``xsrf_cookies``, ``cookie_secret``, ``template_path``, ...) say so at
``Application(...)``. docs/tornado-differences.md lists every difference.

**Compression** (permessage-deflate, RFC 7692) is off unless asked for: the
setting ``websocket_compression`` (or ``compression``) turns it on for every
handler: ``"deflate"``/True (the defaults), a dict of
:class:`~wsfast.deflate.DeflateOptions` keywords (Tornado's
``compression_level``/``mem_level`` too) or a ``DeflateOptions``; a handler
overrides it with ``get_compression_options()`` (Tornado's hook: None turns
it off, ``{}`` on with the defaults). Clients that offer no compression, and
handlers without it, keep the uncompressed fast path. ``write_message(msg,
compress=False)`` sends one message uncompressed; messages under the
``threshold`` (128 bytes) are always sent so. See docs/deflate.md.
"""

import asyncio
import collections
import email.utils
import errno
import inspect
import json
import logging
import mimetypes
import os
import re
import signal
import socket
import stat
import sys
from http.cookies import Morsel, SimpleCookie
from ssl import SSLContext
from types import TracebackType
from typing import (
    TYPE_CHECKING, Any, Awaitable, Callable, Counter, Dict, FrozenSet, Generator, Iterable, List,
    Optional, Pattern, Sequence, Set, Tuple, Type, TypeVar, Union, cast, overload,
)
from urllib.parse import parse_qs, unquote, urlsplit

from . import handshake as _hs
from .connection import Side
from .deflate import Compression
from .deflate import compression_options as _compression_options
from .exceptions import ConnectionClosed, HandshakeError
from .http import (Headers, HeadersLike, Request, TrustedProxies, _header_pairs,

                   build_response, client_address, parse_proxy_header, status_reason)
from .protocol import Options, WebSocketProtocol

if TYPE_CHECKING:
    from .broadcast import Message
    from .handshake import ExtensionFactory

_T = TypeVar("_T")

__all__ = [
    "Application",
    "HTTPError",
    "RequestHandler",
    "WebSocketHandler",
    "StaticFileHandler",
    "RedirectHandler",
    "Server",
    "WebSocketClosedError",
    "bind_sockets",
    "run",
]

log = logging.getLogger("wsfast")
access_log = logging.getLogger("wsfast.access")

#: Tornado's name for writing to a closed WebSocket.
WebSocketClosedError = ConnectionClosed

_SERVER_HEADER = "wsfast"


class HTTPError(Exception):
    """Raise in a handler (``prepare()``, ``get()``, ...) to answer with
    ``status_code``. ``log_message`` goes to the log only; ``reason`` replaces
    the standard phrase; ``headers`` (dict or pairs) are added to the answer,
    e.g. ``{"WWW-Authenticate": "Bearer"}`` with a 401."""

    def __init__(self, status_code: int = 500, log_message: Optional[str] = None, *args: Any,
                 reason: Optional[str] = None, headers: Optional[HeadersLike] = None) -> None:
        self.status_code = status_code
        self.log_message = log_message
        self.args = args
        self.reason = reason
        self.headers: List[Tuple[str, str]] = (
            list(_header_pairs(headers)) if headers is not None else [])

    def __str__(self) -> str:
        message = f"HTTP {self.status_code}: {self.reason or status_reason(self.status_code)}"
        if self.log_message:
            detail = self.log_message % self.args if self.args else self.log_message
            message += f" ({detail})"
        return message


def _http_date(timestamp: Optional[float] = None) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f]")


def _clean(values: Iterable[str], strip: bool) -> List[str]:
    values = [_CONTROL_CHARS.sub(" ", value) for value in values]
    return [value.strip() for value in values] if strip else values


def _last_value(values: List[str], name: str, default: Any) -> Any:
    """The last of an argument's ``values``; ``default`` if there is none,
    and ``HTTPError(400)`` if no default was given either."""
    if values:
        return values[-1]
    if default is RequestHandler._ARG_DEFAULT:
        raise HTTPError(400, f"missing argument {name}")
    return default


def _zero_off(seconds: Optional[float]) -> Optional[float]:
    """Tornado's meaning of 0 for ``ping_interval`` and ``ping_timeout``:
    off (None), not "at once"."""
    return None if seconds == 0 else seconds


def _split_host(host: str) -> str:
    """The name in a ``Host`` header value, without port, lower-cased and
    without a trailing dot (``"[::1]:8888"`` → ``"::1"``); "" if none."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    else:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and ":" not in name:
            host = name
    return host.rstrip(".")


def _allowed_hosts(value: Optional[Iterable[str]]) -> Optional[Tuple[str, ...]]:
    """The ``allowed_hosts`` setting, checked: None (any host) or a tuple
    of names."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"allowed_hosts must be a list of host names, not the string {value!r} "
                        f"(write allowed_hosts=[{value!r}])")
    hosts = []
    for name in value:
        if not isinstance(name, str) or not name:
            raise TypeError(f"allowed_hosts: {name!r} is not a host name")
        name = name.strip().lower()
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        hosts.append(name.rstrip(".") if name != "." else name)
    if "*" in hosts:
        return None
    return tuple(hosts)


def host_allowed(host: str, allowed: Optional[Iterable[str]]) -> bool:
    """Whether the ``Host`` header value ``host`` names one of ``allowed``
    (``"example.com"``; ``".example.com"`` for it and its subdomains;
    ``"*"`` for any; ``allowed=None`` allows every host)."""
    if allowed is None:
        return True
    name = _split_host(host)
    if not name:
        return False
    for pattern in allowed:
        if pattern.startswith("."):
            if name == pattern[1:] or name.endswith(pattern):
                return True
        elif name == pattern:
            return True
    return False


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_key(origin: str) -> Optional[str]:
    """``scheme://host[:port]`` of an origin, lower-cased, default port
    dropped; None if it cannot be parsed (``http://[``) or is ``null``."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not parts.scheme or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{port}"
    return f"{parts.scheme}://{host}"


def _trusted_origins(value: Optional[Iterable[str]]) -> FrozenSet[str]:
    if value is None:
        return frozenset()
    if isinstance(value, (str, bytes)):
        raise TypeError(f"trusted_origins must be a list of origins, not the string {value!r} "
                        f"(write trusted_origins=[{value!r}])")
    keys: Set[str] = set()
    for origin in value:
        if origin == "*":
            keys.add("*")
            continue
        key = _origin_key(origin) if isinstance(origin, str) else None
        if key is None:
            raise ValueError(f"trusted_origins: {origin!r} is not an origin "
                             "(scheme://host[:port], e.g. 'https://app.example.com')")
        keys.add(key)
    return frozenset(keys)


class RequestHandler:
    """Base class of plain HTTP handlers: define ``get``/``post``/... (plain
    or ``async def``); build the answer with ``set_status``, ``set_header``,
    ``write``; it is sent when the method returns (or at ``finish()``).

    ``self.request`` is the :class:`~wsfast.http.Request` (``method``,
    ``path``, ``query_arguments``, ``headers``, ``body``, ``remote_ip``).
    """

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")
    _close_connection = False  # close after the answer even if keep-alive is allowed

    def __init__(self, application: "Application", request: Request, **kwargs: Any) -> None:
        self.application = application
        self.request = request
        self._status_code = 200
        self._reason: Optional[str] = None
        self._headers = Headers()
        self._write_buffer: List[bytes] = []
        self._finished = False
        self.path_args: Tuple[str, ...] = ()
        self.path_kwargs: Dict[str, str] = {}
        self.initialize(**kwargs)

    def _initialize(self, **kwargs: Any) -> None:
        """Hook: receives the route's kwargs dict."""

    #: Hook: receives the route's kwargs dict (a subclass defines it with
    #: the parameters it takes, e.g. ``def initialize(self, db):``).
    initialize: Callable[..., Any] = _initialize

    @property
    def settings(self) -> Dict[str, Any]:
        return self.application.settings

    def prepare(self) -> Optional[Awaitable[None]]:
        """Hook called before the method (may be ``async def``). Raise
        :class:`HTTPError` or call ``finish()``/``send_error()`` to answer
        without calling the method."""
        return None

    def on_finish(self) -> None:
        """Hook called after the answer was sent."""

    # The methods (plain or ``async def``; path arguments are str, or None
    # for a group that did not match); not defined → 405.
    def _unsupported(self, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        raise HTTPError(405)

    get = post = put = delete = patch = options = _unsupported

    def head(self, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        # HEAD is GET without the body (RFC 9110 §9.3.2).
        if type(self).get is RequestHandler.get:
            raise HTTPError(405)
        return self.get(*args, **kwargs)

    # -- the answer -------------------------------------------------------------

    def set_status(self, status_code: int, reason: Optional[str] = None) -> None:
        self._status_code = status_code
        self._reason = reason

    def get_status(self) -> int:
        return self._status_code

    def set_header(self, name: str, value: "HeaderValue") -> None:
        self._headers[name] = _header_value(value)

    def add_header(self, name: str, value: "HeaderValue") -> None:
        self._headers.add(name, _header_value(value))

    def clear_header(self, name: str) -> None:
        self._headers.remove(name)

    def clear(self) -> None:
        """Forget the status, headers and body written so far."""
        self._status_code = 200
        self._reason = None
        self._headers = Headers()
        self._write_buffer = []

    def write(self, chunk: Union[str, bytes, bytearray, memoryview, Dict[str, Any], List[Any]]) -> None:
        """Add ``chunk`` to the body: str (UTF-8), bytes, or dict/list (sent
        as JSON with ``Content-Type: application/json``)."""
        if self._finished:
            raise RuntimeError("cannot write() after finish()")
        if isinstance(chunk, (dict, list)):
            chunk = json.dumps(chunk)
            if "Content-Type" not in self._headers:
                self.set_header("Content-Type", "application/json; charset=UTF-8")
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        elif not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(  # (the annotation is not a check)
                f"write() takes str, bytes or dict, not {type(chunk).__name__}")
        self._write_buffer.append(bytes(chunk))

    def redirect(self, url: str, permanent: bool = False, status: Optional[int] = None) -> None:
        if status is None:
            status = 301 if permanent else 302
        self.set_status(status)
        self.set_header("Location", url)
        self.finish()

    def set_cookie(self, name: str, value: str, path: str = "/", max_age: Optional[int] = None,
                   httponly: bool = False, secure: bool = False,
                   samesite: Optional[str] = None) -> None:
        cookie: SimpleCookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        morsel["path"] = path
        if max_age is not None:
            morsel["max-age"] = str(max_age)
        if httponly:
            morsel["httponly"] = True
        if secure:
            morsel["secure"] = True
        if samesite:
            morsel["samesite"] = samesite
        self.add_header("Set-Cookie", morsel.OutputString())

    def finish(self, chunk: Union[str, bytes, bytearray, memoryview, Dict[str, Any], List[Any],
                                  None] = None) -> None:
        """Send the answer (once). Called for you when the method returns."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        if chunk is not None:
            self.write(chunk)
        self._finished = True
        request = self.request
        status = self._status_code
        keep_alive = request.keep_alive and not request.upgrade and not self._close_connection
        headers = self._headers
        if "Content-Type" not in headers and status not in (204, 304) and status >= 200:
            headers.add("Content-Type", "text/html; charset=UTF-8")
        if "Date" not in headers:
            headers.add("Date", _http_date())
        if "Server" not in headers:
            headers.add("Server", _SERVER_HEADER)
        if not keep_alive:
            headers["Connection"] = "close"
        elif request.version == "1.0":
            headers["Connection"] = "keep-alive"
        body = b"".join(self._write_buffer)
        self._write_buffer = []
        data = build_response(
            status, headers, body, self._reason, head=request.method == "HEAD"
        )
        access_log.info("%d %s %s (%s)", status, request.method, request.log_uri, request.remote_ip)
        assert request.connection is not None  # the server set it
        request.connection.finish_http(data, keep_alive)
        try:
            self.on_finish()
        except Exception:
            log.exception("error in on_finish of %r", self)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Answer with an error page (``write_error``) instead of what was written."""
        if self._finished:
            return
        self.clear()
        exc = kwargs.get("exc")
        # HTTPError(reason=...) names the status line; a HandshakeError's
        # reason is the detail, which goes in the body (write_error), and
        # the status line keeps the standard phrase.
        reason = None if isinstance(exc, HandshakeError) else getattr(exc, "reason", None)
        self.set_status(status_code, reason)
        for name, value in getattr(exc, "headers", ()) or ():
            self.add_header(name, value)
        try:
            self.write_error(status_code, **kwargs)
        except Exception:
            log.exception("error in write_error")
        if not self._finished:
            self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Hook: write the body of an error answer (plain text by default).
        After an exception, ``kwargs`` has ``exc_info`` (the ``(type, value,
        traceback)`` triple, as Tornado) and ``exc`` (the exception)."""
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        reason = self._reason or status_reason(status_code)
        text = f"{status_code} {reason}\n"
        exc = kwargs.get("exc")
        if isinstance(exc, HandshakeError):
            text += exc.reason + "\n"  # what was wrong with the upgrade request
        self.write(text)

    # -- arguments ----------------------------------------------------------------

    _ARG_DEFAULT: Any = object()

    # As Tornado: values are stripped of surrounding whitespace unless
    # strip=False, and control characters (but tab, newline, CR...) become
    # spaces either way. The ``get_*_argument`` methods return a str, or
    # their ``default`` when given (else HTTPError(400)) if there is none.
    def get_query_arguments(self, name: str, strip: bool = True) -> List[str]:
        return _clean(self.request.query_arguments.get(name, ()), strip)

    @overload
    def get_query_argument(self, name: str, *, strip: bool = True) -> str: ...
    @overload
    def get_query_argument(self, name: str, default: _T, strip: bool = True) -> Union[str, _T]: ...

    def get_query_argument(self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True) -> Any:
        return _last_value(self.get_query_arguments(name, strip), name, default)

    @property
    def body_arguments(self) -> Dict[str, List[str]]:
        cache: Optional[Dict[str, List[str]]] = getattr(self, "_body_arguments", None)
        if cache is None:
            cache = {}
            ctype = self.request.headers.get("Content-Type", "")
            if ctype.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
                cache = parse_qs(self.request.body.decode("latin-1"), keep_blank_values=True)
            self._body_arguments = cache
        return cache

    def get_body_arguments(self, name: str, strip: bool = True) -> List[str]:
        return _clean(self.body_arguments.get(name, ()), strip)

    @overload
    def get_body_argument(self, name: str, *, strip: bool = True) -> str: ...
    @overload
    def get_body_argument(self, name: str, default: _T, strip: bool = True) -> Union[str, _T]: ...

    def get_body_argument(self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True) -> Any:
        return _last_value(self.get_body_arguments(name, strip), name, default)

    def get_arguments(self, name: str, strip: bool = True) -> List[str]:
        """Query and (form) body values of ``name``, stripped unless ``strip=False``."""
        return self.get_query_arguments(name, strip) + self.get_body_arguments(name, strip)

    @overload
    def get_argument(self, name: str, *, strip: bool = True) -> str: ...
    @overload
    def get_argument(self, name: str, default: _T, strip: bool = True) -> Union[str, _T]: ...

    def get_argument(self, name: str, default: Any = _ARG_DEFAULT, strip: bool = True) -> Any:
        """The last value of ``name`` in the query or form body (stripped of
        surrounding whitespace unless ``strip=False``, as in Tornado); raises
        ``HTTPError(400)`` if absent and no ``default`` is given."""
        return _last_value(self.get_arguments(name, strip), name, default)

    @property
    def cookies(self) -> "SimpleCookie":
        cache: Optional[SimpleCookie] = getattr(self, "_cookies", None)
        if cache is None:
            cache = SimpleCookie()
            for value in self.request.headers.get_all("Cookie"):
                try:
                    cache.load(value)
                except Exception:
                    pass
            self._cookies = cache
        return cache

    @overload
    def get_cookie(self, name: str) -> Optional[str]: ...
    @overload
    def get_cookie(self, name: str, default: _T) -> Union[str, _T]: ...

    def get_cookie(self, name: str, default: Any = None) -> Any:
        morsel: "Optional[Morsel[str]]" = self.cookies.get(name)
        return morsel.value if morsel is not None else default

    # -- running ----------------------------------------------------------------------

    async def _execute(self, path_args: Tuple[str, ...],
                       path_kwargs: Dict[str, str]) -> None:
        self.path_args = path_args
        self.path_kwargs = path_kwargs
        try:
            if self.request.method not in self.SUPPORTED_METHODS:
                raise HTTPError(405)
            result = self.prepare()
            if result is not None and inspect.isawaitable(result):
                await result
            if self._finished:
                return
            method: Callable[..., Optional[Awaitable[None]]] = getattr(
                self, self.request.method.lower())
            result = method(*path_args, **path_kwargs)
            if result is not None and inspect.isawaitable(result):
                await result
            if not self._finished:
                self.finish()
        except Exception as exc:
            self._handle_exception(exc)

    def _handle_exception(self, exc: Exception) -> None:
        if isinstance(exc, HTTPError):
            if exc.log_message:
                log.warning("%s %s: %s", self.request.method, self.request.log_uri, exc)
            status = exc.status_code
        elif isinstance(exc, HandshakeError):
            status = exc.status
        else:
            log.error("uncaught exception in %r", self, exc_info=exc)
            status = 500
        if self._finished:
            return
        # exc_info as Tornado passes it to write_error(); exc for short.
        self.send_error(status, exc=exc, exc_info=(type(exc), exc, exc.__traceback__))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.method} {self.request.log_uri}>"


#: What ``set_header``/``add_header`` take (bytes as latin-1; anything else by ``str()``).
HeaderValue = Union[str, bytes, int, float]


def _header_value(value: HeaderValue) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


class ErrorHandler(RequestHandler):
    """Answers every request with ``status_code`` (404 for unknown paths)."""

    def initialize(self, status_code: int = 404) -> None:
        self._error_status = status_code

    def prepare(self) -> None:
        raise HTTPError(self._error_status)


class RedirectHandler(RequestHandler):
    """Redirects to ``url`` (``{0}``-style groups allowed)."""

    def initialize(self, url: str, permanent: bool = True) -> None:
        self._url = url
        self._permanent = permanent

    def get(self, *args: Any, **kwargs: Any) -> None:
        self.redirect(self._url.format(*args, **kwargs), permanent=self._permanent)


class StaticFileHandler(RequestHandler):
    """Serves files under ``path``: ``(r"/static/(.*)", StaticFileHandler,
    {"path": "/var/www"})``. Paths that leave the directory (``..``, symlinks
    out of it) get 403; missing files 404; directories ``default_filename``
    (e.g. "index.html") or 403. Answers conditional requests with 304."""

    def initialize(self, path: Union[str, "os.PathLike[str]"],
                   default_filename: Optional[str] = None) -> None:
        self.root = os.path.realpath(os.path.abspath(path))
        self.default_filename = default_filename

    def get(self, path: str = "", include_body: bool = True) -> None:
        if "\x00" in path:
            raise HTTPError(400)
        root = self.root
        absolute = os.path.realpath(os.path.join(root, path))
        if absolute != root and not absolute.startswith(root + os.sep):
            raise HTTPError(403, "%s is not in the static directory", path)
        if os.path.isdir(absolute):
            if self.default_filename is None:
                raise HTTPError(403, "%s is a directory", path)
            if path and not self.request.path.endswith("/"):
                self.redirect(self.request.path + "/", permanent=True)
                return
            absolute = os.path.join(absolute, self.default_filename)
        if not os.path.isfile(absolute):
            raise HTTPError(404)
        stat = os.stat(absolute)
        modified = int(stat.st_mtime)
        self.set_header("Last-Modified", _http_date(modified))
        since = self.request.headers.get("If-Modified-Since")
        if since:
            try:
                parsed = email.utils.parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                parsed = None
            if parsed is not None and parsed >= modified:
                self.set_status(304)
                return
        content_type, encoding = mimetypes.guess_type(absolute)
        if encoding == "gzip":
            content_type = "application/gzip"
        elif encoding is not None:
            content_type = "application/octet-stream"
        if content_type is None:
            content_type = "application/octet-stream"
        elif content_type.startswith("text/") or content_type in (
            "application/javascript",
            "application/json",
        ):
            content_type += "; charset=UTF-8"
        self.set_header("Content-Type", content_type)
        with open(absolute, "rb") as f:
            self.write(f.read())

    def head(self, path: str = "") -> None:
        return self.get(path, include_body=False)


class _Done:
    """An awaitable that is already done (``await super().get()``)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return None
        yield  # a generator: ``await`` works


_DONE = _Done()


class WebSocketHandler(RequestHandler):
    """Base class of WebSocket handlers (see the module docstring).

    Override ``open(*path_args)``, ``on_message(message)`` (``str`` for text,
    ``bytes`` for binary; may be ``async def``: messages are still handled one
    at a time, in order), ``on_close()``, and optionally ``on_ping(data)``,
    ``on_pong(data)``, ``select_subprotocol(subprotocols)``,
    ``check_origin(origin)`` and ``prepare()``.
    """

    # Per-handler limits: class attributes override the application settings.
    max_message_size: Optional[int] = None
    ping_interval: Optional[float] = None
    ping_timeout: Optional[float] = None
    close_timeout: Optional[float] = None
    max_queue: Optional[int] = None
    write_buffer_high: Optional[int] = None
    write_buffer_low: Optional[int] = None
    max_write_buffer: Optional[int] = None
    max_fragments: Optional[int] = None

    def __init__(self, application: "Application", request: Request, **kwargs: Any) -> None:
        self.ws_connection: Optional[WebSocketProtocol] = None
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self.selected_subprotocol: Optional[str] = None
        super().__init__(application, request, **kwargs)

    # -- hooks -------------------------------------------------------------------

    def open(self, *args: Any, **kwargs: Any) -> Optional[Awaitable[None]]:
        """Called when the connection is open (may be ``async def``: messages
        wait until it returns)."""
        return None

    def on_message(self, message: Union[str, bytes]) -> Optional[Awaitable[None]]:
        """Called for each message: ``str`` (text) or ``bytes`` (binary)."""
        raise NotImplementedError

    def on_ping(self, data: bytes) -> None:
        """Called for each ping (the pong is sent automatically)."""

    def on_pong(self, data: bytes) -> None:
        """Called for each pong."""

    def on_close(self) -> Optional[Awaitable[None]]:
        """Called once when the connection is closed; ``close_code`` and
        ``close_reason`` hold what the peer sent (None if nothing)."""
        return None

    def select_subprotocol(self, subprotocols: List[str]) -> Optional[str]:
        """Return one of the client's ``subprotocols`` (a list of str, in
        its order of preference) or None for none."""
        return None

    def get_compression_options(self) -> Compression:
        """permessage-deflate for this handler (Tornado's hook): None for no
        compression, else a dict (``{}``: the defaults; keys are
        :class:`~wsfast.deflate.DeflateOptions` keywords, or Tornado's
        ``compression_level`` and ``mem_level``) or a ``DeflateOptions``.
        Default: the application's ``websocket_compression`` setting
        (``compression`` for short), None unless set."""
        return self.application._compression

    def check_origin(self, origin: str) -> bool:
        """Return True to accept a request with this ``Origin`` header.
        Default: only from the same host (as Tornado), which stops other
        web sites' scripts from connecting with the user's cookies. Clients
        that send no Origin (non-browsers) are always accepted."""
        trusted = self.application._trusted_origins
        if trusted:
            if "*" in trusted or _origin_key(origin) in trusted:
                return True
        try:
            parsed = urlsplit(origin.lower())
        except ValueError:  # "http://[": not an origin a browser sends
            return False
        return parsed.netloc == self.request.headers.get("Host", "").lower()

    # -- actions ------------------------------------------------------------------

    def write_message(self, message: "Message", binary: bool = False,
                      compress: bool = True) -> Awaitable[None]:
        """Send ``message``: ``str`` as text (as binary if ``binary``),
        ``bytes`` as binary, ``dict`` as JSON text. ``compress=False`` sends
        it uncompressed when permessage-deflate is on. Returns an awaitable
        that completes when the write buffer has room again: ``await`` it
        to slow down a fast producer (or ignore it). Raises
        :class:`~wsfast.ConnectionClosed` once the connection is closing."""
        protocol = self.ws_connection
        if protocol is None:
            raise WebSocketClosedError(1006, "the WebSocket connection is not open")
        return protocol.write_message(message, binary, compress)

    def ping(self, data: Union[str, bytes] = b"") -> None:
        """Send a ping; ``on_pong`` gets the answer."""
        protocol = self.ws_connection
        if protocol is None:
            raise WebSocketClosedError(1006, "the WebSocket connection is not open")
        protocol.send_ping(data)

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Start the closing handshake with ``code`` (1000 by default) and
        ``reason``; ``on_close`` follows once it is done (at most
        ``close_timeout`` later)."""
        protocol = self.ws_connection
        if protocol is not None:
            protocol.close(1000 if code is None else code, reason or "")

    def get_websocket_option(self, name: str, default: Any) -> Any:
        value = getattr(self, name)
        if value is None:
            value = self.settings.get("websocket_" + name, default)
        return value

    # -- running -------------------------------------------------------------------

    async def _execute(self, path_args: Tuple[str, ...],
                       path_kwargs: Dict[str, str]) -> None:
        self.path_args = path_args
        self.path_kwargs = path_kwargs
        request = self.request
        try:
            if request.method != "GET":
                raise HandshakeError(
                    405, f"WebSocket upgrade needs GET, not {request.method}", [("Allow", "GET")]
                )
            result = self.prepare()
            if result is not None and inspect.isawaitable(result):
                await result
            if self._finished:
                return
            if type(self).get is WebSocketHandler.get:
                self._upgrade()
            else:
                # An overridden get() guards the upgrade (Tornado's pattern:
                # a decorator, a redirect, then super().get()): it runs
                # first, as in Tornado. If it answers without upgrading,
                # its answer ends the connection.
                self._close_connection = True
                result = self.get(*path_args, **path_kwargs)
                if result is not None and inspect.isawaitable(result):
                    await result
                if not self._finished:
                    self.finish()
        except Exception as exc:
            # A refused upgrade ends the connection, whatever it asked for.
            self._close_connection = True
            self._handle_exception(exc)

    def get(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        """Accept the upgrade: the handshake checks, ``check_origin()``,
        ``select_subprotocol()``, the 101, then ``open()``. Raises
        :class:`HTTPError` (403 for another origin) or
        :class:`~wsfast.HandshakeError` when the request cannot be accepted.

        Override it, as in Tornado, to guard the upgrade; it runs after
        ``prepare()``, before anything is sent, and goes on with
        ``super().get(*args, **kwargs)`` (``await`` it or not: it is done
        when it returns)::

            def get(self, *args, **kwargs):
                if not self.get_cookie("session"):
                    return self.redirect("/login")   # an HTTP answer, no upgrade
                return super().get(*args, **kwargs)
        """
        self._upgrade()
        return _DONE

    def _upgrade(self) -> None:
        request = self.request
        protocol = request.connection
        assert protocol is not None  # the server set it
        if not request.upgrade and "websocket" not in request.headers.get("Upgrade", "").lower():
            raise HandshakeError(400, 'Can "Upgrade" only to "WebSocket".')
        key = _hs.check_request(request)
        origin = request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            # A refusal is the server working as meant: not worth more
            # than a debug line (a page may retry in a loop).
            log.debug("cross-origin WebSocket refused: %r for %s", origin[:200], request.log_uri)
            raise HTTPError(403, reason="Cross Origin WebSocket Refused")
        subprotocol = None
        offered = _hs.parse_subprotocols(request.headers)
        if offered:
            subprotocol = self.select_subprotocol(offered)
            if subprotocol is not None and subprotocol not in offered:
                raise ValueError(
                    f"select_subprotocol returned {subprotocol!r}, not one of {offered}"
                )
        self.selected_subprotocol = subprotocol
        ext_header: Optional[str] = None
        extensions: Sequence[_hs.Extension] = ()
        if "Sec-WebSocket-Extensions" in request.headers:
            available = self._extension_factories()
            offers = _hs.parse_extensions(request.headers)
            ext_header, extensions = _hs.negotiate_extensions(offers, available)
        response = _hs.build_accept_response(
            key, subprotocol, ext_header, extra_headers=self._headers
        )
        self._finished = True
        self.ws_connection = protocol
        # The answer is sent: its headers and body buffer are not needed for
        # the life of the connection (memory per idle connection).
        self._headers = None  # type: ignore[assignment]  # gone: nothing is sent over HTTP any more
        self._write_buffer = None  # type: ignore[assignment]  # (as _headers)
        request.headers.compact()
        if type(self).write_message is WebSocketHandler.write_message:
            # Hot path: skip one call per message.
            self.write_message = protocol.write_message  # type: ignore[method-assign]  # same signature
        access_log.info("101 GET %s (%s)", request.log_uri, request.remote_ip)
        protocol.upgrade(
            self,
            response,
            self._websocket_options(),
            extensions,
            on_open=self._open,
        )

    def _open(self) -> Optional[Awaitable[None]]:
        return self.open(*self.path_args, **self.path_kwargs)

    def _extension_factories(self) -> Tuple["ExtensionFactory", ...]:
        get = self.get_compression_options
        if getattr(get, "__func__", None) is WebSocketHandler.get_compression_options:
            options = self.application._compression  # normalized once
        else:
            options = _compression_options(get())
        return (options,) if options is not None else ()

    _OPTION_NAMES = ("max_message_size", "ping_interval", "ping_timeout", "close_timeout",
                     "max_queue", "write_buffer_high", "write_buffer_low", "max_write_buffer",
                     "max_fragments")

    def _websocket_options(self) -> Options:
        get = self.get_websocket_option
        base = self.application._options
        changes: Dict[str, Any] = {}
        for name in self._OPTION_NAMES:
            value = get(name, getattr(base, name))
            if name in ("ping_interval", "ping_timeout"):
                value = _zero_off(value)
            if value != getattr(base, name):
                changes[name] = value
        # Shared when nothing differs: one Options per application, not per connection.
        return base.replace(**changes) if changes else base

    def _ws_closed(self) -> None:
        assert self.ws_connection is not None  # called by it
        conn = self.ws_connection.connection
        received = conn.close_received
        if received is not None and received.code != 1005:
            self.close_code = received.code
            self.close_reason = received.reason
        result = self.on_close()
        if result is not None and inspect.isawaitable(result):
            asyncio.ensure_future(result)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.request.log_uri}>"


class _Route:
    __slots__ = ("regex", "handler_class", "kwargs", "name")

    def __init__(self, pattern: Union[str, Pattern[str]], handler_class: Type[RequestHandler],
                 kwargs: Optional[Dict[str, Any]] = None, name: Optional[str] = None) -> None:
        self.regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.handler_class = handler_class
        self.kwargs = kwargs or {}
        self.name = name


#: The settings ``Application(**settings)`` implements, with their defaults
#: (see the module docstring). Any other name is an error.
SETTINGS = {
    "websocket_max_message_size": 16 * 2**20,
    "websocket_ping_interval": 20.0,
    "websocket_ping_timeout": 20.0,
    "websocket_close_timeout": 5.0,
    "websocket_max_queue": 32,
    "websocket_write_buffer_high": 256 * 1024,
    "websocket_write_buffer_low": 64 * 1024,
    "websocket_max_write_buffer": None,
    "websocket_max_fragments": None,
    "websocket_compression": None,
    "compression": None,
    "websocket_close_wait": None,
    "handshake_timeout": 10.0,
    "max_header_size": 64 * 1024,
    "max_body_size": 1024 * 1024,
    "codec": None,
    "static_path": None,
    "static_url_prefix": "/static/",
    "allowed_hosts": None,
    "trusted_origins": None,
    "max_connections": None,
    "trusted_proxies": None,
    "proxy_protocol": False,
    "default_handler_class": None,
    "default_handler_args": None,
}

# Tornado settings that wsfast.web does not implement, and what to do instead.
_TORNADO_ONLY = {
    "xsrf_cookies": "there is no XSRF check: WebSocket upgrades are protected by check_origin() "
                    "and the allowed_hosts/trusted_origins settings; for forms, use Tornado "
                    "(wsfast.tornado) or check a token in prepare()",
    "xsrf_cookie_version": "there is no XSRF check (see xsrf_cookies)",
    "xsrf_cookie_kwargs": "there is no XSRF check (see xsrf_cookies)",
    "cookie_secret": "there are no secure (signed) cookies: get_cookie()/set_cookie() are plain; "
                     "sign values yourself (hmac) or use Tornado (wsfast.tornado)",
    "key_version": "there are no secure (signed) cookies (see cookie_secret)",
    "template_path": "there are no templates: render with your template engine and write() "
                     "the result, or use Tornado (wsfast.tornado)",
    "template_loader": "there are no templates (see template_path)",
    "template_whitespace": "there are no templates (see template_path)",
    "autoescape": "there are no templates (see template_path)",
    "compiled_template_cache": "there are no templates (see template_path)",
    "ui_modules": "there are no templates (see template_path)",
    "ui_methods": "there are no templates (see template_path)",
    "login_url": "there is no current_user or @authenticated: refuse in prepare() "
                 "(raise HTTPError(401)) or redirect from an overridden get()",
    "debug": "there is no debug mode (no autoreload, no tracebacks in answers): "
             "set logging to DEBUG instead",
    "autoreload": "there is no autoreload (see debug)",
    "serve_traceback": "tracebacks are logged, never sent to the client (override write_error())",
    "static_hash_cache": "static files are served without versioned URLs or hash cache",
    "static_handler_class": "static files are served by wsfast.StaticFileHandler; add your own "
                            "route for another handler",
    "static_handler_args": "see static_handler_class",
    "compress_response": "HTTP answers are not gzipped (WebSocket messages are compressed "
                         "with websocket_compression)",
    "gzip": "see compress_response",
    "log_function": "requests are logged to the 'wsfast.access' logger; configure logging instead",
    "xheaders": "Tornado trusts those headers from any peer; list the proxies whose headers "
                "are believed in the trusted_proxies setting instead",
}


def _check_settings(settings: Dict[str, Any]) -> None:
    for name in settings:
        if name in SETTINGS:
            continue
        if name in _TORNADO_ONLY:
            raise ValueError(f"Application setting {name!r} is a Tornado setting that "
                             f"wsfast.web does not implement: {_TORNADO_ONLY[name]}")
        raise TypeError(f"unknown Application setting {name!r}; wsfast.web knows: "
                        + ", ".join(sorted(SETTINGS)))
    default = settings.get("default_handler_class")
    if default is not None and not (isinstance(default, type) and issubclass(default, RequestHandler)):
        raise TypeError(f"default_handler_class must be a RequestHandler subclass, not {default!r}")
    args = settings.get("default_handler_args")
    if args is not None and not isinstance(args, dict):
        raise TypeError(f"default_handler_args must be a dict, not {args!r}")
    if args is not None and default is None:
        raise ValueError("default_handler_args needs default_handler_class")


class Application:
    """A list of routes plus settings (see the module docstring).

    ``Application([(r"/", MainPage), (r"/ws", Chat)], websocket_ping_interval=20)``.
    Serve it with :func:`run` or ``server = await app.listen(port)``.
    """

    def __init__(self, handlers: Optional[Iterable["RouteSpec"]] = None,
                 default_host: None = None, **settings: Any) -> None:
        if default_host is not None:
            raise TypeError(
                "default_host: wsfast.web has no virtual hosts (every route serves every "
                "host); leave it out, and use allowed_hosts to say which hosts are served")
        _check_settings(settings)
        self.settings = settings
        self._routes: List[_Route] = []
        self._servers: List[Server] = []
        static_path = settings.get("static_path")
        if static_path:
            prefix = settings.get("static_url_prefix", "/static/")
            self.add_route(re.escape(prefix) + "(.*)", StaticFileHandler, {"path": static_path})
        for spec in handlers or ():
            self.add_route(*spec)
        self._options = Options(
            max_message_size=settings.get("websocket_max_message_size", 16 * 2**20),
            ping_interval=_zero_off(settings.get("websocket_ping_interval", 20.0)),
            ping_timeout=_zero_off(settings.get("websocket_ping_timeout", 20.0)),
            open_timeout=settings.get("handshake_timeout", 10.0),
            close_timeout=settings.get("websocket_close_timeout", 5.0),
            max_queue=settings.get("websocket_max_queue", 32),
            write_buffer_high=settings.get("websocket_write_buffer_high", 256 * 1024),
            write_buffer_low=settings.get("websocket_write_buffer_low", 64 * 1024),
            max_write_buffer=settings.get("websocket_max_write_buffer"),
            max_fragments=settings.get("websocket_max_fragments"),
            max_header_size=settings.get("max_header_size", 64 * 1024),
            max_body_size=settings.get("max_body_size", 1024 * 1024),
            codec=settings.get("codec"),
        )
        self._allowed_hosts = _allowed_hosts(settings.get("allowed_hosts"))
        self._trusted_origins = _trusted_origins(settings.get("trusted_origins"))
        self._proxy_protocol = bool(settings.get("proxy_protocol"))
        proxies = settings.get("trusted_proxies")
        self._trusted_proxies = TrustedProxies(proxies) if proxies else None
        max_connections = settings.get("max_connections")
        if max_connections is None:
            max_connections = _default_max_connections()
        elif not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, not {max_connections!r}")
        self._max_connections = max_connections
        compression = settings.get("websocket_compression", settings.get("compression"))
        self._compression = _compression_options(compression)  # ValueError now, not per request
        #: Counters over every server of this application: "slow_consumers"
        #: (connections closed because their peer did not read, see
        #: Options.max_write_buffer and broadcast(slow="close")).
        self.stats: Counter[str] = collections.Counter()

    def add_route(self, pattern: Union[str, Pattern[str]], handler_class: Type[RequestHandler],
                  kwargs: Optional[Dict[str, Any]] = None, name: Optional[str] = None) -> None:
        self._routes.append(_Route(pattern, handler_class, kwargs, name))

    def add_handlers(self, host_pattern: str, handlers: Iterable["RouteSpec"]) -> None:
        """Tornado's way to add routes: ``host_pattern`` must match every
        host (``".*"`` or ``".*$"``), as wsfast.web has no virtual hosts; any
        other pattern is a ValueError rather than routes served for every
        host."""
        if host_pattern not in (".*", ".*$", "^.*$", r".*\Z"):
            raise ValueError(
                f"add_handlers({host_pattern!r}, ...): wsfast.web has no virtual hosts, so routes "
                "cannot be limited to some hosts; use host_pattern '.*' (and the allowed_hosts "
                "setting to refuse other hosts)")
        for spec in handlers:
            self.add_route(*spec)

    def find_handler(self, path: str) -> Tuple[Type[RequestHandler], Dict[str, Any],
                                               Tuple[str, ...], Dict[str, str]]:
        """``(handler_class, kwargs, path_args, path_kwargs)`` for ``path``
        (404 handler if nothing matches). A group that did not match is
        None (typed str, as Tornado types its path arguments)."""
        for route in self._routes:
            match = route.regex.fullmatch(path)
            if match is None:
                continue
            if route.regex.groupindex:
                path_kwargs = {k: unquote(v) if v is not None else None
                               for k, v in match.groupdict().items()}
                return route.handler_class, route.kwargs, (), cast(Dict[str, str], path_kwargs)
            path_args = tuple(unquote(g) if g is not None else None for g in match.groups())
            return route.handler_class, route.kwargs, cast(Tuple[str, ...], path_args), {}
        default = self.settings.get("default_handler_class")
        if default is not None:
            return default, self.settings.get("default_handler_args") or {}, (), {}
        return ErrorHandler, {"status_code": 404}, (), {}

    def reverse_url(self, name: str, *args: object) -> str:
        for route in self._routes:
            if route.name == name:
                pattern = route.regex.pattern.rstrip("$")
                parts = re.split(r"\([^)]*\)", pattern)
                out = parts[0]
                for part, arg in zip(parts[1:], args):
                    out += str(arg) + part
                return out.replace("\\", "")
        raise KeyError(f"no route named {name!r}")

    def listen(self, port: int = 8888, address: Optional[str] = None, *, host: Optional[str] = None,
               ssl: Optional[SSLContext] = None, reuse_port: bool = False, backlog: int = 1024,
               sock: Union[socket.socket, Iterable[socket.socket], None] = None,
               path: Union[str, "os.PathLike[str]", None] = None) -> "_Listening":
        """Listen on ``host`` (or ``address``, Tornado's name; all
        interfaces if None) and ``port`` (0: pick a free one, see
        ``server.port``), or on the Unix socket ``path``, or on the listening
        socket ``sock`` (or a list of them); ``ssl``: an ``ssl.SSLContext``
        for https/wss.

        Call it from a coroutine (a running event loop). The sockets are
        bound before it returns (an address in use raises ``OSError`` here)
        and the server accepts connections from the loop's next turn, so
        ``await`` is optional, as in Tornado: ``server = await
        app.listen(8888)`` returns the :class:`Server` once serving, and a
        bare ``app.listen(8888)`` serves all the same (its return value
        gives the ``port`` and ``sockets`` at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "Application.listen() needs a running event loop: call it from a coroutine "
                "(async def main(): app.listen(8888); await asyncio.Event().wait()) "
                "or serve with wsfast.run(app, port=8888)"
            ) from None
        server = Server(self)
        if sock is not None:
            sockets = [sock] if isinstance(sock, socket.socket) else list(sock)
        else:
            sockets = bind_sockets(host if host is not None else address, port, path=path,
                                   reuse_port=reuse_port, backlog=backlog)
        server._adopt(sockets)
        self._servers.append(server)
        return _Listening(server, loop.create_task(server._serve(sockets, ssl=ssl, backlog=backlog)))

    async def stop(self, timeout: Optional[float] = None) -> None:
        """Stop every server started by ``listen()``: no new connections,
        close 1001 on every WebSocket, and wait (bounded) for the closing
        handshakes."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        await asyncio.gather(*(s.wait_closed(timeout) for s in servers))


#: A route: ``(pattern, HandlerClass)``, ``(pattern, HandlerClass, kwargs)``
#: or ``(pattern, HandlerClass, kwargs, name)``.
RouteSpec = Union[
    Tuple[Union[str, Pattern[str]], Type[RequestHandler]],
    Tuple[Union[str, Pattern[str]], Type[RequestHandler], Optional[Dict[str, Any]]],
    Tuple[Union[str, Pattern[str]], Type[RequestHandler], Optional[Dict[str, Any]], Optional[str]],
]


def bind_sockets(host: Optional[str] = None, port: int = 8888, *,
                 path: Union[str, "os.PathLike[str]", None] = None, reuse_port: bool = False,
                 backlog: int = 1024) -> List[socket.socket]:
    """Bound, listening, non-blocking sockets for ``Server``: one per
    address of ``host`` (all interfaces if None or "", IPv4 and IPv6, on one
    port even when ``port`` is 0), or one Unix socket at ``path`` (a stale
    socket file left by a dead server is replaced; a live one is
    ``OSError(EADDRINUSE)``). Raises ``OSError`` when an address cannot be
    bound, closing what was bound."""
    if path is not None:
        return [_bind_unix(path, backlog)]
    if host == "":
        host = None
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    sockets: List[socket.socket] = []
    seen: Set[Any] = set()
    bound_port: Optional[int] = None
    try:
        for family, kind, proto, _, found in infos:
            # (host, port) or (host, port, flowinfo, scope_id)
            address: Tuple[Any, ...] = found
            if address in seen or (family == socket.AF_INET6 and not socket.has_ipv6):
                continue
            seen.add(address)
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                if family == socket.AF_INET6 and host is None:
                    continue  # a kernel without IPv6
                raise
            try:
                if os.name != "nt":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and bound_port is not None:
                    address = (address[0], bound_port) + tuple(address[2:])
                sock.bind(address)
            except OSError as exc:
                sock.close()
                if family == socket.AF_INET6 and host is None and exc.errno == errno.EADDRNOTAVAIL:
                    continue  # no IPv6 here: IPv4 is enough
                raise OSError(exc.errno, f"cannot bind {address[0]}:{address[1]}: "
                                         f"{exc.strerror}") from None
            sockets.append(sock)
            bound_port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_unix(path: Union[str, "os.PathLike[str]"], backlog: int) -> socket.socket:
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"cannot listen on {path}: a file that is not a socket is there")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # left by a server that is gone
        else:
            raise OSError(errno.EADDRINUSE, f"cannot listen on {path}: a server is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _ProxyHeaderProtocol(WebSocketProtocol):
    """A server connection that starts with a PROXY protocol header (the
    ``proxy_protocol`` setting; HAProxy's ``send-proxy``/``send-proxy-v2``):
    the header gives the client's address (``request.remote_ip``), then the
    HTTP request follows as usual. A connection without a valid header is
    dropped; the opening-handshake timeout covers the header too."""

    __slots__ = ("_proxy_head",)

    def __init__(self, side: Side, options: Options, owner: "Server") -> None:
        super().__init__(side, options, owner)
        self._proxy_head: Optional[bytearray] = bytearray()

    def buffer_updated(self, nbytes: int) -> None:
        head = self._proxy_head
        if head is None:
            super().buffer_updated(nbytes)
            return
        head += self._view[:nbytes]
        try:
            result = parse_proxy_header(head)
        except ValueError as exc:
            self._proxy_head = None
            log.debug("%s: %s; dropped", self.remote_address, exc)
            self.abort()
            return None
        if result is None:
            return None  # incomplete
        consumed, address = result
        self._proxy_head = None
        if address is not None:
            self.remote_address = address
        if len(head) > consumed:
            self._receive_request(bytes(head[consumed:]))
        return None


class _Listening:
    """What ``Application.listen()`` returns: ``await`` it for the
    :class:`Server` (serving); without ``await`` it stands for the server
    (``port``, ``sockets``, ``close()``...), which serves from the loop's
    next turn either way."""

    __slots__ = ("server", "_task")

    def __init__(self, server: "Server", task: "asyncio.Task[None]") -> None:
        self.server = server
        self._task = task
        task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("wsfast server could not start serving", exc_info=task.exception())

    def __await__(self) -> Generator[Any, None, "Server"]:
        yield from self._task.__await__()
        return self.server

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def __repr__(self) -> str:
        return repr(self.server)


def _fd_limit() -> Optional[int]:
    """The soft limit on open files of this process, or None if unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return soft


def _default_max_connections() -> int:
    """The default of ``max_connections``: the process's soft limit on open
    files less a reserve (an eighth, at least 32) for listening sockets,
    files, logs and the refusals themselves."""
    soft = _fd_limit()
    if soft is None:
        return 100000
    return max(1, soft - max(32, soft // 8))


def _refusing_max(max_connections: int) -> int:
    """How many 503 answers may be on their way at once: half of what the
    fd limit leaves past ``max_connections``, at most 64 (past it, a
    refused connection is dropped without an answer)."""
    soft = _fd_limit()
    if soft is None:
        return 64
    return max(1, min(64, (soft - max_connections) // 2))


class _AcceptErrorFilter(logging.Filter):
    """The stdlib loop logs "socket.accept() out of system resource" with a
    traceback once per pending connection (up to the backlog) and again
    every second while out of descriptors: tens of thousands of lines a
    second. Let one through per minute, with the count of the rest, without
    the traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._last: Optional[float] = None

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if not msg.startswith("socket.accept() out of system resource"):
            # The retries it scheduled, one per failed accept(), each fail
            # with a traceback if the server has closed in the meantime.
            return not (msg.startswith("Exception in callback") and "._start_serving(" in msg
                        and isinstance(record.exc_info and record.exc_info[1], ValueError))
        import time

        now = time.monotonic()
        if self._last is not None and now - self._last < 60:
            self.dropped += 1
            return False
        self._last = now
        if self.dropped:
            record.msg = f"{record.msg} ({self.dropped} more like it in the last minute)"
            self.dropped = 0
        if record.exc_info and record.exc_info[1] is not None:
            # The errno says it all ("Too many open files"): no traceback.
            first, _, rest = record.msg.partition("\n")
            record.msg = f"{first}: {record.exc_info[1]}" + (f"\n{rest}" if rest else "")
            record.exc_info = None
            record.exc_text = None
        return True


_accept_filter: Optional[_AcceptErrorFilter] = None


def _quiet_accept_errors() -> None:
    global _accept_filter
    if _accept_filter is None:
        _accept_filter = _AcceptErrorFilter()
        logging.getLogger("asyncio").addFilter(_accept_filter)


class Server:
    """A listening server for an :class:`Application` (from ``app.listen()``).

    ``port``, ``sockets``; ``close()`` stops listening and starts closing
    every connection (1001 for WebSockets); ``await wait_closed(timeout)``
    waits for them, dropping whatever is left after ``timeout``;
    ``await stop()`` does both. Also an async context manager.
    """

    def __init__(self, application: Application) -> None:
        self.application = application
        self.options = application._options
        self.stats = application.stats  # read by WebSocketProtocol (slow consumers)
        self.protocols: Set[WebSocketProtocol] = set()
        #: At most this many connections at once; past it a connection gets
        #: a 503 (setting ``max_connections``; default from the fd limit).
        self.max_connections = application._max_connections
        #: Connections refused because ``max_connections`` were open.
        self.refused = 0
        self._refusing: Set[WebSocketProtocol] = set()  # refused, their 503 on its way
        self._refusing_max = _refusing_max(self.max_connections)
        self._bound: List[socket.socket] = []  # the listening sockets
        self._paths: List[str] = []  # Unix socket files to remove at close
        self._listeners: List[asyncio.AbstractServer] = []  # an asyncio server per socket
        self._closing = False
        self._all_gone: Optional["asyncio.Future[None]"] = None

    async def start(self, host: Optional[str] = None, port: int = 8888, *,
                    ssl: Optional[SSLContext] = None, reuse_port: bool = False, backlog: int = 1024,
                    sock: Optional[socket.socket] = None,
                    path: Union[str, "os.PathLike[str]", None] = None) -> None:
        """Bind (as :func:`bind_sockets`) and serve; ``app.listen()`` does this for you."""
        sockets = [sock] if sock is not None else bind_sockets(
            host, port, path=path, reuse_port=reuse_port, backlog=backlog)
        await self._serve(sockets, ssl=ssl, backlog=backlog)

    def _adopt(self, sockets: Iterable[socket.socket]) -> None:
        """Take ``sockets`` (bound and listening) as this server's."""
        self._bound = list(sockets)
        self._paths = [sock.getsockname() for sock in sockets
                       if sock.family == getattr(socket, "AF_UNIX", None) and sock.getsockname()]

    async def _serve(self, sockets: List[socket.socket], *, ssl: Optional[SSLContext] = None,
                     backlog: int = 1024) -> None:
        if self._bound != list(sockets):
            self._adopt(sockets)
        loop = asyncio.get_running_loop()
        kwargs: Dict[str, Any] = dict(ssl=ssl, backlog=backlog)
        _quiet_accept_errors()
        if ssl is not None and self.options.open_timeout:
            # The opening handshake timeout covers the TLS handshake too:
            # asyncio's default would hold a silent connection for 60 s.
            kwargs["ssl_handshake_timeout"] = self.options.open_timeout
        try:
            for sock in sockets:
                if self._closing:
                    break
                self._listeners.append(
                    await loop.create_server(self._make_protocol, sock=sock, **kwargs))
        finally:
            if self._closing:  # close() came first: nothing serves
                self._close_listeners()

    def _make_protocol(self) -> WebSocketProtocol:
        if self.application._proxy_protocol:
            return _ProxyHeaderProtocol(Side.SERVER, self.options, self)
        return WebSocketProtocol(Side.SERVER, self.options, self)

    @property
    def sockets(self) -> Tuple[socket.socket, ...]:
        """The listening sockets (one per address family, or the Unix socket)."""
        if self._closing:
            return ()
        return tuple(self._bound)

    @property
    def port(self) -> Optional[int]:
        """The TCP port listened on (None for a Unix socket)."""
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                port: int = name[1]
                return port
        return None

    @property
    def path(self) -> Optional[str]:
        """The Unix socket's path, or None."""
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, str) and name:
                return name
        return None

    def _close_listeners(self) -> None:
        for listener in self._listeners:
            listener.close()
        for sock in self._bound[len(self._listeners):]:
            sock.close()  # bound, never served: asyncio does not own it
        for path in self._paths:
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
        self._paths = []

    # owner interface for WebSocketProtocol
    def connection_made(self, protocol: WebSocketProtocol) -> None:
        if len(self.protocols) >= self.max_connections:
            self._refuse(protocol)
            return
        if self._closing:
            protocol.shutdown()
        self.protocols.add(protocol)

    def _refuse(self, protocol: WebSocketProtocol) -> None:
        # Before the process runs out of file descriptors: a clear answer
        # now, instead of accept() failing (and the stdlib loop logging a
        # traceback per attempt) later. The 503s on their way are bounded
        # too; past that, a refused connection is dropped without one.
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("max_connections (%d) reached: refusing connections with 503 "
                        "(%d so far)", self.max_connections, self.refused)
        if len(self._refusing) < self._refusing_max:
            self._refusing.add(protocol)
            try:
                protocol.refuse(HandshakeError(503, "too many connections, retry later",
                                               [("Retry-After", "1")]))
            except OSError:  # the peer is gone already (write_eof: ENOTCONN)
                protocol.abort()
        else:
            protocol.abort()

    def connection_lost(self, protocol: WebSocketProtocol) -> None:
        self._refusing.discard(protocol)
        self.protocols.discard(protocol)
        if not self.protocols and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

    async def handle_request(self, protocol: WebSocketProtocol, request: Request) -> None:
        request.connection = protocol
        app = self.application
        if app._trusted_proxies is not None:
            request._remote_ip = client_address(request, app._trusted_proxies)
        handler_class, kwargs, args, path_kwargs = app.find_handler(request.path)
        if app._allowed_hosts is not None and not host_allowed(request.host, app._allowed_hosts):
            # DNS rebinding: a page of another site, resolved to this server,
            # sends its own name as Host (and as Origin, which then matches).
            log.debug("Host %r is not in allowed_hosts: 400 for %s", request.host[:200],
                      request.log_uri)
            handler_class, kwargs, args, path_kwargs = ErrorHandler, {"status_code": 400}, (), {}
        try:
            handler: RequestHandler = handler_class(app, request, **kwargs)
        except Exception:
            log.exception("cannot create %s", handler_class.__name__)
            handler = ErrorHandler(app, request, status_code=500)
        await handler._execute(args, path_kwargs)

    # shutdown
    def close(self) -> None:
        """Stop listening; close every connection gracefully (1001)."""
        if self._closing:
            return
        self._closing = True
        self._close_listeners()
        for protocol in list(self.protocols):
            protocol.shutdown()

    async def wait_closed(self, timeout: Optional[float] = None) -> None:
        """Wait until every connection is closed, at most ``timeout`` seconds
        (default: the close timeout + 1); then drop the rest."""
        if timeout is None:
            timeout = self.application.settings.get(
                "websocket_close_wait", (self.options.close_timeout or 0) + 1.0
            )
        if self.protocols:
            loop = asyncio.get_running_loop()
            if self._all_gone is None or self._all_gone.done():
                self._all_gone = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_gone), timeout)
            except asyncio.TimeoutError:
                for protocol in list(self.protocols):
                    protocol.abort()
                if self.protocols:
                    try:
                        await asyncio.wait_for(asyncio.shield(self._all_gone), 1.0)
                    except asyncio.TimeoutError:
                        pass
        for listener in self._listeners:
            # Python 3.12+ waits for the connections too; they are gone.
            try:
                await asyncio.wait_for(listener.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def stop(self, timeout: Optional[float] = None) -> None:
        self.close()
        await self.wait_closed(timeout)

    async def serve_forever(self) -> None:
        """Wait until the server is closed."""
        await asyncio.gather(*(listener.serve_forever() for listener in self._listeners))

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<Server port={self.port} connections={len(self.protocols)}>"


def _loop_factory(use_uvloop: Optional[bool]) -> Optional[Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop's loop factory if wanted and installed, else None (stdlib)."""
    if use_uvloop is False or sys.platform == "win32":
        return None
    try:
        import uvloop
    except ImportError:
        if use_uvloop:
            raise
        return None
    return uvloop.new_event_loop


def _url(scheme: str, sockname: Union[str, bytes, Tuple[Any, ...]]) -> str:
    if isinstance(sockname, (str, bytes)):  # a Unix socket's path
        return f"{scheme}+unix:{os.fsdecode(sockname)}"
    host, port = sockname[0], sockname[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def run(app: Application, host: Optional[str] = None, port: int = 8888,
        ssl: Optional[SSLContext] = None, *, use_uvloop: Optional[bool] = None,
        shutdown_timeout: Optional[float] = None,
        on_start: Optional[Callable[[Server], object]] = None, **listen_kwargs: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then shut down gracefully (1001 to
    every WebSocket, bounded wait). Uses uvloop when installed unless
    ``use_uvloop=False``. ``host=None`` listens on every interface; give
    ``host="127.0.0.1"`` for this machine only. Once listening, it prints
    where to stderr (``wsfast: listening on http://127.0.0.1:8000``), or
    calls ``on_start(server)`` instead if given."""

    async def main() -> None:
        server = await app.listen(
port, host=host, ssl=ssl, **listen_kwargs)
        # The signals are ours before anyone is told we listen: a SIGTERM
        # sent on that news is a graceful stop, not Python's default death.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        scheme = "https" if ssl is not None else "http"
        where = ", ".join(_url(scheme, s.getsockname()) for s in server.sockets)
        log.info("wsfast serving on %s", where)
        if on_start is not None:
            on_start(server)
        else:
            print(f"wsfast: listening on {where} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            await stop.wait()
        finally:
            log.info("wsfast shutting down")
            await app.stop(shutdown_timeout)

    factory = _loop_factory(use_uvloop)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    else:  # pragma: no cover - Python 3.9/3.10
        loop = factory() if factory is not None else asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
