"""wsfast.asgi with a real browser: headless Chromium (Playwright) against
FastAPI apps under uvicorn with WSFastProtocol. Chromium offers
permessage-deflate, which uvicorn's default settings accept, so wsfast's
deflate is in the loop too. The app runs in the test's loop (asyncio and
uvloop), with both codecs."""

import asyncio
import contextlib

import pytest
from interop_helpers import require_codec
from test_asgi import serve
from test_browser import PAGE, Browser, _browser_missing, _PageProxy

pytest.importorskip("fastapi")
websockets = pytest.importorskip("websockets")

from fastapi import FastAPI, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.responses import HTMLResponse  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from wsfast.asgi import WSFastProtocol  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.run_loop(timeout=30)]  # run: conftest.py's asyncio/uvloop fixture


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
def protocol_cls(request):
    codec = require_codec(request.param)
    return type(f"WSFast_{request.param}", (WSFastProtocol,), {"codec": codec, "__slots__": ()})


def _echo_app(closed):
    app = FastAPI()

    @app.get("/")
    async def page():
        return HTMLResponse(PAGE)

    @app.websocket("/websocket")
    async def echo(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message["code"], message.get("reason"))
                text = message.get("text")
                if text == "close me":
                    await websocket.close(4001, "server says bye")
                    closed.set_result(("server", 4001))
                    return
                if text is not None:
                    await websocket.send_text(text if len(text) > 200 else "You said: " + text)
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:
            closed.set_result(("client", exc.code, exc.reason))

    @app.websocket("/api")
    async def api(websocket: WebSocket):
        await websocket.accept(subprotocol="v1")
        obj = await websocket.receive_json()
        await websocket.send_json({"echo": obj, "n": len(obj["items"])})
        data = await websocket.receive_bytes()
        await websocket.send_bytes(bytes(reversed(data)))
        words = []
        async for text in websocket.iter_text():
            if text == "end":
                break
            words.append(text)
        await websocket.send_text(" ".join(words))
        await websocket.close(4002, "api done")
        closed.set_result(("api", words))

    return app


@contextlib.asynccontextmanager
async def page_on(browser, app, protocol_cls, path="/"):
    async with serve(app, protocol_cls) as (server, port):
        url = f"http://127.0.0.1:{port}{path}"

        async def open_page(_):
            await browser.page.goto(url, timeout=10_000)
            return browser.page

        page = await browser.do(open_page)
        try:
            yield _PageProxy(browser, page), port
        finally:
            await browser.do(lambda _: page.goto("about:blank"))


def test_fastapi_echo_in_chromium(browser, run, protocol_cls):
    async def main():
        closed = asyncio.get_running_loop().create_future()
        async with page_on(browser, _echo_app(closed), protocol_cls) as (page, _):
            greeting = "Hello from the browser \u00e9\u20ac\U0001f600"
            assert await page.wait_for_text("#log", "You said: " + greeting)
            echoed = await page.evaluate(
                """async () => {
                    const data = new Uint8Array(70000);
                    for (let i = 0; i < data.length; i++) data[i] = i % 251;
                    const reply = new Uint8Array(await roundtrip(data.buffer));
                    const text = "\\u00e9".repeat(1 << 19);        // 1 MiB of UTF-8
                    const textReply = await roundtrip(text);
                    return [reply.length, reply.every((b, i) => b === i % 251), textReply === text];
                }"""
            )
            assert echoed == [70000, True, True]
            await page.evaluate("() => ws.close(4000, 'tab closes')")
            assert await asyncio.wait_for(closed, 5) == ("client", 4000, "tab closes")

    run(main())


def test_server_close_seen_by_chromium(browser, run, protocol_cls):
    async def main():
        closed = asyncio.get_running_loop().create_future()
        async with page_on(browser, _echo_app(closed), protocol_cls) as (page, _):
            await page.wait_for_text("#log", "You said:")
            await page.evaluate("() => ws.send('close me')")
            status = await page.wait_for_text("#status", "closed")
            assert status == "closed 4001 server says bye clean=true"
            assert await asyncio.wait_for(closed, 5) == ("server", 4001)

    run(main())


def test_example_chat_in_chromium(browser, run, protocol_cls):
    from asgi_chat_app import app

    async def main():
        async with page_on(browser, app, protocol_cls, "/?room=r1&name=ann") as (page, port):
            await page.wait_for_text("#log", "* ann joined")
            async with connect(f"ws://127.0.0.1:{port}/ws/r1?name=bob") as bob:
                assert await bob.recv() == "* bob joined"
                await page.wait_for_text("#log", "* bob joined")
                await page.evaluate(
                    """() => { document.getElementById('text').value = 'hello from chromium';
                               document.querySelector('#form button').click(); }"""
                )
                assert await bob.recv() == "ann: hello from chromium"
                await bob.send("hi ann")
                assert await bob.recv() == "bob: hi ann"
                await page.wait_for_text("#log", "bob: hi ann")
                await page.evaluate("() => ws.close()")
                assert await bob.recv() == "* ann left"

    run(main())


def test_fastapi_json_bytes_iter_text_in_chromium(browser, run, protocol_cls):
    """FastAPI's receive_json/send_json, receive_bytes/send_bytes, iter_text
    and close(code, reason), seen by Chromium's WebSocket."""

    async def main():
        closed = asyncio.get_running_loop().create_future()
        async with page_on(browser, _echo_app(closed), protocol_cls) as (page, _):
            await page.wait_for_text("#log", "You said:")
            result = await page.evaluate(
                """() => new Promise((resolve) => {
                    const ws = new WebSocket("ws://" + location.host + "/api", ["v1"]);
                    ws.binaryType = "arraybuffer";
                    const got = [];
                    ws.onopen = () => ws.send(JSON.stringify({items: [1, 2, 3], s: "\u00e9"}));
                    ws.onmessage = (e) => {
                        got.push(typeof e.data === "string" ? e.data : Array.from(new Uint8Array(e.data)));
                        if (got.length === 1) ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
                        if (got.length === 2) { ["a", "b", "c", "end"].forEach((w) => ws.send(w)); }
                    };
                    ws.onclose = (e) => resolve({protocol: ws.protocol, got, code: e.code, reason: e.reason,
                                                 clean: e.wasClean});
                })"""
            )
            assert result == {
                "protocol": "v1",
                "got": ['{"echo":{"items":[1,2,3],"s":"\u00e9"},"n":3}', [250, 3, 2, 1], "a b c"],
                "code": 4002, "reason": "api done", "clean": True,
            }
            assert await asyncio.wait_for(closed, 5) == ("api", ["a", "b", "c"])

    run(main())
