"""An app in Tornado's usual style (tests/tornado_chat: templates,
``xsrf_cookies``, ``current_user`` from a secure cookie, ``@authenticated``),
its WebSocket served by wsfast.tornado, driven by two Chromium pages: each
signs in through the XSRF-protected form, one types, the other sees it
(escaped by the template). And what the app refuses: a POST without the
XSRF token, a WebSocket without the session cookie, with a forged cookie,
or without the token."""

import os
import socket

import pytest

pytest.importorskip("tornado")

import tornado.escape  # noqa: E402
import tornado.httpclient  # noqa: E402
import tornado.httpserver  # noqa: E402

import wsfast.tornado as wt  # noqa: E402
from tornado_chat.app import ChatSocket, make_app  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture
async def chat_server():
    ChatSocket.cache.clear()
    server = tornado.httpserver.HTTPServer(make_app())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    server.add_sockets([sock])
    try:
        yield sock.getsockname()[1]
    finally:
        server.stop()
        for waiter in list(ChatSocket.waiters):
            waiter.close()


@pytest.fixture
async def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; ci/test.sh does it)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def sign_in(browser, port, name):
    context = await browser.new_context()
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"http://127.0.0.1:{port}/")  # @authenticated: to the login page
    assert "/login" in page.url
    await page.fill("#name", name)
    await page.click("#sign-in")
    await page.wait_for_selector("#status >> text=open")
    assert await page.text_content("#me") == name
    return page


async def test_two_pages_chat(browser, chat_server):
    port = chat_server
    ada = await sign_in(browser, port, "ada")
    grace = await sign_in(browser, port, "grace")
    await ada.fill("#message", "hello <i>grace</i>")
    await ada.press("#message", "Enter")
    line = grace.locator("#inbox .message").last
    await line.wait_for()
    assert await line.locator(".user").text_content() == "ada"
    assert await line.locator(".body").text_content() == "hello <i>grace</i>"  # text, not HTML
    assert await grace.locator("#inbox i").count() == 0
    await grace.fill("#message", "hi ada")
    await grace.press("#message", "Enter")
    await ada.wait_for_function(
        "document.querySelector('#inbox').textContent.includes('grace: hi ada')")
    # A page loaded now shows the history, rendered by the template.
    late = await sign_in(browser, port, "linus")
    assert await late.locator("#inbox .message").count() == 2


async def test_what_the_app_refuses(chat_server):
    port = chat_server
    client = tornado.httpclient.AsyncHTTPClient()
    base = f"http://127.0.0.1:{port}"
    # The login form is XSRF-protected (Tornado's xsrf_cookies).
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await client.fetch(base + "/login", method="POST", body="name=mallory")
    assert refused.value.code == 403
    # Sign in properly: the form's token and its cookie.
    page = await client.fetch(base + "/login")
    xsrf_cookie = page.headers["Set-Cookie"].split(";")[0]
    token = xsrf_cookie.split("=", 1)[1]
    signed = await client.fetch(base + "/login", method="POST", body=f"name=ada&_xsrf={token}",
                                headers={"Cookie": xsrf_cookie}, follow_redirects=False,
                                raise_error=False)
    assert signed.code == 302
    user_cookie = [c for c in signed.headers.get_list("Set-Cookie") if c.startswith("user=")][0]
    session = user_cookie.split(";")[0] + "; " + xsrf_cookie
    url = f"ws://127.0.0.1:{port}/chatsocket?_xsrf={token}"

    def request(cookie):
        return tornado.httpclient.HTTPRequest(url, headers={"Cookie": cookie} if cookie else {})

    # No session: @authenticated on get() refuses before any upgrade.
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await wt.websocket_connect(request(xsrf_cookie))
    assert refused.value.code == 302
    # A forged (unsigned) user cookie is not a session.
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await wt.websocket_connect(request("user=mallory; " + xsrf_cookie))
    assert refused.value.code == 302
    # A session without the XSRF token in the URL: prepare() refuses (403).
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await wt.websocket_connect(tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{port}/chatsocket", headers={"Cookie": session}))
    assert refused.value.code == 403
    # With both: in, and the server knows who we are.
    ws = await wt.websocket_connect(request(session))
    ws.write_message('{"body": "hi"}')
    chat = tornado.escape.json_decode(await ws.read_message())
    assert (chat["user"], chat["body"]) == ("ada", "hi")
    ws.close()
