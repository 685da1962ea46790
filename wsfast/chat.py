"""The chat: ``python -m wsfast chat`` (Tornado's chat demo, over WebSockets).

One port serves the page (``/``, plain HTML/CSS/JS from ``wsfast/static``),
its WebSocket (``/chat``) and a status document (``/status``, JSON). Rooms
are topics of a :mod:`wsfast.pubsub` hub: in-process by default, shared by
every worker through Redis with ``--redis``.

The protocol is JSON text messages. The page sends::

    {"type": "join", "nick": "ada", "room": "lobby"}     # first; again to change room
    {"type": "msg", "text": "hello"}

and gets::

    {"type": "welcome", "nick", "room", "members": [nick...], "history": [event...], "worker"}
    {"type": "msg", "id", "room", "nick", "text", "ts"}    # events, also in "history"
    {"type": "join" | "leave", "id", "room", "nick", "ts"}
    {"type": "error", "error": "why"}                      # a refused join or message; still open

Validation: a message over :data:`MAX_MESSAGE_SIZE` bytes closes with 1009,
binary with 1003, bad UTF-8 with 1007 (the protocol layer does those three),
more than :data:`RATE` messages/s (bursts of :data:`BURST`) with 1008, a
message that is not a JSON object of a known type, or ``msg`` before
``join``, with 1008. A bad nick or room name, or an empty or too long text,
gets an ``error`` and the connection stays. The page shows user text with
``textContent`` only (never as HTML).

History: the last :data:`HISTORY` events of a room (messages, joins,
leaves). With Redis, every worker's, from the room's stream; without it,
this process's. Presence: with Redis, a sorted set per room of (worker,
connection, nick) whose scores are expiry times, refreshed by each worker
every ``PRESENCE_TTL / 3`` s (a crashed worker's members fade out within
``PRESENCE_TTL``); while Redis is down, and with the in-process hub, the
members connected to this worker. See docs/pubsub.md.
"""

import asyncio
import itertools
import json
import logging
import os
import re
import signal
import sys
import time

from . import web
from .pubsub import Hub, RedisHub

__all__ = ["STATIC_PATH", "ChatHandler", "ChatServer", "serve"]

log = logging.getLogger("wsfast.chat")

STATIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
CHAT_PAGE = os.path.join(STATIC_PATH, "chat.html")

MAX_MESSAGE_SIZE = 4096  # bytes in one WebSocket message, else close 1009
MAX_TEXT = 1000  # characters of one chat message, else an error
RATE = 10.0  # messages per second per connection...
BURST = 20  # ...with bursts of this many, else close 1008
HISTORY = 50  # events of a room kept for people who join
PRESENCE_TTL = 30.0  # seconds a worker's presence entries live without a refresh

NICK_RE = re.compile(r"[\w.\-]+(?: [\w.\-]+)*")  # letters, digits, _ . - and single spaces
MAX_NICK = 24
ROOM_RE = re.compile(r"[\w\-]{1,32}")  # letters, digits, _ and -


def check_nick(nick):
    """The nick, stripped, or raise ValueError saying what is wrong."""
    if not isinstance(nick, str):
        raise ValueError("the nick must be a string")
    nick = nick.strip()
    if not 1 <= len(nick) <= MAX_NICK or not NICK_RE.fullmatch(nick):
        raise ValueError(f"a nick is 1 to {MAX_NICK} letters, digits, '_', '.', '-' or single spaces")
    return nick


