"""The chat in Chromium over https/wss with a certificate made here, and a
second page that tries an existing nick in another spelling (issues 11, 15)."""


import pytest
from chat_helpers import ChatProcess
from test_chat_browser import browser, wait_text  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser


async def open_chat_https(browser, port, nick, room="lobby", joined=True):
    # The certificate is self-signed: this context accepts it, for the page
    # and for its wss:// connection alike.
    context = await browser.new_context(ignore_https_errors=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"https://127.0.0.1:{port}/#{room}")
    await page.fill("#nick", nick)
    await page.click("#join-button")
    if joined:
        await page.wait_for_function(
            "document.querySelector('#room-title').textContent.includes('you are')")
    return page


async def test_chromium_chats_over_https_and_wss_and_cannot_pose_as_another(browser, certificate):  # noqa: F811
    cert, key = certificate
    with ChatProcess("--certfile", cert, "--keyfile", key) as server:
        ada = await open_chat_https(browser, server.port, "ada")
        assert await ada.evaluate("location.protocol") == "https:"
        grace = await open_chat_https(browser, server.port, "grace")
        await wait_text(ada, "#members", "grace")
        await grace.fill("#text", "over wss")
        await grace.press("#text", "Enter")
        await wait_text(ada, "#log", "over wss")
        # "ADA" in full-width letters: the same nick, refused, and ada's page
        # shows no join from an impostor
        mallory = await open_chat_https(browser, server.port, "\uff21\uff24\uff21", joined=False)
        await wait_text(mallory, "#log", "taken")
        await mallory.fill("#nick", "mallory")
        await mallory.click("#join-button")
        await wait_text(ada, "#members", "mallory")
        members = await ada.text_content("#members")
        assert members.count("ada") == 1 and "\uff21" not in members
