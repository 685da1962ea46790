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

Cross-origin pages: the default ``check_origin`` still runs after
``prepare()``, so a page of another site that holds a valid token is
refused (403) unless its origin is in the ``trusted_origins`` setting. A
token is not an ambient credential like a cookie, so trusting the origins
of the pages that receive tokens is safe.
"""

import hmac
import inspect

from .web import HTTPError

__all__ = ["TokenAuthMixin", "authenticate", "bearer_token", "constant_time_equal"]


def _challenge(realm, error=None):
    parts = []
    if realm:
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'realm="{escaped}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer" + (" " + ", ".join(parts) if parts else "")


def _refuse(status, realm, error=None):
    # No log_message: nothing about the token reaches the log.
    return HTTPError(status, headers={"WWW-Authenticate": _challenge(realm, error)})


def bearer_token(request, query_argument="access_token", realm=None):
    """The access token of ``request``, or None if it has none: from
    ``Authorization: Bearer <token>``, else from the query argument
    ``query_argument`` (None: the header only). Raises ``HTTPError(400)``
    (``error="invalid_request"``) for a token sent in both places, twice,
    or an ``Authorization: Bearer`` without one."""
    headers = request.headers.get_all("Authorization")
    from_header = None
    bearer = [value for value in headers if value.strip()[:7].lower() == "bearer "
              or value.strip().lower() == "bearer"]
    if len(bearer) > 1:
        raise _refuse(400, realm, "invalid_request")
    if bearer:
        from_header = bearer[0].strip()[7:].strip()
        if not from_header:
            raise _refuse(400, realm, "invalid_request")
    from_query = None
    if query_argument is not None:
        values = request.query_arguments.get(query_argument, ())
        if len(values) > 1:
            raise _refuse(400, realm, "invalid_request")
        if values:
            from_query = values[0]
    if from_header is not None and from_query is not None:
        raise _refuse(400, realm, "invalid_request")  # RFC 6750 §2: one method only
    token = from_header if from_header is not None else from_query
    return token or None


async def authenticate(handler, verify, *, realm=None, query_argument="access_token"):
    """Check the token of ``handler.request`` with ``verify(token)`` (plain
    or ``async def``; it returns who the token belongs to, or None for a
    token that is wrong or expired) and return what it returned; raise the
    :class:`~wsfast.HTTPError` to answer otherwise (401 with
    ``WWW-Authenticate``, see the module docstring). Call it from
    ``prepare()``."""
    token = bearer_token(handler.request, query_argument, realm)
    if token is None:
        raise _refuse(401, realm)
    user = verify(token)
    if inspect.isawaitable(user):
        user = await user
    if user is None:
        raise _refuse(401, realm, "invalid_token")
    return user


class TokenAuthMixin:
    """Put before the handler class (``class Chat(TokenAuthMixin,
    wsfast.WebSocketHandler)``) and define ``verify_token(token)``: every
    request is checked in ``prepare()``, and ``self.current_user`` is what
    ``verify_token`` returned. ``token_realm`` names the realm in the
    challenge; ``token_query_argument`` (``"access_token"``; None: header
    only) where a browser puts the token. A subclass that overrides
    ``prepare()`` calls ``await super().prepare()`` first."""

    token_realm = None
    token_query_argument = "access_token"
    current_user = None

    async def prepare(self):
        self.current_user = await authenticate(
            self, self.verify_token, realm=self.token_realm,
            query_argument=self.token_query_argument)

    def verify_token(self, token):
        """Return who ``token`` belongs to, or None if it is wrong or
        expired (may be ``async def``). Compare secrets with
        :func:`constant_time_equal`."""
        raise NotImplementedError(f"{type(self).__name__} must define verify_token(token)")


def constant_time_equal(a, b):
    """``a == b`` for two tokens (str or bytes) in a time that does not tell
    how much of them matched."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)