def check_room(room):
    """The room name, or raise ValueError saying what is wrong."""
    if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
        raise ValueError("a room name is 1 to 32 letters, digits, '_' or '-'")
    return room


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; ``take()`` is
    False when there is none."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate=RATE, burst=BURST):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ChatServer:
    """The rooms of one worker: a pub/sub ``hub`` (:class:`~wsfast.pubsub.Hub`
    or :class:`~wsfast.pubsub.RedisHub`), local members and presence.
    ``application(**settings)`` makes the :class:`~wsfast.Application`."""

    def __init__(self, hub=None, *, history=HISTORY, presence_ttl=PRESENCE_TTL,
                 rate=RATE, burst=BURST):
        self.hub = hub if hub is not None else Hub(history=history)
        self.history = history
        self.presence_ttl = presence_ttl
        self.rate = rate
        self.burst = burst
        self.worker = self.hub.worker_id
        self.rooms = {}  # room -> {handler: nick}, this worker's members
        self._ids = itertools.count(1)
        self._refresher = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self):
        await self.hub.start()
        if isinstance(self.hub, RedisHub):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_presence())

    async def close(self):
        if self._refresher is not None:
            self._refresher.cancel()
            try:
                await self._refresher
            except asyncio.CancelledError:
                pass
            self._refresher = None
        await self._presence_remove_all()
        await self.hub.close()

    def application(self, **settings):
        settings.setdefault("static_path", STATIC_PATH)
        settings.setdefault("websocket_max_message_size", MAX_MESSAGE_SIZE)
        return web.Application(
            [
                (r"/", ChatPage),
                # browsers ask for it on every page: an icon, not a 404 in the console
                (r"/(favicon\.ico)", web.StaticFileHandler, {"path": STATIC_PATH}),
                (r"/chat", ChatHandler, {"chat": self}),
                (r"/status", StatusHandler, {"chat": self}),
            ],
            **settings,
        )

    def status(self):
        hub = self.hub
        return {
            "worker": self.worker,
            "hub": type(hub).__name__,
            "state": hub.state,
            "buffered": getattr(hub, "buffered", 0),
            "rooms": {room: len(members) for room, members in self.rooms.items()},
            "stats": dict(getattr(hub, "stats", {})),
        }

    # -- events ----------------------------------------------------------------------

    def _event(self, kind, room, nick, **fields):
        event = {"type": kind, "id": f"{self.worker}/{next(self._ids)}", "room": room,
                 "nick": nick, "ts": round(time.time(), 3)}
        event.update(fields)
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))

    async def join(self, handler, room, nick):
        """Put ``handler`` in ``room`` as ``nick``; returns the welcome event."""
        if handler.room is not None:
            await self.leave(handler)
        handler.room, handler.nick = room, nick
        members = self.rooms.setdefault(room, {})
        members[handler] = nick
        # Subscribe first, then read the history: what is published in
        # between arrives twice at worst, and the page drops repeated ids.
        await self.hub.subscribe(room, handler)
        if handler.room != room:
            return None  # closed (or moved) meanwhile
        await self._presence_add(handler)
        await self.hub.publish(room, self._event("join", room, nick))
        history = [json.loads(entry) for entry in await self.hub.history(room, self.history)]
        return {
            "type": "welcome", "nick": nick, "room": room, "worker": self.worker,
            "members": await self.members(room), "history": history,
            "limits": {"text": MAX_TEXT, "bytes": MAX_MESSAGE_SIZE, "rate": self.rate, "burst": self.burst},
        }

    async def leave(self, handler):
        room = handler.room
        if room is None:
            return
        handler.room = None
        self.hub.unsubscribe(room, handler)
        members = self.rooms.get(room)
        if members is not None:
            members.pop(handler, None)
            if not members:
                del self.rooms[room]
        await self._presence_remove(handler, room)
        await self.hub.publish(room, self._event("leave", room, handler.nick))

    async def say(self, handler, text):
        result = await self.hub.publish(handler.room, self._event("msg", handler.room, handler.nick, text=text))
        if not result.accepted:
            handler.send_json({"type": "error", "error":
                               "the server is cut off from the other workers and its buffer is full: "
                               "your message reached this server's users only"})

    # -- presence ----------------------------------------------------------------------

    def _redis(self):
        hub = self.hub
        if isinstance(hub, RedisHub) and hub.state == "up" and hub._session is not None:
            return hub._session.client
        return None

    def _presence_key(self, room):
        return f"{getattr(self.hub, 'prefix', 'wsfast:')}presence:{room}"

    def _presence_member(self, handler, nick=None):
        return f"{self.worker}\n{handler.number}\n{nick or handler.nick}"

    async def _redis_call(self, make):
        client = self._redis()
        if client is None:
            return None
        try:
            return await asyncio.wait_for(make(client), 2.0)
        except Exception as exc:  # Redis went away: local presence until it is back
            log.debug("chat: presence not updated in Redis: %r", exc)
            return None

    async def _presence_add(self, handler):
        key = self._presence_key(handler.room)
        member = self._presence_member(handler)
        await self._redis_call(lambda r: r.zadd(key, {member: time.time() + self.presence_ttl}))

    async def _presence_remove(self, handler, room):
        key = self._presence_key(room)
        member = self._presence_member(handler)
        await self._redis_call(lambda r: r.zrem(key, member))

    async def _presence_remove_all(self):
        async def remove(r):
            pipe = r.pipeline(transaction=False)
            for room, members in self.rooms.items():
                for handler in members:
                    pipe.zrem(self._presence_key(room), self._presence_member(handler))
            await pipe.execute()
        if self.rooms:
            await self._redis_call(remove)

    async def _refresh_presence(self):
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            if not self.rooms:
                continue

            async def refresh(r):
                expires = time.time() + self.presence_ttl
                pipe = r.pipeline(transaction=False)
                for room, members in self.rooms.items():
                    key = self._presence_key(room)
                    pipe.zadd(key, {self._presence_member(h, n): expires for h, n in members.items()})
                    pipe.zremrangebyscore(key, "-inf", time.time())
                await pipe.execute()

            await self._redis_call(refresh)

    async def members(self, room):
        """The nicks in ``room``, sorted: every worker's with Redis up,
        this worker's otherwise."""
        key = self._presence_key(room) if isinstance(self.hub, RedisHub) else None
        found = None
        if key is not None:
            found = await self._redis_call(lambda r: r.zrangebyscore(key, time.time(), "+inf"))
        if found is None:
            nicks = list(self.rooms.get(room, {}).values())
        else:
            nicks = [m.decode("utf-8").rsplit("\n", 1)[-1] for m in found]
        return sorted(nicks, key=str.lower)


