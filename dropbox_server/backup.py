"""`dropbox-server backup` and `dropbox-server restore`: a consistent snapshot of a data folder,
taken while the server may be running, and bringing it back into a new folder.

A backup is an uncompressed tar file (everything in it is ciphertext, keys or small text)::

    srdb-backup.json            {"format": "srdb-backup", "version": 1, "schema": N}
    dropbox.toml                and any other top-level file (a questionnaire)
    keys/ secrets/ onion/       public keys, the CSRF key, onion service keys
    store/envelopes/<id>.srdb   wrapped ciphertext, one per database row
    store/replies/<id>.srdb
    db/dropbox.sqlite           last

Every entry has mode 0600 (folders 0700), owner 0 and modification time 0 (the epoch), so the
archive records no times. ``tor/`` (tor's own cache) and ``tmp/`` are left out.

Consistency: the database is copied first with SQLite's online backup API into memory (a
snapshot even while the server writes), then the file of every row in that snapshot is copied.
Stored files never change once written, so each copy is exact. A file that disappeared between
the snapshot and its copy was deleted by the server meanwhile (acknowledged or expired: the row
goes first, then the file), so its row is dropped from the snapshot too; rows added after the
snapshot are not in the backup. The result is a state the server could have been in.

**A backup is as sensitive as the live server**: it holds the wrap key of every item in it, so
reports acknowledged after the backup was made stay readable, to whoever holds the backup and
the agency's key, for as long as the backup exists. Keep backups encrypted and short-lived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dropbox_envelope.errors import EnvelopeError

from .config import CONFIG_NAME, load_config
from .errors import BackupError
from .storage import Storage, fsync_dir
from .wrapping import StoredFile, normalise_times, open_for_reading

__all__ = ["BackupSummary", "make_backup", "register", "restore_backup"]

FORMAT = "srdb-backup"
VERSION = 1
MANIFEST = "srdb-backup.json"
DB_MEMBER = "db/dropbox.sqlite"
TABLES = ("envelopes", "replies")
CONFIG_FOLDERS = ("keys", "secrets", "onion")
COPY_BLOCK = 1024 * 1024
MAX_MANIFEST = 4096
_ID_FILE = re.compile(r"[0-9a-f]{32}\.srdb")
# Names inside keys/, secrets/, onion/ and top-level files: no hidden files, no separators.
_PLAIN_NAME = re.compile(r"[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,254}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class BackupSummary:
    envelopes: int
    replies: int
    sources: int
    schema: int


# --- tar entries -----------------------------------------------------------------------------

def _info(name: str, *, size: int = 0, folder: bool = False) -> tarfile.TarInfo:
    """A tar header that records nothing but the name and size."""
    info = tarfile.TarInfo(name)
    info.size = 0 if folder else size
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = 0o700 if folder else 0o600
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, size=len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> bool:
    """Add a regular file (never following a symlink); False if it does not exist."""
    try:
        fd = open_for_reading(path)
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BackupError(f"{path} is not a regular file")
        tar.addfile(_info(name, size=info.st_size), handle)
    return True


def _config_files(data_dir: Path) -> Iterator[tuple[str, Path, bool]]:
    """(member name, path, is folder) of the configuration, keys and secrets."""
    for entry in sorted(data_dir.iterdir()):
        if entry.is_file() and not entry.is_symlink() and _PLAIN_NAME.fullmatch(entry.name):
            yield entry.name, entry, False
    for top in CONFIG_FOLDERS:
        root = data_dir / top
        if root.is_symlink() or not root.is_dir():
            continue
        yield top, root, True
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(data_dir).as_posix()
            if path.is_symlink():
                print(f"warning: {rel} is a symbolic link; not backed up", file=sys.stderr)
            elif path.is_dir():
                yield rel, path, True
            elif path.is_file():
                yield rel, path, False


# --- backup ----------------------------------------------------------------------------------

def _snapshot(db_path: Path) -> sqlite3.Connection:
    """The database as of one instant, in memory (SQLite's online backup API)."""
    if not db_path.is_file() or db_path.is_symlink():
        raise BackupError(f"{db_path} is missing: is this a drop box data folder?")
    source = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        snapshot = sqlite3.connect(":memory:")
        source.backup(snapshot)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the database {db_path}: {exc}") from None
    finally:
        source.close()
    # Rows dropped below must not linger in free pages of the image.
    snapshot.execute("PRAGMA secure_delete=ON")
    return snapshot


def make_backup(data_dir: Path, out: Path) -> BackupSummary:
    """Write a consistent backup of ``data_dir`` to ``out`` (which must not exist)."""
    if not (data_dir / CONFIG_NAME).is_file():
        raise BackupError(f"{data_dir / CONFIG_NAME} does not exist: is this a drop box data "
                          "folder?")
    if os.path.lexists(out):
        raise BackupError(f"{out} already exists; choose a new file name")
    with contextlib.suppress(ValueError):
        out.resolve().relative_to(data_dir.resolve())
        raise BackupError("write the backup outside the data folder")
    part = out.with_name(f".{out.name}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            summary = _write_backup(data_dir, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(part, out)
        fsync_dir(out.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return summary


def _write_backup(data_dir: Path, handle: IO[bytes]) -> BackupSummary:
    snapshot = _snapshot(data_dir / "db" / "dropbox.sqlite")
    try:
        schema = int(snapshot.execute("PRAGMA user_version").fetchone()[0])
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(
                {"format": FORMAT, "version": VERSION, "schema": schema}).encode())
            for name, path, folder in _config_files(data_dir):
                if folder:
                    tar.addfile(_info(name, folder=True))
                elif not _add_file(tar, name, path):
                    raise BackupError(f"{path} disappeared during the backup")
            for name in ("store", "store/envelopes", "store/replies", "db"):
                tar.addfile(_info(name, folder=True))
            counts = {}
            for table in TABLES:
                ids = [str(r[0]) for r in snapshot.execute(
                    f"SELECT id FROM {table} ORDER BY id")]  # noqa: S608 - a constant
                gone = [i for i in ids if not _add_file(
                    tar, f"store/{table}/{i}.srdb", data_dir / "store" / table / f"{i}.srdb")]
                # Deleted by the server since the snapshot: the backup forgets them too.
                snapshot.executemany(f"DELETE FROM {table} WHERE id = ?",  # noqa: S608
                                     [(i,) for i in gone])
                snapshot.commit()
                counts[table] = len(ids) - len(gone)
            sources = int(snapshot.execute("SELECT COUNT(*) FROM sources").fetchone()[0])
            snapshot.execute("VACUUM")
            _add_bytes(tar, DB_MEMBER, snapshot.serialize())
    finally:
        snapshot.close()
    return BackupSummary(counts["envelopes"], counts["replies"], sources, schema)


# --- restore ---------------------------------------------------------------------------------

def _allowed(name: str, folder: bool) -> bool:
    """Whether a member name belongs in a backup (checked before anything is written)."""
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in name or "\x00" in name:
        return False
    if folder:
        return name in ("store", "store/envelopes", "store/replies", "db") or (
            parts[0] in CONFIG_FOLDERS and len(parts) <= 4 and
            all(_PLAIN_NAME.fullmatch(p) for p in parts))
    if name in (MANIFEST, DB_MEMBER, CONFIG_NAME):
        return True
    if len(parts) == 3 and parts[0] == "store" and parts[1] in TABLES:
        return _ID_FILE.fullmatch(parts[2]) is not None
    if len(parts) == 1:
        return _PLAIN_NAME.fullmatch(name) is not None
    return parts[0] in CONFIG_FOLDERS and len(parts) <= 4 and \
        all(_PLAIN_NAME.fullmatch(p) for p in parts)


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> int:
    if member is None or member.name != MANIFEST or not member.isreg() or \
            member.size > MAX_MANIFEST:
        raise BackupError("not a drop box backup (it does not start with srdb-backup.json)")
    source = tar.extractfile(member)
    try:
        doc = json.loads(source.read() if source else b"")
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BackupError("not a drop box backup (srdb-backup.json is not one)")
    if doc.get("version") != VERSION:
        raise BackupError(f"this backup has format version {doc.get('version')!r}; this "
                          "software reads version 1: upgrade it")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise BackupError("srdb-backup.json: 'schema' must be an integer")
    return schema


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    path = target.joinpath(*member.name.split("/"))
    if member.isdir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        raise BackupError(f"{member.name}: cannot be read from the backup")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, COPY_BLOCK)
        out.flush()
        if member.name.startswith("store/"):
            normalise_times(out.fileno())
        os.fsync(out.fileno())


def _prepare_target(target: Path) -> bool:
    """Make sure ``target`` is an empty real folder; True if this created it."""
    if os.path.lexists(target):
        if target.is_symlink() or not target.is_dir():
            raise BackupError(f"{target} exists and is not a folder")
        if any(target.iterdir()):
            raise BackupError(f"{target} is not empty; restore into a new or empty folder")
        return False
    target.mkdir(mode=0o700, parents=True)
    return True


def restore_backup(archive: Path, target: Path) -> BackupSummary:
    """Unpack ``archive`` into the new or empty folder ``target`` and verify it: every stored
    item unwraps with its key and matches its recorded SHA-256. On failure nothing stays."""
    created = _prepare_target(target)
    try:
        try:
            tar = tarfile.open(archive, mode="r:")  # noqa: SIM115 - closed below
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"cannot read {archive}: {exc}") from None
        with tar:
            _unpack(tar, target)
        for required in (CONFIG_NAME, DB_MEMBER):
            if not (target / required).is_file():
                raise BackupError(f"the backup has no {required}")
        load_config(target)
        summary = asyncio.run(_verify(target))
        for folder in (target / "db", target / "store" / "envelopes",
                       target / "store" / "replies", target):
            fsync_dir(folder)
        return summary
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _unpack(tar: tarfile.TarFile, target: Path) -> None:
    try:
        _read_manifest(tar, tar.next())
        seen: set[str] = set()
        while (member := tar.next()) is not None:
            name = member.name.rstrip("/") if member.isdir() else member.name
            if not (member.isreg() or member.isdir()) or not _allowed(name, member.isdir()):
                raise BackupError(f"the backup holds an entry that does not belong in a data "
                                  f"folder: {name!r}")
            if name in seen:
                raise BackupError(f"the backup holds {name!r} twice")
            seen.add(name)
            member.name = name
            _extract(tar, member, target)
    except tarfile.TarError as exc:
        raise BackupError(f"the backup is damaged: {exc}") from None


