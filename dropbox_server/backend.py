"""Shared services behind both sites: storage, the bounded Argon2 pool, sessions, CSRF, limits.

One Backend per process, opened once however many sites use it (reference-counted), so the
public site and the staff API can start and stop in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from dropbox_envelope.keys import SecretKey
from dropbox_envelope.staffauth import NonceCache

from .config import Config
from .errors import StorageError
from .questionnaire import DEFAULT_QUESTIONNAIRE, Questionnaire, load_questionnaire
from .retention import Maintenance
from .storage import Clock, Storage, utc_today

__all__ = ["LANES", "Backend", "Busy", "Lane", "Session"]

T = TypeVar("T")


class Busy(Exception):
    """Too much work is queued; the person should try again in a minute."""


Lane = Literal["new_report", "login"]
LANES: tuple[Lane, ...] = ("new_report", "login")
"""Who asks for Argon2id, in the order a free thread goes to them: the return code of a new
report (someone is sending a report right now), then return-code checks at login (which a flood
of guessed codes can saturate)."""

# Argon2id threads run at a lower CPU priority than the event loop (Linux sets nice values per
# thread): on a machine with few cores, two threads each wanting a whole core otherwise take
# turns with the loop, and every page waits (measured: event-loop lag p99 of 100-180 ms on 2
# cores under a flood of codes). When the loop is idle they get the CPU all the same.
ARGON2_NICE = 10


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted: no harm
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ARGON2_NICE)


class CodeWorkers:
    """A small pool of threads for Argon2id, fed from one bounded queue per lane.

    A free thread takes the oldest waiting job of the first lane in :data:`LANES`, so new
    reports never queue behind login attempts; a lane whose queue is full fails fast with
    :class:`Busy` instead of piling up work (and memory) while the event loop stays free. A
    slot is released when Argon2id really finished, even if the request gave up before."""

    def __init__(self, workers: int, queues: Mapping[Lane, int]) -> None:
        workers = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="srdb-argon2",
                                        initializer=_lower_priority)
        self._idle = workers
        self._queue_limits = dict(queues)
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque()
                                                                   for lane in LANES}

    def has_room(self, lane: Lane) -> bool:
        """Would a job in ``lane`` be accepted now (run or queued)?"""
        return self._idle > 0 or len(self._waiting[lane]) < self._queue_limits.get(lane, 0)

    async def run(self, fn: Callable[..., T], *args: Any, lane: Lane) -> T:
        loop = asyncio.get_running_loop()
        if self._idle > 0:
            self._idle -= 1
        else:
            if len(self._waiting[lane]) >= self._queue_limits.get(lane, 0):
                raise Busy()
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting[lane].append(turn)
            try:
                await turn  # resolved by _next(), which hands over its thread
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._next()  # the thread was ours already: pass it on
                else:
                    self._waiting[lane].remove(turn)
                raise
        job = self._pool.submit(fn, *args)
        job.add_done_callback(lambda _job: self._release_from_thread(loop))
        return await asyncio.wrap_future(job, loop=loop)

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing waits any more
            loop.call_soon_threadsafe(self._next)

    def _next(self) -> None:
        """A thread is free: give it to the first waiting job, by lane order, or keep it."""
        for lane in LANES:
            waiting = self._waiting[lane]
            while waiting:
                turn = waiting.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._idle += 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Session:
    """A logged-in source. The reply secret key lives in memory only, for the session's life."""

    source_id: str
    recipient: str
    secret_key: SecretKey
    expires: float


class Sessions:
    """Logged-in sources by session token, each ending ``minutes`` after its last use."""

    def __init__(self, minutes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = minutes * 60
        self._clock = clock
        self._items: dict[str, Session] = {}

    def create(self, source_id: str, recipient: str, secret_key: SecretKey) -> str:
        self._expire()
        token = secrets.token_urlsafe(32)
        self._items[token] = Session(source_id, recipient, secret_key,
                                     self._clock() + self._ttl)
        return token

    def get(self, token: str | None) -> Session | None:
        self._expire()
        session = self._items.get(token or "")
        if session is not None:
            session.expires = self._clock() + self._ttl  # idle timeout
        return session

    def end(self, token: str | None) -> None:
        self._items.pop(token or "", None)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._items.items() if s.expires < now]:
            del self._items[token]


class Backend:
    def __init__(self, config: Config, *, clock: Clock = utc_today) -> None:
        self.config = config
        self.storage = Storage(config.data_dir, clock=clock)
        self.maintenance = Maintenance(self.storage, config.limits, clock=clock)
        self.sessions = Sessions(config.limits.session_minutes)
        self.nonces = NonceCache()
        self.started_at = int(time.time())
        self.uploads_in_progress = 0
        self.questionnaire = Questionnaire("", "en", ())  # loaded by acquire()
        self._csrf_key = b""
        self._users = 0
        self._lock = asyncio.Lock()
        self.code_workers: CodeWorkers | None = None

    async def acquire(self) -> None:
        async with self._lock:
            if self._users == 0:
                # The questionnaire first: a broken file stops start-up before anything opens.
                self.questionnaire = await asyncio.to_thread(
                    load_questionnaire, self.config.questionnaire or DEFAULT_QUESTIONNAIRE)
                await self.storage.open()
                try:
                    self._csrf_key = await asyncio.to_thread(self._load_csrf_key)
                    await self.maintenance.start()  # expiry before serving, then daily
                except BaseException:
                    await self.storage.close()
                    raise
                limits = self.config.limits
                self.code_workers = CodeWorkers(limits.code_workers, {
                    "new_report": limits.new_report_code_queue, "login": limits.code_queue})
            self._users += 1

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                await self.maintenance.stop()
                await self.storage.close()
                if self.code_workers is not None:
                    self.code_workers.shutdown()
                    self.code_workers = None

    async def run_argon2(self, fn: Callable[..., T], *args: Any, lane: Lane = "login") -> T:
        """Run ``fn(*args)`` (an Argon2id derivation) on the pool; :class:`Busy` when the
        lane's queue is full."""
        if self.code_workers is None:
            raise RuntimeError("backend not started")
        return await self.code_workers.run(fn, *args, lane=lane)

    def argon2_has_room(self, lane: Lane = "login") -> bool:
        """Whether :meth:`run_argon2` in ``lane`` would be accepted now: lets a handler refuse
        a flood before doing any other work for it."""
        return self.code_workers is not None and self.code_workers.has_room(lane)

    # -- CSRF: a random cookie per browser session, and the form field is its HMAC ----------

    def _load_csrf_key(self) -> bytes:
        # Kept on disk so a form left open across a restart still submits (people type long
        # reports; losing one to an expired token is worse than the risk this key carries).
        folder = self.config.data_dir / "secrets"
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            raise StorageError(f"{folder} must be a real folder, not a symlink")
        path = folder / "csrf.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:  # ELOOP: a planted symlink
                raise StorageError(f"{path} must be a regular file, not a symlink") from None
            with os.fdopen(fd, "rb") as handle:
                return handle.read()
        key = secrets.token_bytes(32)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        return key

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self._csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.csrf_token(cookie), token)
