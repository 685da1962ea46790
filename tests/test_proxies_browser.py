"""The chat demo in Chromium through the real proxies of test_proxies.py
(nginx and HAProxy, with the configurations of docs/deploy.md) to wsfast's
chat, which listens on TCP and on a Unix socket: two pages (two browser
contexts, like two people) load the page through the proxy under its path
prefixes, one to the TCP backend (/tcp/), one to the Unix socket (/uds/),
join the same room; one types, the other shows it, and back.

The proxy listens on a port that is not 80: the browser's Origin has it, but
nginx's ``Host $host`` does not, so behind nginx the app is told the
proxy's origin (``trusted_origins``), as a site on a non-default port must
be; HAProxy passes ``Host`` on unchanged and needs nothing.
"""

import pytest
from test_chat_browser import browser, wait_text  # noqa: F401 (the fixture)
from test_proxies import PROXY_IP, HAProxy, proxy  # noqa: F401 (the fixture)

from wsfast.chat import ChatServer

pytestmark = pytest.mark.browser


async def open_chat(browser, url, nick, room):
    context = await browser.new_context(viewport={"width": 900, "height": 600})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto(f"{url}#{room}")
    await page.fill("#nick", nick)
    await page.click("#join-button")
    await page.wait_for_selector("#status.open >> text=connected")
    await page.wait_for_function("document.querySelector('#room-title').textContent.includes('you are')")
    return page


async def test_the_chat_in_chromium_through_the_proxy(browser, proxy):  # noqa: F811
    # ada comes through the proxy to the TCP backend, grace to the Unix
    # socket: one app listens on both, so they share the room.
    chat = ChatServer()
    await chat.start()
    origin = f"http://127.0.0.1:{proxy.port}"
    # nginx's Host $host drops the port the browser's Origin has: the app is
    # told that origin. HAProxy passes Host on as it is: same origin as is.
    trusted = None if isinstance(proxy, HAProxy) else [origin]
    app = chat.application(allowed_hosts=["127.0.0.1"], trusted_origins=trusted,
                           trusted_proxies=[PROXY_IP, "unix"])
    try:
        await app.listen(proxy.backend_port, host="127.0.0.1")
        await app.listen(path=proxy.backend_path)
        ada = await open_chat(browser, f"{origin}/tcp/", "ada", "proxied")
        grace = await open_chat(browser, f"{origin}/uds/", "grace", "proxied")
        await wait_text(ada, "#members", "grace")

        await ada.fill("#text", "hello grace, via tcp")
        await ada.press("#text", "Enter")
        await wait_text(grace, "#log", "hello grace, via tcp")
        last = grace.locator("#log li.msg").last
        assert await last.locator(".nick").text_content() == "ada"
        await grace.fill("#text", "hi ada, via uds")
        await grace.press("#text", "Enter")
        await wait_text(ada, "#log", "hi ada, via uds")

        # the proxy passed each page's address on and the backend believed it
        # on both paths (the browser reaches the proxy from 127.0.0.1)
        assert chat.per_address == {"127.0.0.1": 2}

        await grace.context.close()
        await wait_text(ada, "#log", "grace left")
        await ada.context.close()
    finally:
        await app.stop(timeout=2)
        await chat.close()
