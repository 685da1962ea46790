"""permessage-deflate with a real browser: headless Chromium (Debian's
``chromium``, driven by Playwright) loads a page from an ``Application`` with
compression on; the page's WebSocket (Chromium offers ``permessage-deflate;
client_max_window_bits``) echoes text, binary and a large compressible
message through a ``WebSocketHandler``, and the server side checks that the
extension was negotiated and that compressed frames went both ways.

The browser launch and page helpers are tests/test_browser.py's.
"""


import pytest
from test_browser import _PageProxy, browser, codec  # noqa: F401 (fixtures shared with test_browser)

import wsfast

pytestmark = [pytest.mark.browser, pytest.mark.run_loop(timeout=40)]  # run: conftest.py's asyncio/uvloop fixture

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsfast deflate test</title></head>
<body><div id="status">loading</div>
<script>
"use strict";
const waiting = [];
const ws = new WebSocket("ws://" + location.host + "/websocket");
ws.binaryType = "arraybuffer";
window.ws = ws;
window.roundtrip = (data) => new Promise((resolve) => { waiting.push(resolve); ws.send(data); });
ws.onopen = () => { document.getElementById("status").textContent = "open"; };
ws.onmessage = (event) => { const r = waiting.shift(); if (r) r(event.data); };
ws.onclose = (e) => { document.getElementById("status").textContent = "closed " + e.code; };
</script></body></html>
"""


class MainPage(wsfast.RequestHandler):
    def get(self):
        self.write(PAGE)


class DeflateEcho(wsfast.WebSocketHandler):
    """Echoes; records the offer, the negotiated extension and how many
    compressed frames went each way."""

    def initialize(self, record):
        self.record = record

    def open(self):
        record = self.record
        record["offer"] = self.request.headers.get("Sec-WebSocket-Extensions")
        record["extensions"] = list(self.ws_connection.connection.extensions)
        record["sent"] = record["received"] = 0
        if record["extensions"]:
            ext = record["extensions"][0]
            encode, decode = ext.encode, ext.decode

            def counting_encode(frame, *args, **kwargs):
                out = encode(frame, *args, **kwargs)
                record["sent"] += out.rsv1
                return out

            def counting_decode(frame, *, max_size):
                record["received"] += frame.rsv1
                return decode(frame, max_size=max_size)

            ext.encode = counting_encode
            ext.decode = counting_decode

    def on_message(self, message):
        self.write_message(message, binary=type(message) is bytes)


def test_chromium_negotiates_and_round_trips(browser, run, codec):
    async def main():
        record = {}
        app = wsfast.Application(
            [(r"/", MainPage), (r"/websocket", DeflateEcho, {"record": record})],
            websocket_compression="deflate",
            codec=codec,
        )
        server = await app.listen(0, host="127.0.0.1")
        url = f"http://127.0.0.1:{server.port}/"

        async def open_page(_):
            page = browser.page
            await page.goto(url, timeout=10_000)
            await page.wait_for_function("document.getElementById('status').textContent === 'open'",
                                         timeout=5000)
            return page

        page = None
        try:
            page = _PageProxy(browser, await browser.do(open_page))
            result = await page.evaluate(
                """async () => {
                    const small = "hi \\u00e9";
                    const smallReply = await roundtrip(small);
                    const rows = [];
                    for (let i = 0; i < 12000; i++)
                        rows.push({id: i, user: "user" + (i % 97), text: "message number " + i});
                    const big = JSON.stringify(rows);            // ~600 KB, compressible
                    const bigReply = await roundtrip(big);
                    const bytes = new Uint8Array(300000);
                    for (let i = 0; i < bytes.length; i++) bytes[i] = (i % 251) ^ ((i >> 12) & 7);
                    const binReply = new Uint8Array(await roundtrip(bytes.buffer));
                    let same = binReply.length === bytes.length;
                    for (let i = 0; same && i < bytes.length; i++) same = binReply[i] === bytes[i];
                    const texts = [];
                    for (let i = 0; i < 50; i++) {
                        const t = JSON.stringify({n: i, pad: "abc".repeat(i * 10)});
                        texts.push((await roundtrip(t)) === t);
                    }
                    return [smallReply === small, bigReply === big, big.length, same,
                            texts.every((x) => x), ws.extensions];
                }"""
            )
            small_ok, big_ok, big_len, bin_ok, texts_ok, browser_extensions = result
            assert small_ok and big_ok and bin_ok and texts_ok
            assert big_len > 500_000
            # what Chromium offered, and that both sides agree on the answer
            assert record["offer"] == "permessage-deflate; client_max_window_bits"
            (ext,) = record["extensions"]
            assert ext.local_max_window_bits == 12 and ext.remote_max_window_bits == 12
            assert browser_extensions == (
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
            )
            # compressed frames both ways (Chromium compresses what it sends;
            # we compress what reaches the threshold)
            assert record["received"] >= 40
            assert record["sent"] >= 40
        finally:
            if page is not None:
                await browser.do(lambda _: browser.page.goto("about:blank"))
            await server.stop(timeout=2)

    run(main())


def test_chromium_without_server_compression(browser, run, codec):
    """The same page against a server without compression: Chromium's offer
    is declined and the connection works uncompressed."""

    async def main():
        record = {}
        app = wsfast.Application(
            [(r"/", MainPage), (r"/websocket", DeflateEcho, {"record": record})], codec=codec
        )
        server = await app.listen(0, host="127.0.0.1")
        url = f"http://127.0.0.1:{server.port}/"

        async def go(_):
            page = browser.page
            await page.goto(url, timeout=10_000)
            await page.wait_for_function("document.getElementById('status').textContent === 'open'",
                                         timeout=5000)
            reply = await page.evaluate("async () => [await roundtrip('x'.repeat(5000)), ws.extensions]")
            await page.goto("about:blank")
            return reply

        try:
            reply, extensions = await browser.do(go)
            assert reply == "x" * 5000 and extensions == ""
            assert record["offer"] == "permessage-deflate; client_max_window_bits"
            assert record["extensions"] == []
        finally:
            await server.stop(timeout=2)

    run(main())