async def _verify(target: Path) -> BackupSummary:
    storage = Storage(target)
    await storage.open()  # migrates an older schema, as the server would
    try:
        counts: dict[str, int] = {}
        for table, opener in (("envelopes", storage.open_envelope),
                              ("replies", storage.open_reply)):
            async with storage.db.execute(
                    f"SELECT id, size, sha256 FROM {table}") as cur:  # noqa: S608
                rows = [(str(r[0]), int(r[1]), str(r[2])) for r in await cur.fetchall()]
            for item_id, size, digest in rows:
                try:
                    stored = await opener(item_id)
                    if stored is None:
                        raise FileNotFoundError(item_id)
                    actual = await asyncio.to_thread(_digest, stored)
                except (OSError, EnvelopeError):
                    actual = ("", -1)
                if actual != (digest, size):
                    raise BackupError(f"the backup's {table[:-1]} {item_id} is missing or "
                                      "damaged; nothing was restored")
            counts[table] = len(rows)
        async with storage.db.execute("SELECT COUNT(*) FROM sources") as cur:
            row = await cur.fetchone()
        async with storage.db.execute("PRAGMA user_version") as cur:
            version = await cur.fetchone()
        return BackupSummary(counts["envelopes"], counts["replies"], int(row[0]) if row else 0,
                             int(version[0]) if version else 0)
    finally:
        await storage.close()


