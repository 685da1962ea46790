"""Token auth at the WebSocket handshake: an example app (docs/auth.md).

Tokens are issued by ``POST /token`` (a stand-in for your login or OAuth
server) and expire after ``TOKEN_LIFETIME`` seconds. ``/ws`` accepts a
token in ``Authorization: Bearer ...`` (programs) or ``?access_token=...``
(browsers), greets its owner and echoes; anything else gets a 401 with
``WWW-Authenticate`` and no detail. Serve it over TLS in production: a
token is a password for as long as it lives.

    python examples/token_auth.py --port 8888 [--certfile cert.pem --keyfile key.pem]
"""

import argparse
import secrets
import ssl
import time

import wsfast
from wsfast.auth import TokenAuthMixin

TOKEN_LIFETIME = 3600.0


class TokenStore:
    """Tokens in memory: token -> (user, expiry). Use your database."""

    def __init__(self, lifetime=TOKEN_LIFETIME):
        self.lifetime = lifetime
        self.tokens = {}

    def issue(self, user):
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (user, time.monotonic() + self.lifetime)
        return token

    def owner(self, token):
        """The user of ``token``, or None if it is unknown or expired."""
        entry = self.tokens.get(token)
        if entry is None:
            return None
        user, expires = entry
        if time.monotonic() >= expires:
            del self.tokens[token]
            return None
        return user


class IssueToken(wsfast.RequestHandler):
    """POST /token with user=NAME: a token for NAME (no password: a demo)."""

    def initialize(self, store):
        self.store = store

    def post(self):
        user = self.get_body_argument("user")
        self.write({"access_token": self.store.issue(user), "token_type": "Bearer",
                    "expires_in": int(self.store.lifetime)})


class Echo(TokenAuthMixin, wsfast.WebSocketHandler):
    token_realm = "example"

    def initialize(self, store):
        self.store = store

    def verify_token(self, token):
        return self.store.owner(token)  # None: wrong or expired -> 401

    def open(self):
        self.write_message(f"hello {self.current_user}")

    def on_message(self, message):
        self.write_message(message)


def make_app(store=None, **settings):
    store = store or TokenStore()
    return wsfast.Application([
        (r"/token", IssueToken, {"store": store}),
        (r"/ws", Echo, {"store": store}),
    ], **settings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    wsfast.run(make_app(), host=args.host, port=args.port, ssl=context)


if __name__ == "__main__":
    main()
