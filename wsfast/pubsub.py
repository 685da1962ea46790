"""Pub/sub: deliver published messages to the WebSocket connections
subscribed to a topic, in this process (:class:`Hub`) or across processes
and machines through Redis (:class:`RedisHub`). Same API for both::

    from wsfast.pubsub import Hub, RedisHub

    hub = Hub()                                     # or RedisHub("redis://127.0.0.1:6379")
    await hub.start()                               # (a no-op for Hub)

    class Room(wsfast.WebSocketHandler):
        def open(self, name):
            self.room = name
            hub.subscribe(name, self)               # returns an awaitable: live on every worker
        async def on_message(self, message):
            await hub.publish(self.room, message)
        def on_close(self):
            hub.unsubscribe_all(self)

Delivery to the subscribers of this process goes through
:func:`wsfast.broadcast` (one encoded frame written to every transport;
``slow=`` says what happens to a connection whose write buffer is full).

Theory of operation of :class:`RedisHub` (the details and the guarantee are in
docs/pubsub.md). Each worker has a ``worker_id``. ``publish()`` delivers to the
local subscribers at once, then appends the message, numbered with the
worker's next sequence number, to a bounded outgoing buffer. One task sends
the buffer, in order, through one connection at a time: a Lua script per
message that (1) drops it if this worker's sequence number was already seen
(a batch re-sent after a lost reply), (2) ``XADD``\\ s it to the topic's
stream (capped at ``retention`` entries: the history and the catch-up log)
and (3) ``PUBLISH``\\ es ``stream-id, worker, message`` on the topic's channel.
A second connection SUBSCRIBEs to the channels of the local topics; a message
whose worker is this one is not delivered again (it was delivered at publish
time), the others go to the local subscribers. Each worker remembers the last
stream id it delivered per topic. When Redis goes away, local delivery goes
on and publishes wait in the buffer; once Redis is back, the worker
re-subscribes, reads each topic's stream from its last id on (``XRANGE``) and
delivers what it missed, then the live messages, skipping ids it has already
delivered. So a client connected the whole time gets every accepted message
once, in each publisher's order.
"""

import asyncio
import collections
import itertools
import logging
import os
import random
import socket
import time
from types import ModuleType, TracebackType
from typing import (
    TYPE_CHECKING, Any, Awaitable, Coroutine, Counter, Deque, Dict, Generator, Iterable, List,
    NamedTuple, Optional, Set, Tuple, Type, Union,
)

from .broadcast import BroadcastResult, broadcast

if TYPE_CHECKING:
    from . import web

__all__ = ["BroadcastResult", "Hub", "PublishResult", "RedisHub"]

log = logging.getLogger("wsfast.pubsub")

#: What :meth:`Hub.publish` takes (a str is sent as text unless ``binary=True``).
Message = Union[str, bytes, bytearray, memoryview]


class PublishResult(NamedTuple):
    """What ``publish()`` returns. ``local``: the :class:`BroadcastResult` of the
    delivery to this process's subscribers. ``accepted``: True when every
    subscriber, on every worker, will get the message (Hub: always; RedisHub:
    it is in the outgoing buffer), False when the buffer was full and only
    this process's subscribers got it."""

    local: BroadcastResult
    accepted: bool


