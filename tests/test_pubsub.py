"""wsfast.pubsub: Hub (in-process) and RedisHub (a real redis-server started
here on a free loopback port), with real WebSocket connections as
subscribers: a handler at ``/sub/TOPIC`` subscribes on open, and a client
over ``wsfast.connect`` reads what it gets.

Two RedisHub objects in one event loop stand for two workers: each has its
own Redis connections, worker id, buffer and subscribers.
"""

import asyncio
import logging

import pytest
from chat_helpers import RedisServer, require_redis

import wsfast
from wsfast.pubsub import Hub, PublishResult, RedisHub


class Subscriber(wsfast.WebSocketHandler):
    def initialize(self, hub, ready):
        self.hub = hub
        self.ready = ready

    async def open(self, topic):
        await self.hub.subscribe(topic, self)
        self.ready.put_nowait(topic)

    def on_message(self, message):
        pass

    def on_close(self):
        self.hub.unsubscribe_all(self)


class Worker:
    """A server whose ``/sub/TOPIC`` handlers subscribe to ``hub``."""

    def __init__(self, hub):
        self.hub = hub
        self.ready = asyncio.Queue()
        self.server = None

    async def __aenter__(self):
        await self.hub.start()
        app = wsfast.Application([(r"/sub/(.*)", Subscriber, {"hub": self.hub, "ready": self.ready})])
        self.server = await app.listen(0, host="127.0.0.1")
        return self

    async def __aexit__(self, *exc):
        await self.server.stop(timeout=2)
        await self.hub.close()

    async def client(self, topic):
        ws = await wsfast.connect(f"ws://127.0.0.1:{self.server.port}/sub/{topic}")
        assert await asyncio.wait_for(self.ready.get(), 5) == topic
        return ws


async def recv_all(ws, count, timeout=5):
    return [await asyncio.wait_for(ws.recv(), timeout) for _ in range(count)]


async def silent(ws, delay=0.2):
    try:
        message = await asyncio.wait_for(ws.recv(), delay)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected message {message!r}")


# -- Hub ------------------------------------------------------------------------------


async def test_hub_delivers_to_the_topic_only():
    async with Worker(Hub()) as w:
        a1, a2, b = await w.client("a"), await w.client("a"), await w.client("b")
        result = await w.hub.publish("a", "to a")
        assert isinstance(result, PublishResult) and result.accepted
        assert result.local.sent == 2
        await w.hub.publish("b", b"\x00binary")
        assert await a1.recv() == "to a" and await a2.recv() == "to a"
        assert await b.recv() == b"\x00binary"
        assert await silent(a1, 0.05)
        assert sorted(w.hub.topics()) == ["a", "b"]
        for ws in (a1, a2, b):
            await ws.close()


async def test_hub_unsubscribe_and_close():
    async with Worker(Hub()) as w:
        a, b = await w.client("t"), await w.client("t")
        handlers = w.hub.subscribers("t")
        assert len(handlers) == 2
        w.hub.unsubscribe("t", handlers[0])
        w.hub.unsubscribe("t", handlers[0])  # twice: no error
        assert (await w.hub.publish("t", "one")).local.sent == 1
        await b.close()  # on_close -> unsubscribe_all
        for _ in range(50):
            if not w.hub.subscribers("t"):
                break
            await asyncio.sleep(0.01)
        assert w.hub.subscribers("t") == [] and w.hub.topics() == []
        assert (await w.hub.publish("t", "nobody")).local.sent == 0
        await a.close()


async def test_hub_history_is_bounded():
    hub = Hub(history=3)
    for i in range(5):
        await hub.publish("room", f"m{i}")
    assert await hub.history("room") == ["m2", "m3", "m4"]
    assert await hub.history("room", 2) == ["m3", "m4"]
    assert await hub.history("other") == []
    assert await Hub().history("room") == []  # history=0 keeps nothing


async def test_hub_history_keeps_a_copy_of_a_reused_buffer():
    # A publisher may reuse its bytearray (or a memoryview of it) once
    # publish() returns: the history holds the message as it was sent.
    hub = Hub(history=3)
    buffer = bytearray(b"first")
    await hub.publish("room", buffer)
    await hub.publish("room", memoryview(buffer)[:3])
    buffer[:] = b"XXXXX"
    assert await hub.history("room") == [b"first", b"fir"]



async def test_hub_subscribe_returns_a_done_awaitable():
    hub = Hub()
    ready = hub.subscribe("t", object())
    assert ready.done()
    await ready


# -- RedisHub -----------------------------------------------------------------------


@pytest.fixture
def redis_server():
    require_redis()
    with RedisServer() as server:
        yield server


def two_hubs(url, **kwargs):
    kwargs.setdefault("backoff", (0.05, 0.5))
    return RedisHub(url, history=10, **kwargs), RedisHub(url, history=10, **kwargs)


async def test_redis_messages_cross_workers_in_order_once(redis_server):
    hub_a, hub_b = two_hubs(redis_server.url)
    async with Worker(hub_a) as a, Worker(hub_b) as b:
        await hub_a.wait_up(5)
        await hub_b.wait_up(5)
        on_a, on_b = await a.client("room"), await b.client("room")
        for i in range(20):
            await hub_a.publish("room", f"a{i}")
        await hub_b.publish("room", b"from b")
        expected_a = [f"a{i}" for i in range(20)]
        got_b = await recv_all(on_b, 21)
        assert got_b[0] == b"from b"  # local delivery first...
        assert got_b[1:] == expected_a  # ...then a's, in a's order
        got_a = await recv_all(on_a, 21)
        assert got_a[:20] == expected_a and got_a[20] == b"from b"
        assert await silent(on_a) and await silent(on_b, 0.01)  # not echoed back
        # history: every worker's messages, from the stream
        assert (await hub_b.history("room", 3)) == ["a18", "a19", b"from b"]
        await on_a.close()
        await on_b.close()


