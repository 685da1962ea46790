"""The chat (wsfast.chat, ``python -m wsfast chat``): the JSON protocol,
validation and close codes against an in-process server; then the real
command: two worker processes on one port (SO_REUSEPORT) sharing rooms
through a redis-server started here, with Redis stopped and restarted
while clients on both workers keep chatting.
"""

import asyncio
import json
import subprocess
import sys

import pytest
from chat_helpers import ROOT, ChatClient, ChatProcess, RedisServer, require_redis

import wsfast
from wsfast import chat as _chat


class serve_chat:
    """``async with serve_chat(**ChatServer kwargs) as port``: an in-process chat."""

    def __init__(self, **kwargs):
        self.chat = _chat.ChatServer(**kwargs)

    async def __aenter__(self):
        await self.chat.start()
        self.app = self.chat.application()
        return (await self.app.listen(0, host="127.0.0.1")).port

    async def __aexit__(self, *exc):
        await self.app.stop(2)
        await self.chat.close()


@pytest.fixture
async def port():
    async with serve_chat() as port:
        yield port


async def closed_with(ws, timeout=5):
    """Read until the server closes; return (code, reason)."""
    async def drain():
        try:
            while True:
                await ws.recv()
        except wsfast.ConnectionClosed as exc:
            return exc.code, exc.reason
    return await asyncio.wait_for(drain(), timeout)


# -- the protocol ------------------------------------------------------------------


async def test_two_people_chat(port):
    ada = await ChatClient.join(port, "ada")
    assert ada.welcome["room"] == "lobby" and ada.welcome["members"] == ["ada"]
    grace = await ChatClient.join(port, "grace")
    assert grace.welcome["members"] == ["ada", "grace"]
    assert [e["type"] for e in grace.welcome["history"]] == ["join", "join"]
    joined = await ada.next()
    assert (joined["type"], joined["nick"]) == ("join", "grace")

    await ada.say("hello <b>grace</b> & \u00e9\U0001f600")  # HTML is text: the page escapes it
    for who in (ada, grace):
        msg = await who.next("msg")
        assert (msg["nick"], msg["text"], msg["room"]) == ("ada", "hello <b>grace</b> & \u00e9\U0001f600", "lobby")
    await grace.close()
    left = await ada.next()
    assert (left["type"], left["nick"]) == ("leave", "grace")
    await ada.close()


async def test_rooms_are_separate_and_switching_works(port):
    ada = await ChatClient.join(port, "ada", "one")
    bob = await ChatClient.join(port, "bob", "two")
    await bob.say("in two")
    assert await bob.texts(1) == ["in two"]
    await ada.quiet(0.1)
    # ada moves to "two": a new welcome with that room's history
    await ada.ws.send(json.dumps({"type": "join", "nick": "ada", "room": "two"}))
    welcome = await ada.next("welcome")
    assert welcome["room"] == "two"
    assert [e.get("text") for e in welcome["history"] if e["type"] == "msg"] == ["in two"]
    assert welcome["members"] == ["ada", "bob"]
    await ada.close()
    await bob.close()


async def test_history_is_bounded():
    async with serve_chat(rate=1000, burst=1000) as port:
        ada = await ChatClient.join(port, "ada")
        for i in range(_chat.HISTORY + 5):
            await ada.say(f"m{i}")
        assert len(await ada.texts(_chat.HISTORY + 5)) == _chat.HISTORY + 5
        late = await ChatClient.join(port, "late")
        history = late.welcome["history"]
        assert len(history) == _chat.HISTORY
        assert history[-1]["type"] == "join" and history[-2]["text"] == f"m{_chat.HISTORY + 4}"
        assert history[0]["text"] == "m6"
        await ada.close()
        await late.close()


@pytest.mark.parametrize("nick", ["", " ", "x" * 25, "<script>", "a\nb", "two  spaces", 7])
async def test_bad_nick_is_an_error_not_a_close(port, nick):
    ws = await wsfast.connect(f"ws://127.0.0.1:{port}/chat")
    await ws.send(json.dumps({"type": "join", "nick": nick, "room": "lobby"}))
    event = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert event["type"] == "error" and "nick" in event["error"]
    await ws.send(json.dumps({"type": "join", "nick": "fine", "room": "lobby"}))
    # its own join event comes first (delivered when published), then the welcome
    assert (await ChatClient(ws).next("welcome"))["nick"] == "fine"
    await ws.close()


async def test_bad_room_and_text_are_errors(port):
    ada = await ChatClient.join(port, "ada")
    await ada.ws.send(json.dumps({"type": "join", "nick": "ada", "room": "no spaces"}))
    assert "room" in (await ada.next("error"))["error"]
    await ada.say("   ")
    assert (await ada.next("error"))["error"] == "empty message"
    await ada.say("x" * (_chat.MAX_TEXT + 1))
    assert "at most" in (await ada.next("error"))["error"]
    await ada.say("still here")
    assert await ada.texts(1) == ["still here"]
    await ada.close()