def _digest(stored: StoredFile) -> tuple[str, int]:
    with stored:
        digest = hashlib.sha256()
        for first in range(0, stored.size, COPY_BLOCK):
            digest.update(stored.read(first, min(first + COPY_BLOCK, stored.size) - 1))
        return digest.hexdigest(), stored.size


# --- the commands ----------------------------------------------------------------------------

SENSITIVE = ("The backup holds the server keys of every report and reply in it: whoever has it "
             "and the agency's key can read them, even after staff have fetched them. Keep it "
             "encrypted, offline and only as long as needed.")


def cmd_backup(args: argparse.Namespace) -> int:
    out = Path(args.out)
    summary = make_backup(Path(args.data_dir), out)
    print(f"backup written to {out}: {summary.envelopes} report(s) waiting, "
          f"{summary.replies} reply(ies), {summary.sources} source(s)")
    print(SENSITIVE)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    target = Path(args.data_dir)
    summary = restore_backup(Path(args.from_), target)
    print(f"restored into {target}: {summary.envelopes} report(s) waiting, "
          f"{summary.replies} reply(ies), {summary.sources} source(s); every item verified")
    print("Reports acknowledged after the backup was made are listed again: staff who fetch "
          "will get them again (an inbox that still holds one skips it).")
    print(f"Start the server with: dropbox-server run --data-dir {target}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "backup", help="write a consistent snapshot of the data folder (server may be running)",
        description="Write the database (through SQLite's backup API), the stored ciphertext, "
                    "the configuration, keys/, secrets/ and onion/ to a tar file. " + SENSITIVE)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True, metavar="FILE.tar", help="a new file")
    p.set_defaults(func=cmd_backup)
    p = subparsers.add_parser(
        "restore", help="bring a backup back into a new data folder",
        description="Unpack a backup into a new or empty folder and verify every stored item.")
    p.add_argument("--from", dest="from_", required=True, metavar="FILE.tar")
    p.add_argument("--data-dir", required=True, help="a new or empty folder")
    p.set_defaults(func=cmd_restore)