class _Ready:
    """An awaitable that is already done (no event loop needed)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return None
        yield  # a generator: "await _READY" returns at once

    def done(self) -> bool:
        return True


_READY = _Ready()
_StreamId = Tuple[int, int]


def _new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Hub:
    """In-process pub/sub: ``publish()`` delivers to this process's
    subscribers only. Nothing to install, nothing to start (``start()`` and
    ``close()`` exist so code runs unchanged on a :class:`RedisHub`).

    ``history``: keep the last N messages of each topic for ``history()``
    (0: none). ``slow``: :func:`wsfast.broadcast`'s policy for a subscriber
    whose write buffer is full ("skip", "close" or "queue").
    """

    def __init__(self, *, history: int = 0, slow: str = "skip",
                 worker_id: Optional[str] = None) -> None:
        self.history_size = history
        self.slow = slow
        self.worker_id = worker_id or _new_worker_id()
        # topic -> {handler: None}, an ordered set
        self._topics: Dict[str, Dict["web.WebSocketHandler", None]] = {}
        self._handler_topics: Dict["web.WebSocketHandler", Set[str]] = {}
        self._history: Dict[str, Deque[Union[str, bytes]]] = {}

    # -- lifecycle ---------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"local"`` for Hub; RedisHub: ``"connecting"``, ``"up"``, ``"down"``, ``"closed"``."""
        return "local"

    async def start(self) -> None:
        """Start the hub (RedisHub connects in the background)."""

    async def close(self) -> None:
        """Stop the hub; subscriptions are forgotten."""
        self._topics.clear()
        self._handler_topics.clear()

    async def __aenter__(self) -> "Hub":
        await self.start()
        return self

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, topic: str, handler: "web.WebSocketHandler") -> Awaitable[None]:
        """Deliver ``topic``'s messages to ``handler`` (a WebSocketHandler).
        Returns an awaitable, done once the topic is live on every worker
        (at once for Hub, and for RedisHub while Redis is down); ignoring it
        is fine."""
        subscribers = self._topics.get(topic)
        new_topic = subscribers is None
        if subscribers is None:
            subscribers = self._topics[topic] = {}
        subscribers[handler] = None
        self._handler_topics.setdefault(handler, set()).add(topic)
        return self._topic_added(topic) if new_topic else self._topic_ready(topic)

    def unsubscribe(self, topic: str, handler: "web.WebSocketHandler") -> None:
        """Stop delivering ``topic`` to ``handler`` (no error if it was not subscribed)."""
        subscribers = self._topics.get(topic)
        if subscribers is None or handler not in subscribers:
            return
        del subscribers[handler]
        topics = self._handler_topics.get(handler)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._handler_topics[handler]
        if not subscribers:
            del self._topics[topic]
            self._topic_removed(topic)

    def unsubscribe_all(self, handler: "web.WebSocketHandler") -> None:
        """Unsubscribe ``handler`` from every topic (call it in ``on_close``)."""
        for topic in list(self._handler_topics.get(handler, ())):
            self.unsubscribe(topic, handler)

    def subscribers(self, topic: str) -> List["web.WebSocketHandler"]:
        """This process's subscribers of ``topic`` (a list)."""
        return list(self._topics.get(topic, ()))

    def topics(self) -> List[str]:
        """The topics with subscribers in this process."""
        return list(self._topics)

    def _topic_added(self, topic: str) -> Awaitable[None]:
        return _READY

    def _topic_ready(self, topic: str) -> Awaitable[None]:
        return _READY

    def _topic_removed(self, topic: str) -> None:
        pass

    # -- messages ------------------------------------------------------------------

    async def publish(self, topic: str, message: Message, *,
                      binary: Optional[bool] = None) -> PublishResult:
        """Deliver ``message`` (str: text, bytes: binary; ``binary=True``
        sends a str as binary) to every subscriber of ``topic``. Returns a
        :class:`PublishResult`."""
        return PublishResult(self._deliver(topic, message, binary), True)

    def _deliver(self, topic: str, message: Message, binary: Optional[bool]) -> BroadcastResult:
        if self.history_size:
            history = self._history.get(topic)
            if history is None:
                history = self._history[topic] = collections.deque(maxlen=self.history_size)
            # a copy of a bytearray or memoryview: the caller may reuse it
            history.append(message if isinstance(message, (str, bytes)) else bytes(message))
        subscribers = self._topics.get(topic)
        if not subscribers:
            return BroadcastResult(0, 0, 0, 0)
        return broadcast(list(subscribers), message, binary=binary, slow=self.slow)

    async def history(self, topic: str, limit: Optional[int] = None) -> List[Union[str, bytes]]:
        """The last ``limit`` (default: ``history``) messages of ``topic``,
        oldest first."""
        limit = self.history_size if limit is None else limit
        messages: Iterable[Union[str, bytes]] = self._history.get(topic, ())
        if limit <= 0:
            return []
        return list(messages)[-limit:]


# -- Redis ---------------------------------------------------------------------------

