"""Token auth at the opening handshake (OAuth 2.0 bearer tokens, RFC 6750).

A client presents an access token, over TLS, either in a header
(``Authorization: Bearer <token>``, what programs send) or in the URL
(``?access_token=<token>``, what a browser's ``new WebSocket(url)`` can
send, as it cannot set headers). The handler checks it in ``prepare()``,
before anything is answered::

    from wsfast.auth import TokenAuthMixin

    class Chat(TokenAuthMixin, wsfast.WebSocketHandler):
        token_realm = "chat"

        async def verify_token(self, token):
            session = await sessions.find(token)           # your store
            if session is None or session.expired:
                return None                                 # -> 401
            return session.user                             # -> self.current_user

        def open(self):
            print("hello", self.current_user)

The answers carry no detail a prober could use: a request without a token
gets ``401`` with ``WWW-Authenticate: Bearer realm="chat"``; a wrong or
expired token the same with ``error="invalid_token"`` (RFC 6750 §3.1); a
token sent both ways ``400`` with ``error="invalid_request"``. The token is
never logged: the access log shows ``access_token=***`` (see
:func:`wsfast.http.redact_uri`) and headers are not logged.

The same mixin works on :class:`wsfast.tornado.WebSocketHandler`; ASGI
apps (FastAPI, Starlette under wsfast.asgi) use :func:`asgi_authenticate`
or :class:`TokenAuthMiddleware`.

Cross-origin pages: the default ``check_origin`` still runs after
``prepare()``, so a page of another site that holds a valid token is
refused (403) unless its origin is in the ``trusted_origins`` setting. A
token is not an ambient credential like a cookie, so trusting the origins
of the pages that receive tokens is safe.
"""

import hmac
import inspect
import sys
from http import HTTPStatus
from typing import (
    TYPE_CHECKING, Any, Awaitable, Callable, List, MutableMapping, Optional, Sequence, TypeVar,
    Union, cast,
)
from urllib.parse import parse_qsl

from .http import Request
from .web import HTTPError, RequestHandler

if TYPE_CHECKING:
    import tornado.web
    from typing_extensions import TypeGuard

#: An ASGI connection scope, event message, and the callables (ASGI 3).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_User = TypeVar("_User")
#: ``verify(token)``: who the token belongs to, or None (plain or ``async def``).
Verify = Callable[[str], Union[Optional[_User], Awaitable[Optional[_User]]]]
#: A handler :func:`authenticate` takes: wsfast's or Tornado's.
AnyHandler = Union[RequestHandler, "tornado.web.RequestHandler"]

__all__ = ["TokenAuthMiddleware", "TokenAuthMixin", "asgi_authenticate", "authenticate",
           "bearer_token", "constant_time_equal"]


def _challenge(realm: Optional[str], error: Optional[str] = None) -> str:
    parts = []
    if realm:
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'realm="{escaped}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer" + (" " + ", ".join(parts) if parts else "")


def _refuse(status: int, realm: Optional[str], error: Optional[str] = None) -> HTTPError:
    # No log_message: nothing about the token reaches the log.
    return HTTPError(status, headers={"WWW-Authenticate": _challenge(realm, error)})


class _Refusal(Exception):
    def __init__(self, status: int, error: Optional[str] = None) -> None:
        super().__init__(status, error)
        self.status = status
        self.error = error


def _find_token(authorization: Sequence[str], query_values: Optional[Sequence[str]]) -> Optional[str]:
    # The token from the Authorization values (str) and the query argument's
    # values (str; None: the header only), or None; _Refusal(400) for a
    # token sent twice or both ways. Shared by every front-end.
    bearer = [value for value in authorization if value.strip()[:7].lower() == "bearer "
              or value.strip().lower() == "bearer"]
    if len(bearer) > 1:
        raise _Refusal(400, "invalid_request")
    from_header = None
    if bearer:
        from_header = bearer[0].strip()[7:].strip()
        if not from_header:
            raise _Refusal(400, "invalid_request")
    from_query = None
    if query_values:
        if len(query_values) > 1:
            raise _Refusal(400, "invalid_request")
        from_query = query_values[0]
    if from_header is not None and from_query is not None:
        raise _Refusal(400, "invalid_request")  # RFC 6750 §2: one method only
    token = from_header if from_header is not None else from_query
    return token or None


