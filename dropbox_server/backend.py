"""Shared services behind both sites: storage, the bounded Argon2 pool, sessions, CSRF, limits.

One Backend per process, opened once however many sites use it (reference-counted), so the
public site and the staff API can start and stop in any order.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from dropbox_envelope.keys import SecretKey
from dropbox_envelope.staffauth import NonceCache

from .config import Config
from .errors import StorageError
from .questionnaire import DEFAULT_QUESTIONNAIRE, Questionnaire, load_questionnaire
from .retention import Maintenance
from .storage import Clock, Storage, utc_today

__all__ = ["Backend", "Busy", "Session"]

T = TypeVar("T")


class Busy(Exception):
    """Too much work is queued; the person should try again in a minute."""


class CodeWorkers:
    """A small thread pool for Argon2id with a bounded queue: overflow fails fast with Busy
    instead of piling up work (and memory) while the event loop stays free."""

    def __init__(self, workers: int, queue: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="srdb-argon2")
        self._capacity = max(1, workers) + queue
        self._in_flight = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._in_flight >= self._capacity:
            raise Busy()
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._in_flight -= 1

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
    def __init__(self, minutes: int) -> None:
        self._ttl = minutes * 60
        self._items: dict[str, Session] = {}

    def create(self, source_id: str, recipient: str, secret_key: SecretKey) -> str:
        self._expire()
        token = secrets.token_urlsafe(32)
        self._items[token] = Session(source_id, recipient, secret_key,
                                     time.monotonic() + self._ttl)
        return token

    def get(self, token: str | None) -> Session | None:
        self._expire()
        session = self._items.get(token or "")
        if session is not None:
            session.expires = time.monotonic() + self._ttl  # idle timeout
        return session

    def end(self, token: str | None) -> None:
        self._items.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
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
                self.code_workers = CodeWorkers(self.config.limits.code_workers,
                                                self.config.limits.code_queue)
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

    async def run_argon2(self, fn: Callable[..., T], *args: Any) -> T:
        if self.code_workers is None:
            raise RuntimeError("backend not started")
        return await self.code_workers.run(fn, *args)

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