# KEYS[1] stream, KEYS[2] this worker's last sequence number;
# ARGV: worker, seq, flag ("t" text / "b" binary), message, channel, retention.
_PUBLISH_LUA = """
local last = tonumber(redis.call('GET', KEYS[2]) or '-1')
local seq = tonumber(ARGV[2])
if seq <= last then return false end
redis.call('SET', KEYS[2], ARGV[2], 'EX', 86400)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[6], '*', 'w', ARGV[1], 'f', ARGV[3], 'm', ARGV[4])
redis.call('PUBLISH', ARGV[5], id .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[3] .. ARGV[4])
return id
"""


def _parse_id(stream_id: Union[str, bytes]) -> _StreamId:
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode("ascii")
    ms, _, seq = stream_id.partition("-")
    return (int(ms), int(seq or 0))


def _format_id(parsed: _StreamId) -> str:
    return f"{parsed[0]}-{parsed[1]}"


class RedisHub(Hub):
    """Pub/sub shared by every process connected to one Redis (redis-py's
    asyncio client; hiredis parses replies when installed). Same API as
    :class:`Hub`; call ``await start()`` once in the event loop (it returns
    at once and connects in the background) and ``await close()`` at the end.

    ``url``: ``redis://host:port[/db]``. ``prefix``: of every key and channel.
    ``history``: the default count of ``history()`` and the size of the local
    copy used while Redis is down. ``retention``: entries kept in each
    topic's Redis stream (history and catch-up after an outage; at least
    ``history``). ``buffer``: most messages waiting for Redis; when it is
    full, ``publish()`` delivers locally only and says so
    (``accepted=False``). ``backoff``: (first, longest) delay in seconds
    between reconnection attempts (exponential, with jitter).

    ``state`` is "connecting", "up", "down" or "closed"; ``stats`` counts
    what happened. See docs/pubsub.md for the delivery guarantee.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379", *, prefix: str = "wsfast:",
                 history: int = 0, retention: int = 1000, buffer: int = 10000, slow: str = "skip",
                 backoff: Tuple[float, float] = (0.1, 5.0), connect_timeout: float = 2.0,
                 worker_id: Optional[str] = None) -> None:
        super().__init__(history=history, slow=slow, worker_id=worker_id)
        if "\n" in self.worker_id:
            raise ValueError("worker_id must not contain a newline")
        self.url = url
        self.prefix = prefix
        self.retention = max(int(retention), history, 1)
        self.buffer_size = buffer
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.stats: Counter[str] = collections.Counter()
        self._state = "connecting"
        self._outbox: Deque[Tuple[int, str, str, bytes]] = collections.deque()  # (seq, topic, flag, data)
        self._seq = itertools.count(int(time.time() * 1000) * 1000)
        self._wake: Optional[asyncio.Event] = None  # the outbox has something
        self._task: Optional["asyncio.Task[None]"] = None
        self._session: Optional[_Session] = None  # the live connection's state
        self._last_id: Dict[str, _StreamId] = {}  # topic -> last stream id delivered here
        self._down_since: Optional[float] = None
        self._overflowed = 0
        self._clock_offset_ms = 0.0  # Redis server's clock minus ours
        self._seq_key = f"{prefix}seq:{self.worker_id}"
        self._worker_bytes = self.worker_id.encode()

    def _stream_key(self, topic: str) -> str:
        return f"{self.prefix}h:{topic}"

    def _channel(self, topic: str) -> str:
        return f"{self.prefix}t:{topic}"

    @property
    def state(self) -> str:
        return self._state

    @property
    def buffered(self) -> int:
        """Messages waiting for Redis."""
        return len(self._outbox)

    async def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            if self._outbox:
                self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop; what is still buffered is dropped (logged)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            while not task.done():
                # On Python 3.11 asyncio.wait_for() can swallow a cancellation that
                # arrives as the awaited call completes (fixed in 3.12): ask again
                # rather than wait forever for a task that went on retrying.
                await asyncio.wait({task}, timeout=0.5)
                task.cancel()
            try:
                task.result()
            except asyncio.CancelledError:
                pass
        if self._outbox:
            log.warning("redis hub: closing with %d messages not yet sent to Redis", len(self._outbox))
        self._state = "closed"
        await super().close()

    async def wait_up(self, timeout: Optional[float] = None) -> None:
        """Wait until connected to Redis (at most ``timeout`` s, then TimeoutError)."""
        async def poll() -> None:
            while self._state != "up":
                await asyncio.sleep(0.02)
        await asyncio.wait_for(poll(), timeout)

    # -- publishing ------------------------------------------------------------------

    async def publish(self, topic: str, message: Message, *,
                      binary: Optional[bool] = None) -> PublishResult:
        local = self._deliver(topic, message, binary)
        if isinstance(message, str):
            flag = "b" if binary else "t"
            data = message.encode("utf-8")
        else:
            flag = "t" if binary is False else "b"
            data = bytes(message)
        if len(self._outbox) >= self.buffer_size:
            self.stats["refused"] += 1
            if not self._overflowed:
                log.warning(
                    "redis hub: outgoing buffer full (%d messages, Redis %s); "
                    "new messages reach this worker's subscribers only",
                    self.buffer_size, self._state)
            self._overflowed += 1
            return PublishResult(local, False)
        self._outbox.append((next(self._seq), topic, flag, data))
        self.stats["published"] += 1
        if self._wake is not None:
            self._wake.set()
        return PublishResult(local, True)

    async def history(self, topic: str, limit: Optional[int] = None) -> List[Union[str, bytes]]:
        """The last ``limit`` messages of ``topic``, oldest first: from the
        topic's Redis stream (every worker's), or from this worker's own copy
        while Redis is down."""
        limit = self.history_size if limit is None else limit
        if limit <= 0:
            return []
        session = self._session
        if session is not None and self._state == "up":
            try:
                entries = await asyncio.wait_for(
                    session.client.xrevrange(self._stream_key(topic), count=limit), 2.0)
            except Exception as exc:  # Redis went away in between: local copy
                log.debug("redis hub: history of %r from the local copy (%s)", topic, exc)
            else:
                return [self._decode(fields)[1] for _id, fields in reversed(entries)]
        return await super().history(topic, limit)

    @staticmethod
    def _decode(fields: Dict[bytes, bytes]) -> Tuple[bytes, Union[str, bytes]]:
        data = fields[b"m"]
        if fields.get(b"f", b"t") == b"t":
            return fields[b"w"], data.decode("utf-8")
        return fields[b"w"], data

    # -- subscriptions -------------------------------------------------------------

    def _topic_added(self, topic: str) -> Awaitable[None]:
        session = self._session
        if session is None or self._state != "up":
            # Subscribed while not connected: catch up, once connected, from
            # now (stream ids are the Redis server's clock in ms; the offset
            # to ours was measured at the last connection).
            now_ms = int(time.time() * 1000 + self._clock_offset_ms)
            self._last_id.setdefault(topic, (now_ms - 1, 0))
            return _READY
        return session.add_topic(topic)

    def _topic_ready(self, topic: str) -> Awaitable[None]:
        session = self._session
        if session is None or self._state != "up":
            return _READY
        future = session.ready.get(topic)
        return asyncio.shield(future) if future is not None else _READY

    def _topic_removed(self, topic: str) -> None:
        self._last_id.pop(topic, None)
        session = self._session
        if session is not None:
            session.remove_topic(topic)

    # -- the connection loop ------------------------------------------------------

    async def _run(self) -> None:
        import redis.asyncio as aioredis  # imported here: Hub needs nothing installed

        first, longest = self.backoff
        attempt = 0
        while True:
            session = _Session(self, aioredis)
            try:
                await session.connect()
                attempt = 0
                self._session = session
                self._set_up()
                await session.serve()
            except asyncio.CancelledError:
                await session.teardown()
                self._session = None
                raise
            except Exception as exc:
                self._set_down(exc)
            await session.teardown()
            self._session = None
            delay = min(longest, first * 2 ** min(attempt, 30))  # 2**attempt unbounded overflows a float
            delay = random.uniform(delay / 2, delay)  # jitter: workers do not retry in step
            attempt += 1
            await asyncio.sleep(delay)

    def _set_up(self) -> None:
        if self._down_since is not None:
            log.warning(
                "redis hub: reconnected to %s after %.1f s; sending %d buffered messages%s",
                self.url, time.monotonic() - self._down_since, len(self._outbox),
                f" ({self._overflowed} went to local subscribers only: the buffer was full)"
                if self._overflowed else "")
            self.stats["reconnects"] += 1
        else:
            log.info("redis hub: connected to %s (worker %s)", self.url, self.worker_id)
        self._down_since = None
        self._overflowed = 0
        self._state = "up"

    def _set_down(self, exc: Exception) -> None:
        if self._state != "down":
            self._down_since = time.monotonic()
            what = "lost" if self._state == "up" else "cannot reach"
            log.warning(
                "redis hub: %s %s (%s: %s); delivering to this worker's subscribers only, "
                "buffering up to %d messages for the others, reconnecting with backoff",
                what, self.url, type(exc).__name__, exc, self.buffer_size)
            self._state = "down"
            self.stats["outages"] += 1

    def _deliver_remote(self, topic: str, stream_id: bytes, worker: bytes, flag: bytes,
                        data: bytes) -> None:
        """A message read from Redis (live or catch-up): deliver it unless
        it is older than the last one delivered here or this worker's own."""
        parsed = _parse_id(stream_id)
        last = self._last_id.get(topic)
        if last is not None and parsed <= last:
            self.stats["duplicates"] += 1
            return
        self._last_id[topic] = parsed
        if worker == self._worker_bytes:
            return  # delivered locally at publish time
        message: Message = data.decode("utf-8") if flag == b"t" else data
        self.stats["received"] += 1
        self._deliver(topic, message, None)