@pytest.mark.parametrize(
    "send, code, reason",
    [
        (b"\x00binary", 1003, "text messages only"),
        ("not json", 1008, "not JSON"),
        ("[1, 2]", 1008, "not a JSON object"),
        ('{"type": "shout"}', 1008, "unknown message type"),
        ('{"type": "msg", "text": "hi"}', 1008, "join a room first"),
        ("x" * (_chat.MAX_MESSAGE_SIZE + 1), 1009, None),
    ],
)
async def test_misbehaving_client_gets_a_close_code_others_unaffected(port, send, code, reason):
    ada = await ChatClient.join(port, "ada")
    bad = await wsfast.connect(f"ws://127.0.0.1:{port}/chat")
    await bad.send(send)
    got_code, got_reason = await closed_with(bad)
    assert got_code == code
    if reason is not None:
        assert got_reason == reason
    await ada.say("unaffected")
    assert await ada.texts(1) == ["unaffected"]
    await ada.close()


async def test_rate_limit_closes_with_1008(port):
    ada = await ChatClient.join(port, "ada")
    spammer = await ChatClient.join(port, "spam")
    for i in range(_chat.BURST + 5):
        try:
            await spammer.say(f"s{i}")
        except wsfast.ConnectionClosed:
            break
    code, reason = await closed_with(spammer.ws)
    assert (code, reason) == (1008, "rate limit exceeded (10 messages/s)")
    # ada got the burst (the join counted as one), then the spammer left
    texts = []
    while True:
        event = await ada.next()
        if event["type"] == "leave":
            break
        if event["type"] == "msg":
            texts.append(event["text"])
    assert texts == [f"s{i}" for i in range(_chat.BURST - 1)]
    await ada.say("fine")
    assert await ada.texts(1) == ["fine"]
    await ada.close()


async def test_status_and_page(port):
    import urllib.request

    loop = asyncio.get_running_loop()

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.headers.get("Content-Type"), r.read()

    ctype, body = await loop.run_in_executor(None, get, "/")
    assert ctype.startswith("text/html") and b'src="static/chat.js"' in body
    ctype, body = await loop.run_in_executor(None, get, "/static/chat.js")
    assert "javascript" in ctype and b".innerHTML" not in body  # user text only via textContent
    ctype, body = await loop.run_in_executor(None, get, "/status")
    status = json.loads(body)
    assert status["hub"] == "Hub" and status["state"] == "local"


def test_token_bucket():
    bucket = _chat.TokenBucket(rate=10, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    bucket.stamp -= 0.15  # 1.5 tokens later
    assert bucket.take() and not bucket.take()


# -- the command -------------------------------------------------------------------------


def test_workers_without_redis_is_refused():
    proc = subprocess.run([sys.executable, "-m", "wsfast", "chat", "--workers", "2"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.returncode == 2
    assert "needs --redis" in proc.stderr


async def test_single_process_command_without_redis():
    with ChatProcess() as proc:
        ada = await ChatClient.join(proc.port, "ada")
        grace = await ChatClient.join(proc.port, "grace")
        await grace.say("hi")
        assert await ada.texts(1) == ["hi"]
        await ada.close()
        await grace.close()
    assert "in-process rooms" in proc.output()


async def clients_on_both_workers(port, count=2, room="lobby", tries=40):
    """Chat clients joined until ``count`` workers each have one (the kernel
    spreads connections over the SO_REUSEPORT sockets of the workers that
    are listening). A client on a worker already covered is closed at once:
    left unread, the join events of the next ones would fill its queue and
    pause its reading."""
    by_worker = {}
    for i in range(tries):
        client = await ChatClient.join(port, f"user{i}", room)
        if client.worker in by_worker:
            await client.close()
        else:
            by_worker[client.worker] = client
        if len(by_worker) == count:
            break
        await asyncio.sleep(0.02)  # the other worker may still be starting
    assert len(by_worker) == count, f"all {tries} connections went to {list(by_worker)}"
    return list(by_worker.values())


async def test_two_workers_share_rooms_and_survive_a_redis_restart():
    require_redis()
    with RedisServer() as redis_server, \
            ChatProcess("--workers", "2", "--redis", redis_server.url, "--no-uvloop") as proc:
        a, b = await clients_on_both_workers(proc.port)
        assert a.worker != b.worker
        # across workers, both ways
        await a.say("from a")
        assert await b.texts(1) == ["from a"]
        assert await a.texts(1) == ["from a"]  # once on its own worker
        await b.say("from b")
        assert await a.texts(1) == ["from b"]
        assert await b.texts(1) == ["from b"]

        redis_server.stop()
        await asyncio.sleep(0.3)
        # each worker keeps chatting locally during the outage
        for i in range(3):
            await a.say(f"a during {i}")
            await b.say(f"b during {i}")
        assert await a.texts(3, timeout=3) == [f"a during {i}" for i in range(3)]
        assert await b.texts(3, timeout=3) == [f"b during {i}" for i in range(3)]

        redis_server.start()
        # after the restart: what the other worker accepted during the outage,
        # once, in order, then live messages across workers again
        assert await a.texts(3, timeout=10) == [f"b during {i}" for i in range(3)]
        assert await b.texts(3, timeout=10) == [f"a during {i}" for i in range(3)]
        await a.say("after")
        assert await b.texts(1) == ["after"]
        assert await a.texts(1) == ["after"]
        await a.quiet(0.3)
        await b.quiet(0.01)
        await a.close()
        await b.close()
    out = proc.output()
    assert out.count("redis hub: lost redis://") == 2, out
    assert out.count("redis hub: reconnected to redis://") == 2, out