class ChatPage(web.RequestHandler):
    def get(self):
        with open(CHAT_PAGE, "rb") as f:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Cache-Control", "no-cache")
            self.write(f.read())


class StatusHandler(web.RequestHandler):
    def initialize(self, chat):
        self.chat = chat

    def get(self):
        self.set_header("Cache-Control", "no-cache")
        self.write(self.chat.status())


class ChatHandler(web.WebSocketHandler):
    """One page's connection: join a room, say things (see the module docstring)."""

    max_message_size = MAX_MESSAGE_SIZE
    _numbers = itertools.count(1)

    def initialize(self, chat):
        self.chat = chat
        self.room = None
        self.nick = None
        self.number = next(ChatHandler._numbers)
        self.bucket = TokenBucket(chat.rate, chat.burst)

    def send_json(self, obj):
        try:
            self.write_message(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        except web.WebSocketClosedError:
            pass

    async def on_message(self, message):
        if not isinstance(message, str):
            return self.close(1003, "text messages only")
        if not self.bucket.take():
            return self.close(1008, f"rate limit exceeded ({self.chat.rate:g} messages/s)")
        try:
            data = json.loads(message)
        except ValueError:
            return self.close(1008, "not JSON")
        if not isinstance(data, dict):
            return self.close(1008, "not a JSON object")
        kind = data.get("type")
        if kind == "msg":
            if self.room is None:
                return self.close(1008, "join a room first")
            text = data.get("text")
            if not isinstance(text, str) or not text.strip():
                return self.send_json({"type": "error", "error": "empty message"})
            if len(text) > MAX_TEXT:
                return self.send_json({"type": "error", "error": f"a message is at most {MAX_TEXT} characters"})
            await self.chat.say(self, text)
        elif kind == "join":
            try:
                nick = check_nick(data.get("nick"))
                room = check_room(data.get("room"))
            except ValueError as exc:
                return self.send_json({"type": "error", "error": str(exc)})
            welcome = await self.chat.join(self, room, nick)
            if welcome is not None:
                self.send_json(welcome)
        else:
            return self.close(1008, "unknown message type")

    def on_close(self):
        self.chat.hub.unsubscribe_all(self)
        if self.room is not None:
            return self.chat.leave(self)  # a coroutine: the server runs it
        return None


async def serve(chat, host="127.0.0.1", port=8888, *, reuse_port=False, ssl=None, on_start=None,
                shutdown_timeout=None, **settings):
    """Run ``chat`` (a :class:`ChatServer`) until SIGINT/SIGTERM: start its
    hub, listen, then close every WebSocket (1001), wait for the leave
    events and close the hub."""
    await chat.start()
    app = chat.application(**settings)
    try:
        server = await app.listen(port, host=host, reuse_port=reuse_port, ssl=ssl)
        if on_start is not None:
            on_start(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                pass
        await stop.wait()
        await app.stop(shutdown_timeout)
        await asyncio.sleep(0.05)  # let the leave events go out
        if isinstance(chat.hub, RedisHub) and chat.hub.state == "up" and chat.hub.buffered:
            try:
                await asyncio.wait_for(_drained(chat.hub), 2.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await chat.close()


async def _drained(hub):
    while hub.buffered:
        await asyncio.sleep(0.01)


def run(chat, host="127.0.0.1", port=8888, *, use_uvloop=None, **kwargs):
    """Blocking :func:`serve` on uvloop when installed (unless ``use_uvloop=False``)."""
    factory = web._loop_factory(use_uvloop)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(chat, host, port, **kwargs))
    else:  # pragma: no cover - Python 3.9/3.10
        loop = factory() if factory is not None else asyncio.new_event_loop()
        try:
            loop.run_until_complete(serve(chat, host, port, **kwargs))
        finally:
            loop.close()
