"""wsfast against a real browser: headless Chromium (Debian's ``chromium``)
driven by Playwright loads a page served by an ``Application`` over HTTP; the
page's script does what a browser app does (``new WebSocket("ws://" +
location.host + "/websocket")``, ``onopen`` → ``send``, ``onmessage`` → the
DOM) against a ``WebSocketHandler`` on the same port.

The browser is launched once per module, in a thread of its own (Playwright's
loop); the wsfast server runs in the test's loop, on asyncio and on uvloop,
with both codecs.
"""

import asyncio
import os

import pytest
from interop_helpers import LoopThread, require_codec

import wsfast

pytestmark = [pytest.mark.browser, pytest.mark.run_loop(timeout=30)]  # run: conftest.py's asyncio/uvloop fixture

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsfast browser test</title></head>
<body>
<div id="status">loading</div>
<ul id="log"></ul>
<script>
"use strict";
const logList = document.getElementById("log");
const statusLine = document.getElementById("status");
function show(text) {
  const li = document.createElement("li");
  li.textContent = text;
  logList.appendChild(li);
}
const waiting = [];  // resolvers of roundtrip(), in order
const ws = new WebSocket("ws://" + location.host + "/websocket");
ws.binaryType = "arraybuffer";
window.ws = ws;
window.roundtrip = (data) => new Promise((resolve) => { waiting.push(resolve); ws.send(data); });
ws.onopen = () => {
  statusLine.textContent = "open";
  ws.send("Hello from the browser \\u00e9\\u20ac\\ud83d\\ude00");
};
ws.onmessage = (event) => {
  if (typeof event.data === "string") {
    show(event.data.length > 200 ? "text of " + event.data.length + " characters" : event.data);
  } else {
    show("binary of " + event.data.byteLength + " bytes");
  }
  const resolve = waiting.shift();
  if (resolve) resolve(event.data);
};
ws.onclose = (event) => {
  statusLine.textContent = "closed " + event.code + " " + event.reason + " clean=" + event.wasClean;
};
</script>
</body></html>
"""


def _browser_missing():
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install chromium; ci/test.sh does it)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; ci/test.sh does it)"
    return None


class Browser:
    """Chromium, launched once, driven from a thread with its own loop."""

    def __init__(self):
        from playwright.async_api import async_playwright

        self.thread = LoopThread("asyncio")

        async def launch():
            self.pw = await async_playwright().start()
            self.browser = await self.pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            self.context = await self.browser.new_context()
            # One tab for the whole module, navigated to each test's server
            # (a new tab per test costs a renderer start).
            self.page = await self.context.new_page()

        try:
            self.thread.run(launch(), 30)
        except BaseException:
            self.thread.close()
            raise

    async def do(self, fn, timeout=15):
        """Run ``fn(browser)`` (a coroutine function) in the browser's thread."""
        return await self.thread.arun(fn(self.browser), timeout)

    def close(self):
        async def stop():
            await self.browser.close()
            await self.pw.stop()

        try:
            self.thread.run(stop(), 15)
        finally:
            self.thread.close()


@pytest.fixture(scope="module")
def browser():
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    b = Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(params=["cython", "python"])
def codec(request):
    return require_codec(request.param)


class MainPage(wsfast.RequestHandler):
    def get(self):
        self.write(PAGE)


class EchoSocket(wsfast.WebSocketHandler):
    def initialize(self, closed):
        self.closed = closed

    def on_message(self, message):
        if message == "close me":
            self.close(4001, "server says bye")
        elif type(message) is str:
            self.write_message(message if len(message) > 200 else "You said: " + message)
        else:
            self.write_message(message, binary=True)

    def on_close(self):
        if not self.closed.done():
            self.closed.set_result((self.close_code, self.close_reason))