async def test_redis_outage_local_delivery_and_catch_up(redis_server, caplog):
    """The guarantee of docs/pubsub.md: during an outage each worker's
    clients get that worker's messages at once; after Redis is back every
    client still connected gets every accepted message once, in each
    publisher's order."""
    caplog.set_level(logging.INFO, logger="wsfast.pubsub")
    hub_a, hub_b = two_hubs(redis_server.url)
    async with Worker(hub_a) as a, Worker(hub_b) as b:
        await hub_a.wait_up(5)
        await hub_b.wait_up(5)
        on_a, on_b = await a.client("room"), await b.client("room")
        await hub_a.publish("room", "before")
        assert await on_b.recv() == "before" and await on_a.recv() == "before"

        redis_server.stop()
        for _ in range(200):
            if hub_a.state == hub_b.state == "down":
                break
            await asyncio.sleep(0.01)
        assert hub_a.state == hub_b.state == "down"
        for i in range(5):
            assert (await hub_a.publish("room", f"a{i}")).accepted
            assert (await hub_b.publish("room", f"b{i}")).accepted
        # local delivery goes on
        assert await recv_all(on_a, 5) == [f"a{i}" for i in range(5)]
        assert await recv_all(on_b, 5) == [f"b{i}" for i in range(5)]
        assert hub_a.buffered == hub_b.buffered == 5
        # ...and a local history while Redis is down
        assert (await hub_a.history("room"))[-2:] == ["a3", "a4"]

        redis_server.start()
        await hub_a.wait_up(5)
        await hub_b.wait_up(5)
        assert await recv_all(on_a, 5) == [f"b{i}" for i in range(5)]
        assert await recv_all(on_b, 5) == [f"a{i}" for i in range(5)]
        await hub_a.publish("room", "after")
        assert await on_b.recv() == "after" and await on_a.recv() == "after"
        assert await silent(on_a, 0.01) is True and await silent(on_b)  # nothing twice
        assert hub_a.buffered == hub_b.buffered == 0
        await on_a.close()
        await on_b.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "wsfast.pubsub"]
    assert sum("lost redis://" in line for line in lines) == 2, lines  # one per worker
    assert sum("reconnected to redis://" in line for line in lines) == 2, lines


async def test_redis_buffer_full_refuses_new_messages(redis_server, caplog):
    hub_a, hub_b = two_hubs(redis_server.url, buffer=3)
    async with Worker(hub_a) as a, Worker(hub_b) as b:
        await hub_a.wait_up(5)
        await hub_b.wait_up(5)
        on_a, on_b = await a.client("room"), await b.client("room")
        redis_server.stop()
        for _ in range(200):
            if hub_a.state == "down":
                break
            await asyncio.sleep(0.01)
        results = [await hub_a.publish("room", f"m{i}") for i in range(5)]
        assert [r.accepted for r in results] == [True, True, True, False, False]
        assert await recv_all(on_a, 5) == [f"m{i}" for i in range(5)]  # all delivered here
        assert hub_a.stats["refused"] == 2
        assert sum("buffer full" in r.getMessage() for r in caplog.records) == 1
        redis_server.start()
        await hub_a.wait_up(5)
        assert await recv_all(on_b, 3) == ["m0", "m1", "m2"]  # the accepted ones, no more
        assert await silent(on_b)
        await on_a.close()
        await on_b.close()


async def test_redis_resent_batch_is_not_published_twice(redis_server):
    """A batch whose reply was lost is sent again; the script drops what
    Redis already has (this worker's sequence number)."""
    hub_a, hub_b = two_hubs(redis_server.url)
    async with Worker(hub_a) as a, Worker(hub_b) as b:
        await hub_a.wait_up(5)
        await hub_b.wait_up(5)
        on_b = await b.client("room")
        await hub_a.publish("room", "once")
        assert await on_b.recv() == "once"
        # what the writer does after a lost reply: the same entry again
        seq = next(hub_a._seq) - 1
        hub_a._outbox.append((seq, "room", "t", b"once"))
        hub_a._wake.set()
        await hub_a.publish("room", "next")
        assert await on_b.recv() == "next"
        assert await silent(on_b)
        await on_b.close()


async def test_redis_unreachable_at_start(caplog):
    """No Redis at all: local delivery works, one log line, state "down"."""
    require_redis()
    from interop_helpers import free_port

    hub = RedisHub(f"redis://127.0.0.1:{free_port()}", backoff=(0.05, 0.2))
    async with Worker(hub) as w:
        ws = await w.client("t")
        for _ in range(200):
            if hub.state == "down":
                break
            await asyncio.sleep(0.01)
        assert hub.state == "down"
        assert (await hub.publish("t", "still here")).accepted
        assert await ws.recv() == "still here"
        await asyncio.sleep(0.3)  # a few failed attempts...
        lines = [r.getMessage() for r in caplog.records if r.name == "wsfast.pubsub"]
        assert len([line for line in lines if "cannot reach" in line]) == 1, lines  # ...one line
        await ws.close()
