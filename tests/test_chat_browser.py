"""The chat page in a real browser: headless Chromium (Debian's
``chromium``) driven by Playwright, two pages (two browser contexts, like
two people) on ``python -m wsfast chat`` started here. One types, the other
shows it; user text is shown as text, never parsed as HTML; when the server
restarts, the page reconnects by itself (backoff) and joins its room again.
"""

import asyncio
import os

import pytest
from chat_helpers import ChatClient, ChatProcess, RedisServer, require_redis

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture
async def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; ci/test.sh does it)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; ci/test.sh does it)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def open_chat(browser, port, nick, room="lobby"):
    context = await browser.new_context(viewport={"width": 900, "height": 600})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"http://127.0.0.1:{port}/#{room}")
    await page.fill("#nick", nick)
    await page.click("#join-button")
    await page.wait_for_selector("#status.open >> text=connected")
    await page.wait_for_function("document.querySelector('#room-title').textContent.includes('you are')")
    return page


async def wait_text(page, selector, text):
    await page.wait_for_function(
        "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
        arg=[selector, text])


async def test_one_page_types_the_other_shows_it(browser):
    with ChatProcess() as server:
        ada = await open_chat(browser, server.port, "ada")
        grace = await open_chat(browser, server.port, "grace")
        await wait_text(ada, "#members", "grace")  # presence

        await ada.fill("#text", "hello grace")
        await ada.press("#text", "Enter")
        await wait_text(grace, "#log", "hello grace")
        last = grace.locator("#log li.msg").last
        assert await last.locator(".nick").text_content() == "ada"
        assert await last.locator(".text").text_content() == "hello grace"

        # HTML in a message is text: no element is made, no script runs
        evil = '<img src=x onerror="window.pwned=1"><b>bold?</b>'
        await grace.fill("#text", evil)
        await grace.press("#text", "Enter")
        await wait_text(ada, "#log", "bold?")
        assert await ada.locator("#log li.msg .text").last.text_content() == evil
        assert await ada.locator("#log img, #log b").count() == 0
        assert await ada.evaluate("window.pwned === undefined")

        await grace.close()
        await wait_text(ada, "#log", "grace left")


async def test_page_reconnects_when_the_server_restarts(browser):
    server = ChatProcess()
    with server:
        ada = await open_chat(browser, server.port, "ada", "ops")
        await ada.fill("#text", "before the restart")
        await ada.press("#text", "Enter")
        await wait_text(ada, "#log", "before the restart")
    # the server is gone (SIGTERM: close 1001): the page says so and retries;
    # the retries fail with 1006, and the status still shows why the server
    # closed, not just the retries' 1006
    await wait_text(ada, "#status", "reconnecting in")
    assert "1001: server shutting down" in await ada.text_content("#status")
    await wait_text(ada, "#status", "retry: code 1006")
    assert "1001: server shutting down" in await ada.text_content("#status")
    # who is here is unknown while disconnected: the list is emptied and says so
    assert await ada.locator("#members li").count() == 0
    assert "disconnected" in await ada.text_content("#count")
    # what was said stays on the page
    assert "before the restart" in await ada.text_content("#log")
    with ChatProcess(port=server.port):
        await ada.wait_for_selector("#status.open >> text=#ops", timeout=15_000)
        await ada.fill("#text", "after the restart")
        await ada.press("#text", "Enter")
        await wait_text(ada, "#log", "after the restart")
        assert "you are ada" in await ada.text_content("#room-title")
        # the conversation before the restart was kept (the new in-process server has no history)
        assert "before the restart" in await ada.text_content("#log")
        await wait_text(ada, "#members", "ada")
    await asyncio.sleep(0)


async def messages(page):
    return await page.locator("#log li.msg .text").all_text_contents()


async def test_reconnect_merges_history_without_wiping_or_repeating(browser):
    """Two workers share rooms through Redis. Ada's worker restarts; what
    grace says on the other worker meanwhile reaches ada from the room's
    history when she is back, in its place, and nothing shows twice."""
    require_redis()
    with RedisServer() as redis:
        other = ChatProcess("--redis", redis.url)
        with other:
            grace = await ChatClient.join(other.port, "grace", "ops")
            first = ChatProcess("--redis", redis.url)
            with first:
                ada = await open_chat(browser, first.port, "ada", "ops")
                await grace.say("one")
                await wait_text(ada, "#log", "one")
                await ada.fill("#text", "two")
                await ada.press("#text", "Enter")
                await wait_text(ada, "#log", "two")
            await wait_text(ada, "#status", "reconnecting in")
            await grace.say("three, while ada is away")
            while (await grace.next("msg"))["text"] != "three, while ada is away":
                pass  # back from Redis: published, and in the room's history
            with ChatProcess("--redis", redis.url, port=first.port):
                await ada.wait_for_selector("#status.open >> text=#ops", timeout=15_000)
                await wait_text(ada, "#log", "three, while ada is away")
                await grace.say("four")
                await wait_text(ada, "#log", "four")
                assert await messages(ada) == ["one", "two", "three, while ada is away", "four"]
                await wait_text(ada, "#members", "ada")  # "Here" is filled again
            await grace.close()