class page_session:
    """``async with page_session(browser, codec) as (page, closed)``: serve
    the app, open a page on it in the browser; ``page`` is a proxy whose
    methods run in the browser's thread; ``closed`` is the future the
    handler's on_close resolves."""

    def __init__(self, browser, codec):
        self.browser = browser
        self.codec = codec

    async def __aenter__(self):
        self.closed = asyncio.get_running_loop().create_future()
        app = wsfast.Application(
            [(r"/", MainPage), (r"/websocket", EchoSocket, {"closed": self.closed})], codec=self.codec
        )
        self.server = await app.listen(0, host="127.0.0.1")
        url = f"http://127.0.0.1:{self.server.port}/"

        async def open_page(browser):
            page = self.browser.page
            await page.goto(url, timeout=10_000)
            return page

        self.page = await self.browser.do(open_page)
        return _PageProxy(self.browser, self.page), self.closed

    async def __aexit__(self, *exc):
        async def leave_page(browser):
            await self.page.goto("about:blank")

        try:
            await self.browser.do(leave_page)
        finally:
            await self.server.stop(timeout=2)


class _PageProxy:
    def __init__(self, browser, page):
        self._browser = browser
        self._page = page

    async def evaluate(self, script, arg=None):
        return await self._browser.do(lambda _: self._page.evaluate(script, arg))

    async def wait_for_text(self, selector, text, timeout=5000):
        """Wait until the element's text contains ``text``; return its text."""
        script = "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)"

        async def wait(_):
            await self._page.wait_for_function(script, arg=[selector, text], timeout=timeout)
            return await self._page.text_content(selector)

        return await self._browser.do(wait)


GREETING = "Hello from the browser \u00e9\u20ac\U0001f600"


def test_page_talks_to_the_handler(browser, run, codec):
    async def main():
        async with page_session(browser, codec) as (page, _closed):
            # onopen sent the greeting; the reply is shown in the DOM
            log = await page.wait_for_text("#log", "You said: " + GREETING)
            assert log == "You said: " + GREETING
            assert await page.wait_for_text("#status", "open") == "open"

    run(main())


def test_binary_arraybuffer(browser, run, codec):
    async def main():
        async with page_session(browser, codec) as (page, _closed):
            await page.wait_for_text("#log", "You said:")
            echoed = await page.evaluate(
                """async () => {
                    const data = new Uint8Array(256);
                    for (let i = 0; i < 256; i++) data[i] = 255 - i;
                    const reply = await roundtrip(data.buffer);
                    return Array.from(new Uint8Array(reply));
                }"""
            )
            assert echoed == [255 - i for i in range(256)]
            await page.wait_for_text("#log", "binary of 256 bytes")

    run(main())


def test_one_mebibyte(browser, run, codec):
    async def main():
        async with page_session(browser, codec) as (page, _closed):
            await page.wait_for_text("#log", "You said:")
            result = await page.evaluate(
                """async () => {
                    const text = "\\u00e9".repeat(1 << 19);        // 1 MiB of UTF-8
                    const textReply = await roundtrip(text);
                    const bytes = new Uint8Array(1 << 20);
                    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) & 255;
                    const binReply = new Uint8Array(await roundtrip(bytes.buffer));
                    let same = binReply.length === bytes.length;
                    for (let i = 0; same && i < bytes.length; i++) same = binReply[i] === bytes[i];
                    return [textReply === text, textReply.length, same, binReply.length];
                }"""
            )
            assert result == [True, 1 << 19, True, 1 << 20]
            await page.wait_for_text("#log", "binary of 1048576 bytes")

    run(main())


def test_page_closes_with_4000(browser, run, codec):
    async def main():
        async with page_session(browser, codec) as (page, closed):
            await page.wait_for_text("#log", "You said:")
            await page.evaluate("() => ws.close(4000, 'page says bye')")
            assert await asyncio.wait_for(asyncio.shield(closed), 5) == (4000, "page says bye")
            status = await page.wait_for_text("#status", "closed")
            # the page shows the server's reply (the code echoed, RFC 6455 §5.5.1)
            assert status.startswith("closed 4000 ") and status.endswith(" clean=true"), status

    run(main())


def test_server_closes_with_4001(browser, run, codec):
    async def main():
        async with page_session(browser, codec) as (page, closed):
            await page.wait_for_text("#log", "You said:")
            await page.evaluate("() => ws.send('close me')")
            status = await page.wait_for_text("#status", "closed")
            assert status == "closed 4001 server says bye clean=true"
            assert (await asyncio.wait_for(asyncio.shield(closed), 5))[0] == 4001

    run(main())
