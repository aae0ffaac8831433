"""Where ciphertext and the minimum of metadata live: files plus one SQLite database.

Rules (docs/THREAT_MODEL.md): only ciphertext files and coarse metadata; random 128-bit ids;
dates at day granularity; nothing about a request (IP, user agent, exact time) ever.

Durability: an envelope is written to ``tmp/``, fsync'd, renamed into ``store/`` and the folder
fsync'd, and only then recorded in the database (WAL, synchronous=FULL). The row is what makes an
envelope exist, so a crash leaves at worst an unlisted file, which start-up removes. The disk
starts writing the file while it arrives (:mod:`.writeback`), so that fsync has little left.

Crypto-erase (docs/PROTOCOL.md §11): every stored file is wrapped under its own random key, kept
only in its database row (``secure_delete=ON``). Deleting an item deletes the row, then
checkpoints the WAL with TRUNCATE so no old page holding the key stays in the WAL file, then
unlinks the file. Whatever of the file's bytes a disk keeps afterwards is unreadable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import sqlite3
import stat
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from dropbox_envelope.atrest import Wrapper, new_wrap_key
from dropbox_envelope.codes import SourceCredentials
from dropbox_envelope.keys import KdfParams

from .errors import StorageError
from .offload import finish, run_to_the_end
from .wrapping import StoredFile, normalise_times, open_for_reading
from .writeback import WRITEBACK_AFTER, start_writeback

__all__ = ["EnvelopeRow", "ReplyRow", "SourceRow", "Storage", "Upload", "fsync_dir", "new_id",
           "today", "utc_today"]

log = logging.getLogger(__name__)

Clock = Callable[[], dt.date]
T = TypeVar("T")
Table = Literal["envelopes", "replies"]

SCHEMA_VERSION = 2
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE sources (
        id TEXT PRIMARY KEY,
        locator TEXT NOT NULL UNIQUE,
        salt BLOB NOT NULL,
        opslimit INTEGER NOT NULL,
        memlimit INTEGER NOT NULL,
        verifier BLOB NOT NULL,
        public_key TEXT NOT NULL,
        recipient TEXT NOT NULL,
        created_day TEXT NOT NULL
    );
    CREATE TABLE envelopes (
        id TEXT PRIMARY KEY,
        source_id TEXT REFERENCES sources(id),
        recipient TEXT NOT NULL,
        day TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE TABLE replies (
        id TEXT PRIMARY KEY,
        source_id TEXT NOT NULL REFERENCES sources(id),
        day TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        seen INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX replies_by_source ON replies(source_id);
    """,
    # v2: at-rest wrapping (a per-item key: crypto-erase) and retention (day of the last visit).
    # Rows from v1 keep wrap_key NULL until _wrap_legacy() has wrapped their files.
    2: """
    ALTER TABLE envelopes ADD COLUMN wrap_key BLOB;
    ALTER TABLE replies ADD COLUMN wrap_key BLOB;
    ALTER TABLE sources ADD COLUMN last_visit_day TEXT;
    UPDATE sources SET last_visit_day = created_day;
    CREATE INDEX envelopes_by_source ON envelopes(source_id);
    CREATE INDEX sources_by_last_visit ON sources(last_visit_day);
    """,
}


_SOURCE_COLUMNS = ("SELECT id, locator, salt, opslimit, memlimit, verifier, public_key, recipient, "
                   "created_day, last_visit_day FROM sources ")
_SOURCE_BY_ID = _SOURCE_COLUMNS + "WHERE id = ?"
_SOURCE_BY_LOCATOR = _SOURCE_COLUMNS + "WHERE locator = ?"


def new_id() -> str:
    """A random 128-bit identifier, hex."""
    return secrets.token_hex(16)


def utc_today() -> dt.date:
    """The UTC date, the finest time granularity this server stores."""
    return dt.datetime.now(dt.UTC).date()


def today() -> str:
    """The UTC date as ``YYYY-MM-DD``."""
    return utc_today().isoformat()


@dataclass(frozen=True)
class SourceRow:
    id: str
    locator: str
    salt: bytes
    params: KdfParams
    verifier: bytes
    public_key: str
    recipient: str
    created_day: str
    last_visit_day: str


