"""A chat in Tornado's usual style, its WebSocket served by wsfast.tornado.

Templates (``render``, ``render_string``, ``xsrf_form_html``), ``xsrf_cookies``,
``current_user`` from a secure (signed) cookie, ``@authenticated`` on the pages
and on the WebSocket's ``get()``; the WebSocket also checks the XSRF token
(sent in its URL) in ``prepare()``. Only the import of ``WebSocketHandler``
says wsfast. ``python -m tests.tornado_chat.app --port 8888`` runs it.
"""

import os
import uuid

import tornado.escape
import tornado.web

from wsfast.tornado import WebSocketHandler

HERE = os.path.dirname(__file__)


class BaseHandler(tornado.web.RequestHandler):
    def get_current_user(self):
        name = self.get_signed_cookie("user")
        return name.decode("utf-8") if name else None


class LoginHandler(BaseHandler):
    def get(self):
        self.render("login.html", error=None)

    def post(self):  # XSRF-checked by Tornado (xsrf_cookies)
        name = self.get_argument("name", "").strip()
        if not name or len(name) > 32:
            self.render("login.html", error="a name of 1 to 32 characters, please")
            return
        self.set_signed_cookie("user", name, httponly=True, samesite="Strict")
        self.redirect(self.get_argument("next", "/"))


class MainHandler(BaseHandler):
    @tornado.web.authenticated
    def get(self):
        self.render("chat.html", messages=ChatSocket.cache)


class ChatSocket(WebSocketHandler, BaseHandler):
    waiters = set()
    cache = []
    cache_size = 100

    def prepare(self):
        # A WebSocket opens with a GET, which Tornado's xsrf_cookies does not
        # check: the page passes its token in the URL and we check it here.
        self.check_xsrf_cookie()

    @tornado.web.authenticated
    async def get(self, *args, **kwargs):
        await super().get(*args, **kwargs)

    def open(self):
        ChatSocket.waiters.add(self)

    def on_close(self):
        ChatSocket.waiters.discard(self)

    def on_message(self, message):
        parsed = tornado.escape.json_decode(message)
        chat = {"id": uuid.uuid4().hex, "user": self.current_user, "body": str(parsed["body"])}
        chat["html"] = tornado.escape.to_unicode(self.render_string("message.html", message=chat))
        ChatSocket.cache.append(chat)
        del ChatSocket.cache[: -ChatSocket.cache_size]
        for waiter in list(ChatSocket.waiters):
            waiter.write_message(chat)


def make_app(cookie_secret=None):
    return tornado.web.Application(
        [(r"/", MainHandler), (r"/login", LoginHandler), (r"/chatsocket", ChatSocket)],
        cookie_secret=cookie_secret or uuid.uuid4().hex,
        template_path=os.path.join(HERE, "templates"),
        login_url="/login",
        xsrf_cookies=True,
    )


if __name__ == "__main__":
    import asyncio

    import tornado.options

    tornado.options.define("port", default=8888, type=int)
    tornado.options.parse_command_line()

    async def main():
        make_app().listen(tornado.options.options.port)
        await asyncio.Event().wait()

    asyncio.run(main())
