"""The chat: ``python -m wsfast chat`` (Tornado's chat demo, over WebSockets).

One port serves the page (``/``, plain HTML/CSS/JS from ``wsfast/static``),
its WebSocket (``/chat``) and a status document (``/status``, JSON). Rooms
are topics of a :mod:`wsfast.pubsub` hub: in-process by default, shared by
every worker through Redis with ``--redis``.

The protocol is JSON text messages. The page sends::

    {"type": "join", "nick": "ada", "room": "lobby"}     # first; again to change room
    {"type": "msg", "text": "hello"}

A join may carry ``"claim"``, a random string the page keeps for its life
(16 to 128 characters): a nick is unique in a room (see :func:`nick_keys`:
"ada", "ADA", Cyrillic "\u0430da" and full-width letters are the same nick),
and only a connection with the same claim may take a taken nick back (a
page that reconnected before its old connection was seen to drop; the old
one is closed with 4000).

and gets::

    {"type": "welcome", "nick", "room", "members": [nick...], "history": [event...], "worker"}
    {"type": "msg", "id", "room", "nick", "text", "ts"}    # events, also in "history"
    {"type": "join" | "leave", "id", "room", "nick", "ts"}
    {"type": "error", "error": "why"}                      # a refused join or message; still open

Validation: a message over :data:`MAX_MESSAGE_SIZE` bytes closes with 1009,
binary with 1003, bad UTF-8 with 1007 (the protocol layer does those three),
more than :data:`RATE` messages/s (bursts of :data:`BURST`) with 1008, a
message that is not a JSON object of a known type, or ``msg`` before
``join``, with 1008. A bad or taken nick, a bad room name, or an empty or
too long text, gets an ``error`` and the connection stays. One client
address may hold :data:`MAX_PER_ADDRESS` connections (else 429), and the
pages, events and ``/status`` name a worker by an opaque id, never by its
host name or pid. The page shows user text with
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
import hashlib
import itertools
import json
import logging
import os
import re
import signal
import socket
import sys
import time
import unicodedata
from ssl import SSLContext
from typing import (
    Any, Awaitable, Callable, Dict, FrozenSet, Iterable, List, Optional, Union,
)

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
MAX_PER_ADDRESS = 16  # WebSocket connections of one client address, else 429

NICK_RE = re.compile(r"[\w.\-]+(?: [\w.\-]+)*")  # letters, digits, _ . - and single spaces
MAX_NICK = 24
ROOM_RE = re.compile(r"[\w\-]{1,32}")  # letters, digits, _ and -


def check_nick(nick: object) -> str:
    """The nick, stripped, or raise ValueError saying what is wrong."""
    if not isinstance(nick, str):
        raise ValueError("the nick must be a string")
    nick = nick.strip()
    if not 1 <= len(nick) <= MAX_NICK or not NICK_RE.fullmatch(nick):
        raise ValueError(f"a nick is 1 to {MAX_NICK} letters, digits, '_', '.', '-' or single spaces")
    return nick


_SPOOF: Any = None  # icu.SpoofChecker
try:  # PyICU: Unicode's own confusable skeleton (UTS #39), the chat extra
    import icu as _icu
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    _SPOOF = _icu.SpoofChecker()

# Without PyICU: the letters of other scripts that look like Latin ones (and
# the digits and capitals taken for letters), from UTS #39's confusables,
# for the scripts a nick is most often faked with: Cyrillic, Greek, Armenian.
_LOOKALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "г": "r",
    "ѕ": "s", "т": "t", "ц": "u", "ѵ": "v", "ԝ": "w", "х": "x", "у": "y", "ү": "y", "ԛ": "q",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j", "ω": "w",
    # Armenian
    "օ": "o", "ս": "u", "ո": "n", "հ": "h", "ց": "g", "զ": "q",
    # Latin look-alikes of Latin letters, and digits
    "ı": "i", "ȷ": "j", "ɡ": "g", "ɑ": "a", "ʏ": "y", "0": "o", "1": "l", "|": "l",
})


def _skeleton(text: str) -> str:
    if _SPOOF is not None:
        skeleton: str = _SPOOF.getSkeleton(0, text)
        return skeleton
    # UTS #39 sees "I" (capital i) as "l".
    text = "".join("l" if c == "I" else c.lower() if c.isupper() else c for c in text)
    return text.translate(_LOOKALIKES).replace("rn", "m").replace("vv", "w")


def nick_keys(nick: str) -> FrozenSet[str]:
    """What two nicks of one room must not share (one key is enough): the
    nick after Unicode NFKC (full-width letters, ligatures), case folding
    and the confusable skeleton of UTS #39 (Cyrillic "а" for Latin "a",
    "rn" for "m"...), in both orders, as the skeleton of a capital "I" is
    "l" but its case folding is "i": "alice", "ALICE", "\u0430lice",
    "\uff41\uff4c\uff49\uff43\uff45" and "aIice" all meet "alice"."""
    text = unicodedata.normalize("NFKC", nick)
    folded = _skeleton(text.casefold()).casefold()
    return frozenset((folded, _skeleton(text).casefold()))


class NickTaken(ValueError):
    pass


def check_room(room: object) -> str:
    """The room name, or raise ValueError saying what is wrong."""
    if not isinstance(room, str) or not ROOM_RE.fullmatch(room):
        raise ValueError("a room name is 1 to 32 letters, digits, '_' or '-'")
    return room


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; ``take()`` is
    False when there is none."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float = RATE, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
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

    def __init__(self, hub: Optional[Hub] = None, *, history: int = HISTORY,
                 presence_ttl: float = PRESENCE_TTL, rate: float = RATE, burst: int = BURST,
                 max_per_address: Optional[int] = MAX_PER_ADDRESS) -> None:
        self.hub = hub if hub is not None else Hub(history=history)
        self.history = history
        self.presence_ttl = presence_ttl
        self.rate = rate
        self.burst = burst
        #: WebSocket connections one client address may hold (None: no limit).
        self.max_per_address = max_per_address or None
        self.per_address: Dict[str, int] = {}  # remote address -> open connections
        self.worker = self.hub.worker_id  # host:pid:random, for Redis only
        # What the pages and /status see of this worker: the same for every
        # event of this process, but not its host name or pid.
        self.public_worker = hashlib.sha256(self.worker.encode()).hexdigest()[:12]
        # room -> {handler: nick}, this worker's members
        self.rooms: Dict[str, Dict["ChatHandler", str]] = {}
        self._ids = itertools.count(1)
        self._refresher: Optional["asyncio.Task[None]"] = None

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self.hub.start()
        if isinstance(self.hub, RedisHub):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_presence())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            try:
                await self._refresher
            except asyncio.CancelledError:
                pass
            self._refresher = None
        await self._presence_remove_all()
        await self.hub.close()

    def application(self, **settings: Any) -> web.Application:
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

    def status(self) -> Dict[str, Any]:
        hub = self.hub
        return {
            "worker": self.public_worker,
            "hub": type(hub).__name__,
            "state": hub.state,
            "buffered": getattr(hub, "buffered", 0),
            "rooms": {room: len(members) for room, members in self.rooms.items()},
            "stats": dict(getattr(hub, "stats", {})),
        }

    # -- events ----------------------------------------------------------------------

    def _event(self, kind: str, room: str, nick: Optional[str], **fields: Any) -> str:
        event = {"type": kind, "id": f"{self.public_worker}/{next(self._ids)}", "room": room,
                 "nick": nick, "ts": round(time.time(), 3)}
        event.update(fields)
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))

    def _take_nick(self, handler: "ChatHandler", room: str,
                   keys: FrozenSet[str]) -> Optional["ChatHandler"]:
        """The local member of ``room`` whose nick meets ``keys`` and that this
        page may replace (same claim: its own connection from before a
        reconnect), or None; raises :class:`NickTaken` if another page has it."""
        for other in self.rooms.get(room, ()):
            if other is not handler and not other.nick_keys.isdisjoint(keys):
                if handler.claim is not None and other.claim == handler.claim:
                    return other
                raise NickTaken(f"the nick {other.nick!r} is taken in #{room}")
        return None

    async def _nick_taken_elsewhere(self, room: str, keys: FrozenSet[str],
                                    claim: Optional[str]) -> bool:
        """Whether a member on another worker (Redis presence) meets ``keys``."""
        if not isinstance(self.hub, RedisHub):
            return False
        presence = self._presence_key(room)
        found = await self._redis_call(lambda r: r.zrangebyscore(presence, time.time(), "+inf"))
        for member in found or ():
            parts = member.decode("utf-8").split("\n")  # worker, number, claim, nick
            their_claim = parts[2] if len(parts) == 4 else ""
            if parts[0] != self.worker and not nick_keys(parts[-1]).isdisjoint(keys) and (
                    claim is None or their_claim != claim):
                return True
        return False

    async def join(self, handler: "ChatHandler", room: str, nick: str) -> Optional[Dict[str, Any]]:
        """Put ``handler`` in ``room`` as ``nick``; returns the welcome event.
        Raises :class:`NickTaken` if a member of the room has a nick that
        looks the same (:func:`nick_keys`)."""
        hub = self.hub
        if isinstance(hub, RedisHub) and hub.state == "connecting":
            # A worker that just started (pages reconnect to it at once): the
            # room's history and presence are in Redis, a moment away, and
            # this worker's own are empty. Wait for the first connection
            # (bounded: if Redis is not there, answer with what is here).
            try:
                await hub.wait_up(hub.connect_timeout + 1.0)
            except asyncio.TimeoutError:
                pass
        keys = nick_keys(nick)
        self._take_nick(handler, room, keys)
        if await self._nick_taken_elsewhere(room, keys, handler.claim):
            raise NickTaken(f"the nick {nick!r} is taken in #{room}")
        replaced = self._take_nick(handler, room, keys)  # again: that was an await
        if replaced is not None:
            # The same page, reconnected before its old connection was seen to drop.
            await self.leave(replaced)
            replaced.close(4000, "replaced by a newer connection of the same page")
        if handler.room is not None:
            await self.leave(handler)
        handler.room, handler.nick, handler.nick_keys = room, nick, keys
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
            "type": "welcome", "nick": nick, "room": room, "worker": self.public_worker,
            "members": await self.members(room), "history": history,
            "limits": {"text": MAX_TEXT, "bytes": MAX_MESSAGE_SIZE, "rate": self.rate, "burst": self.burst},
        }

    async def leave(self, handler: "ChatHandler") -> None:
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

    async def say(self, handler: "ChatHandler", text: str) -> None:
        room = handler.room
        assert room is not None  # joined
        result = await self.hub.publish(room, self._event("msg", room, handler.nick, text=text))
        if not result.accepted:
            handler.send_json({"type": "error", "error":
                               "the server is cut off from the other workers and its buffer is full: "
                               "your message reached this server's users only"})

    # -- presence ----------------------------------------------------------------------

    def _redis(self) -> Any:
        hub = self.hub
        if isinstance(hub, RedisHub) and hub.state == "up" and hub._session is not None:
            return hub._session.client
        return None

    def _presence_key(self, room: str) -> str:
        return f"{getattr(self.hub, 'prefix', 'wsfast:')}presence:{room}"

    def _presence_member(self, handler: "ChatHandler", nick: Optional[str] = None) -> str:
        return f"{self.worker}\n{handler.number}\n{handler.claim or ''}\n{nick or handler.nick}"

    async def _redis_call(self, make: Callable[[Any], Awaitable[Any]]) -> Any:
        client = self._redis()
        if client is None:
            return None
        try:
            return await asyncio.wait_for(make(client), 2.0)
        except Exception as exc:  # Redis went away: local presence until it is back
            log.debug("chat: presence not updated in Redis: %r", exc)
            return None

    async def _presence_add(self, handler: "ChatHandler") -> None:
        assert handler.room is not None  # joined
        key = self._presence_key(handler.room)
        member = self._presence_member(handler)
        await self._redis_call(lambda r: r.zadd(key, {member: time.time() + self.presence_ttl}))

    async def _presence_remove(self, handler: "ChatHandler", room: str) -> None:
        key = self._presence_key(room)
        member = self._presence_member(handler)
        await self._redis_call(lambda r: r.zrem(key, member))

    async def _presence_remove_all(self) -> None:
        async def remove(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for room, members in self.rooms.items():
                for handler in members:
                    pipe.zrem(self._presence_key(room), self._presence_member(handler))
            await pipe.execute()
        if self.rooms:
            await self._redis_call(remove)

    async def _refresh_presence(self) -> None:
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            if not self.rooms:
                continue

            async def refresh(r: Any) -> None:
                expires = time.time() + self.presence_ttl
                pipe = r.pipeline(transaction=False)
                for room, members in self.rooms.items():
                    key = self._presence_key(room)
                    pipe.zadd(key, {self._presence_member(h, n): expires for h, n in members.items()})
                    pipe.zremrangebyscore(key, "-inf", time.time())
                await pipe.execute()

            await self._redis_call(refresh)

    async def members(self, room: str) -> List[str]:
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
    def get(self) -> None:
        with open(CHAT_PAGE, "rb") as f:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Cache-Control", "no-cache")
            self.write(f.read())


class StatusHandler(web.RequestHandler):
    def initialize(self, chat: ChatServer) -> None:
        self.chat = chat

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.write(self.chat.status())


class ChatHandler(web.WebSocketHandler):
    """One page's connection: join a room, say things (see the module docstring)."""

    max_message_size = MAX_MESSAGE_SIZE
    _numbers = itertools.count(1)

    def initialize(self, chat: ChatServer) -> None:
        self.chat = chat
        self.room: Optional[str] = None
        self.nick: Optional[str] = None
        self.nick_keys: FrozenSet[str] = frozenset()
        # hash of the page's secret: a reconnect may take its nick back
        self.claim: Optional[str] = None
        self.number = next(ChatHandler._numbers)
        self.bucket = TokenBucket(chat.rate, chat.burst)
        self._counted: Optional[str] = None

    def prepare(self) -> None:
        limit = self.chat.max_per_address
        address = self.request.remote_ip
        # No address (a Unix socket without trusted_proxies): no limit to apply.
        if limit is not None and address and self.chat.per_address.get(address, 0) >= limit:
            raise web.HTTPError(429, headers={"Retry-After": "10"})

    def open(self) -> None:
        address = self.request.remote_ip
        if not address:
            return
        self._counted = address
        per_address = self.chat.per_address
        per_address[address] = per_address.get(address, 0) + 1

    def _uncount(self) -> None:
        address, self._counted = self._counted, None
        if address is not None:
            per_address = self.chat.per_address
            left = per_address.get(address, 1) - 1
            if left > 0:
                per_address[address] = left
            else:
                per_address.pop(address, None)

    def send_json(self, obj: Dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        except web.WebSocketClosedError:
            pass

    async def on_message(self, message: Union[str, bytes]) -> None:
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
                claim = data.get("claim")
                if claim is not None and (not isinstance(claim, str) or not 16 <= len(claim) <= 128):
                    raise ValueError("claim: a random string of 16 to 128 characters")
                if claim is not None:
                    self.claim = hashlib.sha256(claim.encode("utf-8", "replace")).hexdigest()[:32]
                welcome = await self.chat.join(self, room, nick)
            except ValueError as exc:  # NickTaken too
                return self.send_json({"type": "error", "error": str(exc)})
            if welcome is not None:
                self.send_json(welcome)
        else:
            return self.close(1008, "unknown message type")

    def on_close(self) -> Optional[Awaitable[None]]:
        self._uncount()
        self.chat.hub.unsubscribe_all(self)
        if self.room is not None:
            return self.chat.leave(self)  # a coroutine: the server runs it
        return None


async def serve(chat: ChatServer, host: Optional[str] = "127.0.0.1", port: int = 8888, *,
                reuse_port: bool = False, ssl: Optional[SSLContext] = None,
                path: Optional[str] = None,
                sock: Union[socket.socket, Iterable[socket.socket], None] = None,
                on_start: Optional[Callable[[web.Server], object]] = None,
                shutdown_timeout: Optional[float] = None, **settings: Any) -> None:
    """Run ``chat`` (a :class:`ChatServer`) until SIGINT/SIGTERM: start its
    hub, listen, then close every WebSocket (1001), wait for the leave
    events and close the hub."""
    await chat.start()
    app = chat.application(**settings)
    try:
        server = await app.listen(port, host=host, reuse_port=reuse_port, ssl=ssl, path=path,
                                  sock=sock)
        # The signals first, then the news (as wsfast.run): a SIGTERM sent
        # as soon as we are ready (a supervisor's rolling restart) is a
        # graceful stop, not Python's default death.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                pass
        if on_start is not None:
            on_start(server)
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


async def _drained(hub: RedisHub) -> None:
    while hub.buffered:
        await asyncio.sleep(0.01)


def run(chat: ChatServer, host: Optional[str] = "127.0.0.1", port: int = 8888, *,
        use_uvloop: Optional[bool] = None, **kwargs: Any) -> None:
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