def _tornado_handler(handler: object) -> "TypeGuard[tornado.web.RequestHandler]":
    tornado_web = sys.modules.get("tornado.web")
    return tornado_web is not None and isinstance(handler, tornado_web.RequestHandler)


def bearer_token(request: Request, query_argument: Optional[str] = "access_token",
                 realm: Optional[str] = None) -> Optional[str]:
    """The access token of ``request``, or None if it has none: from
    ``Authorization: Bearer <token>``, else from the query argument
    ``query_argument`` (None: the header only). Raises ``HTTPError(400)``
    (``error="invalid_request"``) for a token sent in both places, twice,
    or an ``Authorization: Bearer`` without one."""
    query: Optional[Sequence[str]] = None
    if query_argument is not None:
        query = request.query_arguments.get(query_argument, ())
    try:
        return _find_token(request.headers.get_all("Authorization"), query)
    except _Refusal as refusal:
        raise _refuse(refusal.status, realm, refusal.error) from None


def _handler_token(handler: AnyHandler, query_argument: Optional[str]) -> Optional[str]:
    query: Optional[Sequence[str]] = None
    if _tornado_handler(handler):
        if query_argument is not None:
            query = handler.get_query_arguments(query_argument, strip=False)
        return _find_token(handler.request.headers.get_list("Authorization"), query)
    request = cast(RequestHandler, handler).request
    if query_argument is not None:
        query = request.query_arguments.get(query_argument, ())
    return _find_token(request.headers.get_all("Authorization"), query)


async def authenticate(handler: AnyHandler, verify: Verify[_User], *, realm: Optional[str] = None,
                       query_argument: Optional[str] = "access_token") -> _User:
    """Check the token of ``handler.request`` with ``verify(token)`` (plain
    or ``async def``; it returns who the token belongs to, or None for a
    token that is wrong or expired) and return what it returned; otherwise
    answer 401 with ``WWW-Authenticate`` (see the module docstring): a
    :class:`wsfast.WebSocketHandler` raises :class:`~wsfast.HTTPError`, a
    :class:`wsfast.tornado.WebSocketHandler` (any Tornado ``RequestHandler``)
    sets the status and header and raises ``tornado.web.Finish``. Call it
    from ``prepare()``."""
    try:
        token = _handler_token(handler, query_argument)
        if token is None:
            raise _Refusal(401)
        user = await _verified(verify, token)
    except _Refusal as refusal:
        if _tornado_handler(handler):
            import tornado.web
            handler.clear()
            handler.set_status(refusal.status)
            handler.set_header("WWW-Authenticate", _challenge(realm, refusal.error))
            raise tornado.web.Finish() from None
        raise _refuse(refusal.status, realm, refusal.error) from None
    return user


async def _verified(verify: Verify[_User], token: str) -> _User:
    user = verify(token)
    if inspect.isawaitable(user):
        user = await user
    if user is None:
        raise _Refusal(401, "invalid_token")
    return user


# -- ASGI (wsfast.asgi under uvicorn, FastAPI, Starlette) ------------------------------------

def _scope_token(scope: Scope, query_argument: Optional[str]) -> Optional[str]:
    authorization = [value.decode("latin-1") for name, value in scope.get("headers", ())
                     if name.lower() == b"authorization"]
    query: Optional[List[str]] = None
    if query_argument is not None:
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        query = [value for name, value in pairs if name == query_argument]
    return _find_token(authorization, query)


