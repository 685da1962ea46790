"""The chat page in a real browser: headless Chromium (Debian's
``chromium``) driven by Playwright, two pages (two browser contexts, like
two people) on ``python -m wsfast chat`` started here. One types, the other
shows it; user text is shown as text, never parsed as HTML; when the server
restarts, the page reconnects by itself (backoff) and joins its room again.
"""

import asyncio
import os

import pytest
from chat_helpers import ChatProcess

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
    # the server is gone (SIGTERM: close 1001): the page says so and retries
    await wait_text(ada, "#status", "reconnecting in")
    assert "1001" in await ada.text_content("#status")
    with ChatProcess(port=server.port):
        await ada.wait_for_selector("#status.open >> text=#ops", timeout=15_000)
        await ada.fill("#text", "after the restart")
        await ada.press("#text", "Enter")
        await wait_text(ada, "#log", "after the restart")
        assert "you are ada" in await ada.text_content("#room-title")
    await asyncio.sleep(0)