@dataclass(frozen=True)
class EnvelopeRow:
    id: str
    source_id: str | None
    recipient: str
    day: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReplyRow:
    id: str
    source_id: str
    day: str
    size: int
    sha256: str
    seen: bool


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _normalise_dir(path: Path) -> None:
    # A folder's mtime would otherwise record when its last file was added or removed.
    with contextlib.suppress(OSError):
        normalise_times(path)


class Upload:
    """A ciphertext file being received into ``tmp/``. Not visible to anyone until committed.

    What the callers write is the envelope; what reaches the disk is that envelope wrapped under
    :attr:`wrap_key` (drawn here, stored in the row at commit). ``size`` and ``sha256`` are those
    of the envelope, which is what staff download and verify.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False
        self.wrap_key = new_wrap_key()
        self._wrapper = Wrapper(self.wrap_key)
        self._written = 0  # bytes of the file written so far
        self._hinted = 0  # of those, handed to start_writeback (writeback.py says why)
        self._hinting = True  # until a hint fails: the next would fail too

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Blocking: hash, wrap and write ``data`` (each releases the GIL while it works:
        :mod:`.offload` runs this on a thread, in batches of about 1 MiB)."""
        # Hashed here, not on the shared digest thread: since the at-rest wrap is AEGIS-256,
        # handing each batch over and joining it cost more than the hash (benchmarks/README.md,
        # a: 388-434 MB/s with the hand-over, 456-476 without), and one digest thread for the
        # whole process made concurrent uploads wait for each other.
        self._hash.update(data)
        self.size += len(data)
        self._write_raw(self._wrapper.feed(data))

    def _write_raw(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._written += len(data)
        if self._hinting and self._written - self._hinted >= WRITEBACK_AFTER:
            # On this thread, not another: the kernel work it starts (allocating blocks,
            # queueing the writes) then overlaps the event loop's, and it is the upload whose
            # bytes outrun the disk that waits when the disk's queue is full.
            self._hinting = start_writeback(self._fd, self._hinted,
                                            self._written - self._hinted)
            self._hinted = self._written

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def sync_and_close(self) -> None:
        """Blocking: write the final block, normalise the times, fsync and close (run in a
        thread)."""
        self._write_raw(self._wrapper.finish())
        normalise_times(self._fd)
        os.fsync(self._fd)
        os.close(self._fd)
        self.closed = True

    def discard(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self.closed = True
        self.wrap_key = b""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Storage:
    """The data folder: ``db/``, ``store/envelopes``, ``store/replies``, ``tmp/``."""

    def __init__(self, data_dir: Path, *, clock: Clock = utc_today) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.db_path = data_dir / "db" / "dropbox.sqlite"
        self.envelopes_dir = data_dir / "store" / "envelopes"
        self.replies_dir = data_dir / "store" / "replies"
        self.tmp_dir = data_dir / "tmp"
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # True while a deleted key may still sit in the WAL (a checkpoint was blocked).
        self.erase_pending = False
        self._settle_task: asyncio.Task[None] | None = None
        # Commits in progress, kept even when their caller was cancelled: close() waits for
        # them (at shutdown aiohttp cancels handlers and goes on to close the storage).
        self._commits: set[asyncio.Task[Any]] = set()
        self._closing = False

    def today(self) -> str:
        return self.clock().isoformat()

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._prepare_folders)
        db = await aiosqlite.connect(self.db_path, isolation_level=None)
        self._db = db
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA secure_delete=ON")
            await db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
            await self._wrap_legacy()
            await self._remove_orphans()
        except BaseException:
            # aiosqlite's worker thread is not a daemon: left open, it keeps the process alive
            # after a failed start (the server would hang instead of exiting with the message).
            await self.close()
            raise

    async def close(self) -> None:
        self._closing = True
        while self._commits:
            await asyncio.wait(set(self._commits))
        if self._settle_task is not None:
            self._settle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settle_task
            self._settle_task = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    def _prepare_folders(self) -> None:
        # store/ first: mkdir(parents=True) below would otherwise follow a planted symlink.
        for folder in (self.envelopes_dir.parent, self.db_path.parent, self.envelopes_dir,
                       self.replies_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = folder.lstat()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise StorageError(f"{folder} must be a real folder, not a symlink")
        # Anything in tmp/ is an upload that never completed: it was never acknowledged.
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file() or leftover.is_symlink():
                leftover.unlink()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StorageError("storage is not open")
        return self._db

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StorageError(f"the database schema (v{version}) is newer than this software "
                               f"(v{SCHEMA_VERSION}); upgrade the software")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            await self.db.executescript(
                "BEGIN;" + _MIGRATIONS[target] + f"PRAGMA user_version={target}; COMMIT;")

    async def _wrap_legacy(self) -> None:
        """Wrap the files of rows stored before schema v2 (``wrap_key`` NULL).

        Each item moves to a new id: its wrapped copy is written under the new name first, then
        one transaction gives the row the new id and its key, then the plain file is removed.
        A crash at any point leaves either the old row and plain file (done again next start)
        or the new row and wrapped file; the other file is an orphan that start-up removes.
        """
        for table, folder in (("envelopes", self.envelopes_dir),
                              ("replies", self.replies_dir)):
            async with self.db.execute(
                    f"SELECT id FROM {table} WHERE wrap_key IS NULL") as cur:  # noqa: S608
                legacy = [str(r[0]) for r in await cur.fetchall()]
            for old_id in legacy:
                old_path = folder / f"{old_id}.srdb"
                upload = self.new_upload()
                try:
                    await run_to_the_end(_copy_into, old_path, upload)
                except FileNotFoundError:
                    upload.discard()
                    log.warning("a stored item from before schema v2 has no file; it stays "
                                "listed but cannot be served")
                    continue
                except BaseException:
                    upload.discard()
                    raise
                new = new_id()
                await self._place(upload, folder / f"{new}.srdb")
                async with self._write_lock:
                    await self.db.execute(
                        f"UPDATE {table} SET id = ?, wrap_key = ? "  # noqa: S608
                        "WHERE id = ? AND wrap_key IS NULL", (new, upload.wrap_key, old_id))
                await asyncio.to_thread(self._unlink_durably, old_path)
            if legacy:
                log.info("wrapped %d stored %s from before schema v2", len(legacy), table)

    async def _remove_orphans(self) -> None:
        """Files with no row are envelopes whose commit was interrupted: never acknowledged."""
        async with self.db.execute("SELECT id FROM envelopes") as cur:
            known_env = {r[0] for r in await cur.fetchall()}
        async with self.db.execute("SELECT id FROM replies") as cur:
            known_rep = {r[0] for r in await cur.fetchall()}

        def sweep() -> None:
            for folder, known in ((self.envelopes_dir, known_env), (self.replies_dir, known_rep)):
                for path in folder.iterdir():
                    if path.is_dir() and not path.is_symlink():
                        raise StorageError(f"{path} is a folder; the store holds only files. "
                                           "Move it out of the data folder and start again.")
                    if path.is_symlink() or not path.is_file() or path.stem not in known or \
                            path.suffix != ".srdb":
                        path.unlink()
        await asyncio.to_thread(sweep)

    # -- uploads ------------------------------------------------------------------------------

    def new_upload(self) -> Upload:
        return Upload(self.tmp_dir / f"{new_id()}.part")

    async def _place(self, upload: Upload, final: Path) -> None:
        folder = final.parent

        def durable_rename() -> None:
            if not upload.closed:
                upload.sync_and_close()
            os.replace(upload.path, final)
            _normalise_dir(folder)
            _normalise_dir(self.tmp_dir)
            fsync_dir(folder)
            fsync_dir(self.tmp_dir)
        # Plain to_thread: the commits that call this run to their end as a whole (finish()
        # and close() waiting for them), so nothing cancels this wait half-way.
        await asyncio.to_thread(durable_rename)

    async def commit_envelope(self, upload: Upload, *, recipient: str,
                              source_id: str | None = None,
                              new_source: tuple[str, SourceCredentials] | None = None
                              ) -> tuple[str, str | None]:
        """Make an uploaded envelope durable and listed; returns (envelope id, source id).

        With ``new_source`` (locator, credentials) the source is created in the same
        transaction, so a failure never leaves a source without its first report. A cancelled
        caller waits until the commit has finished or been undone, and so does :meth:`close`
        (at shutdown aiohttp cancels the handler, then the app's clean-up closes the storage):
        cancelled half-way, a COMMIT already queued on the database thread would still run, and
        the clean-up would then delete the file of a listed envelope. Raises StorageError once
        the storage is closing.
        """
        self._check_open_for_commits()
        return await finish(self._track(
            self._commit_envelope(upload, recipient, source_id, new_source)))

    async def _commit_envelope(self, upload: Upload, recipient: str, source_id: str | None,
                               new_source: tuple[str, SourceCredentials] | None
                               ) -> tuple[str, str | None]:
        envelope_id = new_id()
        final = self.envelope_path(envelope_id)
        try:
            await self._place(upload, final)
            async with self._write_lock:
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    if new_source is not None:
                        source_id = await self._insert_source(*new_source, recipient)
                    await self.db.execute(
                        "INSERT INTO envelopes (id, source_id, recipient, day, size, sha256, "
                        "wrap_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (envelope_id, source_id, recipient, self.today(), upload.size,
                         upload.sha256, upload.wrap_key))
                    await self.db.execute("COMMIT")
                except BaseException:
                    await self.db.execute("ROLLBACK")
                    raise
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return envelope_id, source_id

    async def commit_reply(self, upload: Upload, *, source_id: str) -> str:
        """Make an uploaded reply durable and listed (to the end, as :meth:`commit_envelope`)."""
        self._check_open_for_commits()
        return await finish(self._track(self._commit_reply(upload, source_id)))

    def _check_open_for_commits(self) -> None:
        if self._db is None or self._closing:
            raise StorageError("the storage is closing: nothing more can be stored")

    def _track(self, commit: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(commit)
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)
        return task

    async def _commit_reply(self, upload: Upload, source_id: str) -> str:
        reply_id = new_id()
        final = self.reply_path(reply_id)
        try:
            await self._place(upload, final)
            async with self._write_lock:
                await self.db.execute(
                    "INSERT INTO replies (id, source_id, day, size, sha256, wrap_key) "
                    "VALUES (?,?,?,?,?,?)",
                    (reply_id, source_id, self.today(), upload.size, upload.sha256,
                     upload.wrap_key))
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return reply_id

    # -- reading stored files -----------------------------------------------------------------

    async def _open_stored(self, table: Table, folder: Path, item_id: str) -> StoredFile | None:
        """The item's file opened for reading its envelope; None if there is no such row.
        Raises FileNotFoundError (file gone) or WrappedFileCorrupted (damaged)."""
        async with self.db.execute(f"SELECT wrap_key FROM {table} WHERE id = ?",  # noqa: S608
                                   (item_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        if row[0] is None:  # a pre-v2 item whose file was missing at migration
            raise FileNotFoundError(item_id)
        return await asyncio.to_thread(StoredFile.open, folder / f"{item_id}.srdb",
                                       bytes(row[0]))

    async def open_envelope(self, envelope_id: str) -> StoredFile | None:
        return await self._open_stored("envelopes", self.envelopes_dir, envelope_id)

    async def open_reply(self, reply_id: str) -> StoredFile | None:
        return await self._open_stored("replies", self.replies_dir, reply_id)

    # -- sources ------------------------------------------------------------------------------

    async def create_source(self, locator: str, creds: SourceCredentials, recipient: str) -> str:
        async with self._write_lock:
            return await self._insert_source(locator, creds, recipient)

    async def _insert_source(self, locator: str, creds: SourceCredentials,
                             recipient: str) -> str:
        source_id = new_id()
        day = self.today()
        await self.db.execute(
            "INSERT INTO sources (id, locator, salt, opslimit, memlimit, verifier, "
            "public_key, recipient, created_day, last_visit_day) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (source_id, locator, creds.salt, creds.params.opslimit, creds.params.memlimit,
             creds.verifier, creds.public_key.encode(), recipient, day, day))
        return source_id

    async def record_visit(self, source_id: str) -> None:
        """A source logged in today: its retention period starts again."""
        day = self.today()
        async with self._write_lock:
            await self.db.execute(
                "UPDATE sources SET last_visit_day = ? WHERE id = ? AND last_visit_day IS NOT ?",
                (day, source_id, day))

    async def locator_taken(self, locator: str) -> bool:
        async with self.db.execute("SELECT 1 FROM sources WHERE locator = ?", (locator,)) as cur:
            return await cur.fetchone() is not None

    async def source_by_locator(self, locator: str) -> SourceRow | None:
        return await self._source("locator", locator)

    async def source(self, source_id: str) -> SourceRow | None:
        return await self._source("id", source_id)

    async def _source(self, column: str, value: str) -> SourceRow | None:
        query = _SOURCE_BY_ID if column == "id" else _SOURCE_BY_LOCATOR
        async with self.db.execute(query, (value,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return SourceRow(row[0], row[1], bytes(row[2]), KdfParams(row[3], row[4]), bytes(row[5]),
                         row[6], row[7], row[8], row[9])

    # -- envelopes (staff) --------------------------------------------------------------------

    async def list_envelopes(self) -> list[EnvelopeRow]:
        async with self.db.execute(
                "SELECT id, source_id, recipient, day, size, sha256 FROM envelopes "
                "ORDER BY day, id") as cur:
            return [EnvelopeRow(*r) for r in await cur.fetchall()]

    async def envelope(self, envelope_id: str) -> EnvelopeRow | None:
        async with self.db.execute(
                "SELECT id, source_id, recipient, day, size, sha256 FROM envelopes WHERE id = ?",
                (envelope_id,)) as cur:
            row = await cur.fetchone()
        return EnvelopeRow(*row) if row else None

    def envelope_path(self, envelope_id: str) -> Path:
        return self.envelopes_dir / f"{envelope_id}.srdb"

    async def delete_envelope(self, envelope_id: str) -> bool:
        """Forget an envelope (after staff acknowledged it), destroying its key; True if it
        existed."""
        async with self._write_lock:
            cur = await self.db.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))
            existed = cur.rowcount > 0
            if existed:
                await self._checkpoint_erased()
        await asyncio.to_thread(self._unlink_durably, self.envelope_path(envelope_id))
        return existed

    def _unlink_durably(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _normalise_dir(path.parent)
        fsync_dir(path.parent)

    async def _checkpoint_erased(self) -> None:
        """Move every committed page into the database file (where secure_delete has zeroed the
        deleted row) and truncate the WAL, whose older frames still hold the row as it was.
        Call with the write lock held. If a reader (a backup) blocks it, it is owed: retried by
        :meth:`settle_erasure` and after the next deletion."""
        try:
            async with self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                row = await cur.fetchone()
            done = row is not None and int(row[0]) == 0
        except sqlite3.OperationalError:
            # "database table is locked": a statement of ours (another request's listing) is
            # still reading. The deletion itself is committed; only the WAL cleanup waits.
            done = False
        self.erase_pending = not done
        if self.erase_pending:
            log.warning("a deleted item's key may stay in the WAL until the next checkpoint "
                        "(the database is being read); retrying shortly")
            self._schedule_settle()

    def _schedule_settle(self, delay: float = 0.5) -> None:
        if self._settle_task is not None and not self._settle_task.done():
            return

        async def retry() -> None:
            await asyncio.sleep(delay)
            self._settle_task = None
            await self.settle_erasure()
        self._settle_task = asyncio.get_running_loop().create_task(retry())

    async def settle_erasure(self, *, force: bool = False) -> None:
        """Checkpoint now if an erasure is owed (or always, with ``force``)."""
        if self.erase_pending or force:
            async with self._write_lock:
                await self._checkpoint_erased()

    # -- replies ------------------------------------------------------------------------------

    async def list_replies(self, source_id: str) -> list[ReplyRow]:
        async with self.db.execute(
                "SELECT id, source_id, day, size, sha256, seen FROM replies WHERE source_id = ? "
                "ORDER BY day, rowid", (source_id,)) as cur:
            return [ReplyRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]))
                    for r in await cur.fetchall()]

    def reply_path(self, reply_id: str) -> Path:
        return self.replies_dir / f"{reply_id}.srdb"

    async def mark_replies_seen(self, source_id: str) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE replies SET seen = 1 WHERE source_id = ?", (source_id,))

    async def delete_reply(self, source_id: str, reply_id: str) -> bool:
        async with self._write_lock:
            cur = await self.db.execute("DELETE FROM replies WHERE id = ? AND source_id = ?",
                                        (reply_id, source_id))
            existed = cur.rowcount > 0
            if existed:
                await self._checkpoint_erased()
        if existed:
            await asyncio.to_thread(self._unlink_durably, self.reply_path(reply_id))
        return existed

    async def sources_with_unseen_replies(self) -> list[dict[str, Any]]:
        async with self.db.execute(
                "SELECT source_id, COUNT(*) FROM replies WHERE seen = 0 GROUP BY source_id "
                "ORDER BY source_id") as cur:
            return [{"source_id": r[0], "unread_replies": r[1]} for r in await cur.fetchall()]

    # -- retention ----------------------------------------------------------------------------

    async def inactive_sources(self, last_visit_before: str) -> list[str]:
        """Sources last seen before that day that no longer have a report waiting."""
        async with self.db.execute(
                "SELECT id FROM sources WHERE last_visit_day < ? AND NOT EXISTS "
                "(SELECT 1 FROM envelopes WHERE envelopes.source_id = sources.id) "
                "ORDER BY id", (last_visit_before,)) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def delete_source(self, source_id: str, *, last_visit_before: str) -> int | None:
        """Delete an inactive source with its replies (crypto-erased); the number of replies,
        or None if it was not deleted: gone already, visited since, or a report of it is
        waiting (checked in the same transaction, so a report arriving meanwhile wins)."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                async with self.db.execute(
                        "SELECT 1 FROM sources WHERE id = ? AND last_visit_day < ? AND NOT EXISTS "
                        "(SELECT 1 FROM envelopes WHERE envelopes.source_id = sources.id)",
                        (source_id, last_visit_before)) as cur:
                    expired = await cur.fetchone() is not None
                if not expired:
                    await self.db.execute("ROLLBACK")
                    return None
                async with self.db.execute("SELECT id FROM replies WHERE source_id = ?",
                                           (source_id,)) as cur:
                    replies = [str(r[0]) for r in await cur.fetchall()]
                await self.db.execute("DELETE FROM replies WHERE source_id = ?", (source_id,))
                await self.db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self._checkpoint_erased()
        for reply_id in replies:
            await asyncio.to_thread(self._unlink_durably, self.reply_path(reply_id))
        return len(replies)

    async def waiting_days(self) -> list[tuple[str, int]]:
        """(day received, number of reports) for every report not yet fetched."""
        async with self.db.execute(
                "SELECT day, COUNT(*) FROM envelopes GROUP BY day ORDER BY day") as cur:
            return [(str(r[0]), int(r[1])) for r in await cur.fetchall()]

    async def normalise_stored_times(self) -> None:
        """Set every stored file's and folder's times to the epoch again. Besides repairing
        anything touched from outside, this moves the files' change times (which no process
        can set) to the time of this sweep, so they no longer tell when each file arrived."""
        def sweep() -> None:
            for folder in (self.envelopes_dir, self.replies_dir, self.tmp_dir):
                for path in folder.iterdir():
                    if path.is_file() and not path.is_symlink():
                        with contextlib.suppress(OSError):
                            normalise_times(path)
                _normalise_dir(folder)
        await asyncio.to_thread(sweep)


def _copy_into(path: Path, upload: Upload) -> None:
    """Stream a plain file into an upload (which wraps it) and close the upload (blocking)."""
    fd = open_for_reading(path)
    try:
        while block := os.read(fd, 1024 * 1024):
            upload.write(block)
    finally:
        os.close(fd)
    upload.sync_and_close()