async def asgi_authenticate(scope: Scope, send: Send, verify: Verify[_User], *,
                            realm: Optional[str] = None,
                            query_argument: Optional[str] = "access_token") -> Optional[_User]:
    """Token auth for an ASGI ``websocket`` connection, before it is
    accepted: return what ``verify(token)`` (plain or ``async def``)
    returned for the connection's token, or send the refusal with ``send``
    and return None. The refusal is the one of :func:`authenticate` (401 or
    400 with ``WWW-Authenticate``, the status text as body) as a
    ``websocket.http.response`` (the ASGI extension wsfast.asgi and uvicorn
    support); on a server without it, a close before accept (403). From a
    FastAPI/Starlette endpoint::

        user = await asgi_authenticate(websocket.scope, websocket.send, verify)
        if user is None:
            return
        await websocket.accept()
    """
    try:
        token = _scope_token(scope, query_argument)
        if token is None:
            raise _Refusal(401)
        return await _verified(verify, token)
    except _Refusal as refusal:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = HTTPStatus(refusal.status).phrase.encode("ascii")
            await send({"type": "websocket.http.response.start", "status": refusal.status,
                        "headers": [(b"www-authenticate",
                                     _challenge(realm, refusal.error).encode("latin-1")),
                                    (b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode("ascii"))]})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return None


class TokenAuthMiddleware:
    """ASGI middleware: every ``websocket`` connection to ``app`` must
    present a token that ``verify(token)`` accepts (see
    :func:`asgi_authenticate`); the app sees who it belongs to as
    ``scope["user"]`` (Starlette's ``websocket.user``). Other scopes pass
    through unchecked. ``app = TokenAuthMiddleware(app, verify, realm="chat")``,
    or with Starlette ``Middleware(TokenAuthMiddleware, verify=verify)``."""

    def __init__(self, app: ASGIApp, verify: Verify[Any], *, realm: Optional[str] = None,
                 query_argument: Optional[str] = "access_token") -> None:
        self.app = app
        self.verify = verify
        self.realm = realm
        self.query_argument = query_argument

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        refused: List[Message] = []

        async def send_refusal(message: Message) -> None:
            if not refused:
                refused.append(await receive())  # the websocket.connect comes first
            await send(message)

        user = await asgi_authenticate(scope, send_refusal, self.verify, realm=self.realm,
                                       query_argument=self.query_argument)
        if user is None:
            return None
        return await self.app(dict(scope, user=user), receive, send)


class TokenAuthMixin:
    """Put before the handler class (``class Chat(TokenAuthMixin,
    wsfast.WebSocketHandler)``, or before :class:`wsfast.tornado.WebSocketHandler`
    or any Tornado ``RequestHandler``) and define ``verify_token(token)``: every
    request is checked in ``prepare()``, and ``self.current_user`` is what
    ``verify_token`` returned. ``token_realm`` names the realm in the
    challenge; ``token_query_argument`` (``"access_token"``; None: header
    only) where a browser puts the token. A subclass that overrides
    ``prepare()`` calls ``await super().prepare()`` first."""

    token_realm: Optional[str] = None
    token_query_argument: Optional[str] = "access_token"
    current_user: Any = None

    async def prepare(self) -> None:
        # a mixin: self is the handler class it is mixed into
        handler = cast("AnyHandler", self)
        self.current_user = await authenticate(
            handler, self.verify_token, realm=self.token_realm,
            query_argument=self.token_query_argument)

    def verify_token(self, token: str) -> Any:
        """Return who ``token`` belongs to, or None if it is wrong or
        expired (may be ``async def``). Compare secrets with
        :func:`constant_time_equal`."""
        raise NotImplementedError(f"{type(self).__name__} must define verify_token(token)")


def constant_time_equal(a: Union[str, bytes], b: Union[str, bytes]) -> bool:
    """``a == b`` for two tokens (str or bytes) in a time that does not tell
    how much of them matched."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)
