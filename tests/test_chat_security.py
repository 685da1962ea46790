"""The chat against hostile users (issue 11): nicks that look alike, too
many connections from one address, and what /status tells strangers."""

import asyncio
import json
import os
import socket

import pytest
from chat_helpers import ChatClient
from test_chat import closed_with, serve_chat

import wsfast
from wsfast import chat as _chat

LOOKALIKES = ["alice", "ALICE", "Alice", "\u0430lice", "\uff41\uff4c\uff49\uff43\uff45",
              "al\u0456ce", "aIice", "a1ice", "\u0391LICE"]


@pytest.fixture(params=["icu", "builtin"])
def skeleton(request, monkeypatch):
    """nick_keys with PyICU's UTS #39 skeleton, and with the built-in table."""
    if request.param == "icu":
        if _chat._SPOOF is None:
            pytest.skip("PyICU is not installed (pip install pyicu; needs libicu-dev)")
    else:
        monkeypatch.setattr(_chat, "_SPOOF", None)
    return request.param


def meet(a, b):
    return not _chat.nick_keys(a).isdisjoint(_chat.nick_keys(b))


def test_lookalike_nicks_meet(skeleton):
    for nick in LOOKALIKES:
        assert meet(nick, "alice"), (nick, _chat.nick_keys(nick), _chat.nick_keys("alice"))
    for a, b in [("rnax", "max"), ("paypal", "\u0440\u0430\u0443\u0440\u0430l"), ("ｂｏｂ", "Bob")]:
        assert meet(a, b), (a, b)
    for other in ("bob", "alina", "alic", "alice2", "al ice"):
        assert not meet(other, "alice"), other


async def join_raw(port, nick, room="lobby", claim=None):
    """Connect and join; return (ws, first answer: a welcome or an error)."""
    ws = await wsfast.connect(f"ws://127.0.0.1:{port}/chat")
    message = {"type": "join", "nick": nick, "room": room}
    if claim is not None:
        message["claim"] = claim
    await ws.send(json.dumps(message))
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if event["type"] in ("welcome", "error"):
            return ws, event


async def test_a_nick_is_unique_per_room_whatever_it_looks_like():
    async with serve_chat() as port:
        alice = await ChatClient.join(port, "alice")
        for nick in LOOKALIKES:
            ws, answer = await join_raw(port, nick)
            assert answer["type"] == "error" and "taken" in answer["error"], (nick, answer)
            await ws.send(json.dumps({"type": "msg", "text": "hi"}))  # not in a room: refused
            assert (await closed_with(ws))[0] == 1008
        # the same nick in another room is fine, and alice saw no impostor
        ws, answer = await join_raw(port, "ALICE", "other")
        assert answer["type"] == "welcome"
        await alice.quiet(0.2, kind="join")
        # an impostor who joined elsewhere cannot move into alice's room either
        await ws.send(json.dumps({"type": "join", "nick": "ALICE", "room": "lobby"}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer["type"] == "error" and "taken" in answer["error"]
        await ws.close()
        # once alice leaves, the nick is free again
        await alice.ws.close()
        await asyncio.sleep(0.1)
        ws, answer = await join_raw(port, "\u0430lice")
        assert answer["type"] == "welcome"
        await ws.close()


async def test_the_same_page_takes_its_nick_back_after_a_reconnect():
    claim = os.urandom(16).hex()
    async with serve_chat() as port:
        watcher = await ChatClient.join(port, "watcher")
        old, answer = await join_raw(port, "ada", claim=claim)
        assert answer["type"] == "welcome"
        # another page (another claim, or none) cannot take it
        for other in (None, os.urandom(16).hex()):
            ws, answer = await join_raw(port, "ada", claim=other)
            assert answer["type"] == "error"
            await ws.close()
        # the same page, reconnected while its old connection still looks open
        new, answer = await join_raw(port, "ada", claim=claim)
        assert answer["type"] == "welcome" and answer["members"].count("ada") == 1
        assert (await closed_with(old))[0] == 4000
        await new.send(json.dumps({"type": "msg", "text": "back"}))
        msg = await watcher.next("msg")
        assert (msg["nick"], msg["text"]) == ("ada", "back")
        await new.close()
        await watcher.ws.close()


@pytest.mark.parametrize("claim", [1, "short", "x" * 129])
async def test_a_bad_claim_is_an_error(claim):
    async with serve_chat() as port:
        ws, answer = await join_raw(port, "ada", claim=claim)
        assert answer["type"] == "error" and "claim" in answer["error"]
        await ws.close()


async def test_connections_per_address_are_limited():
    async with serve_chat(max_per_address=3) as port:
        clients = [await ChatClient.join(port, f"user{i}") for i in range(3)]
        with pytest.raises(wsfast.HandshakeError) as info:
            await wsfast.connect(f"ws://127.0.0.1:{port}/chat")
        assert info.value.status == 429
        # the page is still served to that address
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
        await clients.pop().ws.close()
        await asyncio.sleep(0.1)
        again = await ChatClient.join(port, "again")
        for client in clients + [again]:
            await client.ws.close()


async def test_status_and_events_do_not_show_the_host_name_or_pid():
    async with serve_chat() as port:
        ada = await ChatClient.join(port, "ada")
        await ada.say("hello")
        event = await ada.next("msg")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = (await asyncio.wait_for(reader.read(), 5)).decode()
        writer.close()
        seen = status + json.dumps(ada.welcome) + json.dumps(event)
        assert socket.gethostname() not in seen
        assert str(os.getpid()) not in seen.replace(event["id"], "")  # ids are counters
        assert ada.welcome["worker"] == event["id"].split("/")[0]
        await ada.ws.close()