class _Session:
    """One connection period of a RedisHub: a client (publishes, streams)
    and a pub/sub connection; torn down whole on the first error."""

    def __init__(self, hub: RedisHub, aioredis: ModuleType) -> None:
        self.hub = hub
        self.aioredis = aioredis
        # redis.asyncio's Redis client and PubSub (the module comes as an argument)
        self.client: Any = None
        self.pubsub: Any = None
        self.script = None
        # topic -> future, done when subscribed and caught up
        self.ready: Dict[str, "asyncio.Future[None]"] = {}
        # channel (bytes) -> future of the SUBSCRIBE confirmation
        self.confirm: Dict[bytes, "asyncio.Future[None]"] = {}
        # topic -> live messages held during its catch-up
        self.catching_up: Dict[str, List[Tuple[bytes, bytes, bytes, bytes]]] = {}
        self.tasks: Set["asyncio.Task[None]"] = set()
        # a topic task failed, the session ends
        self.failed: Optional["asyncio.Future[None]"] = None
        self.sha: Optional[str] = None

    async def connect(self) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        hub = self.hub
        self.client = self.aioredis.Redis.from_url(
            hub.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=hub.connect_timeout,
            socket_keepalive=True, health_check_interval=0)
        await asyncio.wait_for(self.client.ping(), hub.connect_timeout + 1)
        seconds, micros = await self.client.time()
        hub._clock_offset_ms = seconds * 1000 + micros / 1000 - time.time() * 1000
        self.failed = asyncio.get_running_loop().create_future()
        # Loaded once per connection (a restarted Redis has an empty script cache).
        self.sha = await self.client.script_load(_PUBLISH_LUA)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(f"{hub.prefix}ctl:{hub.worker_id}")
        for topic in hub.topics():
            self.add_topic(topic)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read())
        writer = loop.create_task(self._write())
        assert self.failed is not None  # connect() made it
        try:
            done, _ = await asyncio.wait({reader, writer, self.failed},
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for finished in done:
            finished.result()
        raise ConnectionError("redis session ended")

    async def teardown(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for future in list(self.ready.values()):
            if not future.done():
                future.set_result(None)  # Redis is down: the topic is "as live as it gets"
        for closing in (self.pubsub, self.client):
            if closing is None:
                continue
            try:
                await asyncio.wait_for(closing.aclose(), 1.0)
            except Exception:
                pass

    # -- topics ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: "asyncio.Task[None]") -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        # A failed SUBSCRIBE/XRANGE: end the session, reconnect, start over.
        if self.failed is not None and not self.failed.done():
            self.failed.set_exception(exc)

    def add_topic(self, topic: str) -> "asyncio.Future[None]":
        future = self.ready.get(topic)
        if future is None:
            future = self.ready[topic] = asyncio.get_running_loop().create_future()
            self._spawn(self._subscribe(topic, future))
        return asyncio.shield(future)

    def remove_topic(self, topic: str) -> None:
        self.ready.pop(topic, None)
        self.catching_up.pop(topic, None)
        self._spawn(self._unsubscribe(topic))

    async def _subscribe(self, topic: str, future: "asyncio.Future[None]") -> None:
        hub = self.hub
        stream = hub._stream_key(topic)
        if topic not in hub._last_id:
            # A new topic: catch up from the newest entry now (what comes
            # between this read and the SUBSCRIBE is read back below).
            newest = await self.client.xrevrange(stream, count=1)
            hub._last_id[topic] = _parse_id(newest[0][0]) if newest else (0, 0)
        channel = hub._channel(topic).encode()
        confirmed = self.confirm[channel] = asyncio.get_running_loop().create_future()
        self.catching_up[topic] = []
        await self.pubsub.subscribe(channel)
        await confirmed
        # Subscribed: everything newer than the last id is in the stream or
        # arrives live (held in catching_up meanwhile).
        if topic not in hub._topics:
            return  # unsubscribed meanwhile
        start = hub._last_id.get(topic, (0, 0))
        while True:
            entries = await self.client.xrange(stream, min="(" + _format_id(start), count=500)
            for stream_id, fields in entries:
                hub._deliver_remote(topic, stream_id, fields[b"w"], fields.get(b"f", b"t"), fields[b"m"])
                hub.stats["caught_up"] += 1
            if len(entries) < 500:
                break
            start = _parse_id(entries[-1][0])
        held = self.catching_up.pop(topic, [])
        for args in held:
            hub._deliver_remote(topic, *args)
        if not future.done():
            future.set_result(None)

    async def _unsubscribe(self, topic: str) -> None:
        if topic in self.hub._topics:
            return  # subscribed again meanwhile
        await self.pubsub.unsubscribe(self.hub._channel(topic))

    # -- the two loops ----------------------------------------------------------------

    async def _read(self) -> None:
        hub = self.hub
        prefix = hub._channel("").encode()
        n = len(prefix)
        pubsub = self.pubsub
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if kind == "message" and channel.startswith(prefix):
                topic = channel[n:].decode("utf-8")
                stream_id, worker, rest = message["data"].split(b"\n", 2)
                held = self.catching_up.get(topic)
                args = (stream_id, worker, rest[:1], rest[1:])
                if held is not None:
                    held.append(args)
                elif topic in hub._topics:
                    hub._deliver_remote(topic, *args)
            elif kind == "subscribe":
                future = self.confirm.pop(channel, None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def _write(self) -> None:
        hub = self.hub
        outbox = hub._outbox
        wake = hub._wake
        assert wake is not None  # start() made it
        sha = self.sha
        seq_key = hub._seq_key
        worker = hub.worker_id
        retention = hub.retention
        while True:
            if not outbox:
                wake.clear()
                await wake.wait()
                continue
            batch = list(itertools.islice(outbox, 0, 256))
            pipe = self.client.pipeline(transaction=False)
            for seq, topic, flag, data in batch:
                pipe.evalsha(sha, 2, hub._stream_key(topic), seq_key,
                             worker, seq, flag, data, hub._channel(topic), retention)
            # A lost connection raises (the batch stays and is sent again:
            # the script drops what Redis already has); an error of one
            # command (say, the key holds another type) drops that message.
            results = await pipe.execute(raise_on_error=False)
            for (seq, topic, _flag, _data), result in zip(batch, results):
                if isinstance(result, Exception):
                    if isinstance(result, (self.aioredis.ConnectionError, self.aioredis.TimeoutError)):
                        raise result
                    hub.stats["failed"] += 1
                    log.error("redis hub: cannot publish message %d to %r: %s", seq, topic, result)
            for _ in batch:
                outbox.popleft()
            hub.stats["sent"] += len(batch)
