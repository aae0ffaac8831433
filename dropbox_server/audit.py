"""`dropbox-server audit`: what someone holding the server's disk could learn.

The audit looks at a data folder the way an adversary who seized it would: every file and
folder (never following a symlink), the database through SQL, and the raw bytes of the database
file, its write-ahead log and shared memory (where deleted rows and old page versions linger).
It reports two things:

* **learned**: the coarse metadata the drop box is designed to keep (docs/THREAT_MODEL.md,
  "Things we store"): counts by day and by recipient, padded size classes (powers of two),
  how many sources there are, how many have replies;
* **flags**: anything beyond that: a file that is not envelope ciphertext, an unexpected file,
  folder, table or column, text-like runs in ciphertext or in the database's free space, a
  value that looks like an exact time, a file name that is not a random id, a symlink.

Known parts of the folder that are not the drop box's own data (the configuration, public keys,
onion service keys, tor's state folder) are listed as **notes** with what they reveal.

Nothing here modifies the data folder: the database is copied to a temporary folder and opened
there. Findings never quote the content they found (offsets and lengths only), so the audit's own
output does not spread a leak further.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dropbox_envelope import EnvelopeError, StructureChecker, UnsupportedVersion
from dropbox_envelope.atrest import MAGIC as WRAP_MAGIC
from dropbox_envelope.atrest import MAX_HEADER_SIZE, Layout, Unwrapper
from dropbox_envelope.envelope import EnvelopeInfo
from dropbox_envelope.padding import padme

from .config import CONFIG_NAME, load_config
from .errors import ConfigError

__all__ = ["FLAGGED_EXIT", "AuditReport", "Finding", "audit", "register", "render_text"]

FLAGGED_EXIT = 3
"""Exit status of `dropbox-server audit` when something is flagged (errors exit with 1)."""

BLOCK = 1024 * 1024
DB_NAME = "dropbox.sqlite"
MIN_TEXT_RUN = 32
"""Printable bytes in a row that ciphertext essentially never contains: each random byte is
printable with probability 95/256, so a run of 32 turns up about once in 10^13 bytes."""
MIN_DB_WORDS = 3
MIN_DB_LETTERS = 12

_ID = re.compile(r"[0-9a-f]{32}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LOCATOR = re.compile(r"\d{7}")
_PUBLIC_KEY = re.compile(r"srdb1-x25519-[a-z2-7]{50,64}")
_RECIPIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# A time of day ("11:24", "11h24") or a date with an hour, in a column value.
_TIME_TEXT = re.compile(r"\d{1,2}:\d{2}|\d{4}-\d{2}-\d{2}[T ]\d{1,2}\b|\b\d{1,2}h\d{2}\b")
# A time of day standing on its own in raw bytes (ids and hashes around it would be letters or
# digits, so they do not make one by chance).
_RAW_TIME = re.compile(r"(?<![0-9A-Za-z])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?![0-9A-Za-z])")
# Unix times from 2000 to 2100 in seconds, milliseconds, microseconds or nanoseconds.
_EPOCH_RANGES = tuple((946_684_800 * f, 4_102_444_800 * f) for f in (1, 10**3, 10**6, 10**9))

# Printable ASCII (with tab, CR, LF) or a well-formed UTF-8 sequence, as bytes.
_TEXT_BYTE = (rb"(?:[\t\n\r\x20-\x7e]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
              rb"|[\xf0-\xf4][\x80-\xbf]{3})")
_TEXT_RUN = re.compile(_TEXT_BYTE + rb"{%d,}" % MIN_TEXT_RUN)
_DB_TEXT_RUN = re.compile(_TEXT_BYTE + rb"{8,}")
# What the database legitimately holds as text: ids, hashes, digits, days, public keys.
_DB_ALLOWED = re.compile(r"srdb1-x25519-[a-z2-7]+|[0-9a-f]{16,}|\d{4}-\d{2}-\d{2}|\d+")
_WORD = re.compile(r"[^\W\d_]{3,}")
_SQL_WORDS = frozenset(re.findall(r"\w+", """
    create table index unique primary key references not null default integer text blob real
    numeric on if exists autoincrement without rowid check foreign sqlite autoindex sequence
    stat asc desc collate nocase and or in is as where trigger view begin end insert into values
    update delete set select from drop alter add column rename to
"""))


# --- column kinds ----------------------------------------------------------------------------

def _is_text(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and pattern.fullmatch(v) is not None


def _is_blob(size: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, bytes) and len(v) == size


def _is_int(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _or_null(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


@dataclass(frozen=True)
class ColumnKind:
    """What a column may hold; ``check`` validates one value."""

    description: str
    check: Callable[[object], bool]
    numeric: bool = False  # an integer that is not a time (so not tested for epoch ranges)


ID = ColumnKind("a random 128-bit id", _is_text(_ID))
DAY = ColumnKind("a day (YYYY-MM-DD)", _is_text(_DAY))
SIZE = ColumnKind("a padded size in bytes", _is_int(0, 2**63 - 1), numeric=True)
SHA256 = ColumnKind("a SHA-256 of ciphertext", _is_text(_SHA256))
RECIPIENT = ColumnKind("a recipient id from the configuration", _is_text(_RECIPIENT_ID))
# NULL would mean a stored file that deleting its row cannot crypto-erase.
WRAP_KEY = ColumnKind("a random 32-byte at-rest wrap key", _is_blob(32))

ALLOWED_SCHEMA: dict[str, dict[str, ColumnKind]] = {
    "sources": {
        "id": ID,
        "locator": ColumnKind("a 7-digit public locator", _is_text(_LOCATOR)),
        "salt": ColumnKind("a random 16-byte salt", _is_blob(16)),
        "opslimit": ColumnKind("an Argon2id cost", _is_int(1, 2**32), numeric=True),
        "memlimit": ColumnKind("an Argon2id memory cost", _is_int(8192, 2**42), numeric=True),
        "verifier": ColumnKind("a 32-byte Argon2id verifier", _is_blob(32)),
        "public_key": ColumnKind("the source's reply public key", _is_text(_PUBLIC_KEY)),
        "recipient": RECIPIENT,
        "created_day": DAY,
        "last_visit_day": DAY,
    },
    "envelopes": {
        "id": ID,
        "source_id": ColumnKind("a source id or nothing", _or_null(_is_text(_ID))),
        "recipient": RECIPIENT,
        "day": DAY,
        "size": SIZE,
        "sha256": SHA256,
        "wrap_key": WRAP_KEY,
    },
    "replies": {
        "id": ID,
        "source_id": ID,
        "day": DAY,
        "size": SIZE,
        "sha256": SHA256,
        "seen": ColumnKind("read by the source (0 or 1)", _is_int(0, 1), numeric=True),
        "wrap_key": WRAP_KEY,
    },
}
"""Every table and column the drop box may keep, and what each may hold. A schema change in
storage.py must be reflected here, or the audit flags the new column."""

ALLOWED_INDEXES = frozenset({"replies_by_source", "envelopes_by_source",
                             "sources_by_last_visit"})


# --- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """Something beyond the coarse metadata: ``kind`` (a short keyword), ``where`` (a path
    relative to the data folder, or table.column), and what it is in plain words."""

    kind: str
    where: str
    detail: str


@dataclass
class AuditReport:
    data_dir: str
    learned: dict[str, Any] = field(default_factory=dict)
    notes: list[Finding] = field(default_factory=list)
    flags: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.flags

    def flag(self, kind: str, where: str, detail: str) -> None:
        self.flags.append(Finding(kind, where, detail))

    def note(self, kind: str, where: str, detail: str) -> None:
        self.notes.append(Finding(kind, where, detail))

    def to_json(self) -> dict[str, Any]:
        return {"data_dir": self.data_dir, "clean": self.clean, "learned": self.learned,
                "notes": [asdict(n) for n in self.notes],
                "flags": [asdict(f) for f in self.flags]}


# --- scanning bytes --------------------------------------------------------------------------

def _text_tail(data: bytes, cap: int) -> int:
    """Where a trailing run of text-like bytes (perhaps ending inside a UTF-8 sequence) starts."""
    i = len(data)
    while i > 0 and len(data) - i < cap:
        b = data[i - 1]
        if not (b in (9, 10, 13) or 0x20 <= b <= 0x7E or b >= 0x80):
            break
        i -= 1
    return i


def text_runs(blocks: Iterator[bytes], pattern: re.Pattern[bytes] = _TEXT_RUN,
              cap: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each run of text matching ``pattern`` in a stream of blocks, also
    across block boundaries. Runs longer than ``cap`` may come out in pieces."""
    carry = b""
    base = 0  # offset of carry[0]
    for block in blocks:
        data = carry + block
        cut = _text_tail(data, cap)
        for match in pattern.finditer(data, 0, cut):
            yield base + match.start(), match.group()
        carry, base = data[cut:], base + cut
    for match in pattern.finditer(carry):
        yield base + match.start(), match.group()


def _read_blocks(fd: int) -> Iterator[bytes]:
    while block := os.read(fd, BLOCK):
        yield block


def _open_nofollow(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOCTTY", 0))


def _describe_run(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return f"{len(text)} characters of text ({len(_WORD.findall(text))} words)"


def _scan_ciphertext(report: AuditReport, path: Path, rel: str, *, envelope: bool,
                     complete: bool = True) -> int | None:
    """Check a store file: envelope structure (unless ``envelope`` is False) and no text runs.
    Returns the file's size, or None when it could not be read."""
    try:
        fd = _open_nofollow(path)
    except OSError as exc:
        report.flag("unreadable", rel, f"cannot be read ({exc.strerror})")
        return None
    checker = StructureChecker()
    broken: str | None = None
    runs = 0
    try:
        def blocks() -> Iterator[bytes]:
            nonlocal broken
            for block in _read_blocks(fd):
                if envelope and broken is None:
                    try:
                        checker.feed(block)
                    except EnvelopeError as exc:
                        broken = str(exc)
                yield block
        for _offset, run in text_runs(blocks()):
            runs += 1
            if runs <= 3:
                report.flag("plaintext", rel, f"at byte {_offset}: {_describe_run(run)}; "
                                              "ciphertext does not contain text")
    finally:
        os.close(fd)
    if runs > 3:
        report.flag("plaintext", rel, f"{runs - 3} more runs of text")
    if envelope and broken is None and complete:
        try:
            _check_padding(report, rel, checker.close())
        except EnvelopeError as exc:
            broken = str(exc)
    if broken is not None:
        report.flag("not_ciphertext", rel, f"not a valid envelope: {broken}")
    return checker.info.size


def _check_padding(report: AuditReport, rel: str, info: EnvelopeInfo) -> None:
    plain = info.size - info.header_bytes - 24 - 21 * info.chunks
    if padme(plain) != plain:
        report.flag("unpadded", rel, "the envelope's size is not a PADMÉ size class: "
                                     "it tells more about the length of its content")


def _check_wrapped(report: AuditReport, path: Path, rel: str, key: bytes | None, *,
                   complete: bool = True) -> int | None:
    """Check a stored file wrapped at rest (docs/PROTOCOL.md §11): the wrapping, and with its
    key from the database, the envelope inside. Returns the envelope's size as the file's
    length says it is, or None when unknown."""
    try:
        fd = _open_nofollow(path)
    except OSError:
        return None  # flagged by the byte scan
    try:
        wrapped_size = os.fstat(fd).st_size
        header = os.pread(fd, MAX_HEADER_SIZE, 0)
        if header[:len(WRAP_MAGIC)] != WRAP_MAGIC:
            report.flag("not_ciphertext", rel, "not a file wrapped at rest with a server key")
            return wrapped_size
        if not complete:
            return None
        try:
            layout = Layout.of_file(header, wrapped_size)
        except UnsupportedVersion as exc:
            report.flag("not_ciphertext", rel, str(exc))
            return wrapped_size
        except EnvelopeError:
            report.flag("not_ciphertext", rel, "a wrapped file cut short")
            return wrapped_size
        if key is None:
            return layout.plain_size  # an unlisted file (flagged as such): no key to open it
        checker = StructureChecker()
        try:
            unwrapper = Unwrapper(key, header, wrapped_size)
            for index in range(layout.blocks):
                checker.feed(unwrapper.open_block(index, os.pread(
                    fd, layout.block_wrapped_size(index), layout.block_offset(index))))
            _check_padding(report, rel, checker.close())
        except EnvelopeError as exc:
            report.flag("not_ciphertext", rel, f"not a valid wrapped envelope: {exc}")
        return layout.plain_size
    finally:
        os.close(fd)


def _scan_database_bytes(report: AuditReport, path: Path, rel: str,
                         allowed_literals: list[str], vocabulary: frozenset[str]) -> None:
    """Raw bytes of the database, its WAL or shared memory: text that the schema and the
    allowed values (ids, hashes, days, keys, recipient ids) do not explain."""
    try:
        fd = _open_nofollow(path)
    except OSError as exc:
        report.flag("unreadable", rel, f"cannot be read ({exc.strerror})")
        return
    literal = re.compile("|".join(re.escape(s) for s in sorted(allowed_literals, key=len,
                                                                  reverse=True)) or "(?!)")
    found = 0
    try:
        for offset, run in text_runs(_read_blocks(fd), _DB_TEXT_RUN):
            text = literal.sub(" ", run.decode("utf-8", errors="replace"))
            if _RAW_TIME.search(text):
                found += 1
                if found <= 3:
                    report.flag("timestamp", rel, f"at byte {offset}: text that looks like a "
                                                  "time of day")
                continue
            residue = _DB_ALLOWED.sub(" ", text)
            unknown = [w for w in _WORD.findall(residue) if w.lower() not in vocabulary]
            if len(unknown) >= MIN_DB_WORDS and sum(map(len, unknown)) >= MIN_DB_LETTERS:
                found += 1
                if found <= 3:
                    report.flag("plaintext", rel, f"at byte {offset}: {_describe_run(run)} "
                                                  "that is not metadata the drop box keeps")
    finally:
        os.close(fd)
    if found > 3:
        report.flag("plaintext", rel, f"{found - 3} more runs of text or times")


# --- the database through SQL ----------------------------------------------------------------

@contextlib.contextmanager
def _database_copy(db_dir: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only look at the database (with its WAL) through a private copy."""
    source = db_dir / DB_NAME
    if not source.is_file() or source.is_symlink():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="srdb-audit-") as tmp:
        for suffix in ("", "-wal"):
            original = db_dir / (DB_NAME + suffix)
            if original.is_file() and not original.is_symlink():
                shutil.copyfile(original, Path(tmp) / (DB_NAME + suffix))
        conn = sqlite3.connect(Path(tmp) / DB_NAME)
        try:
            yield conn
        finally:
            conn.close()


def _looks_like_time(value: object) -> bool:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)  # a number stored in a text column
    if isinstance(value, str):
        return _TIME_TEXT.search(value) is not None
    if isinstance(value, float):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return any(low <= value <= high for low, high in _EPOCH_RANGES)
    return False


def _size_class(size: int) -> str:
    """The power-of-two bucket a size falls in, e.g. "64 KiB to 128 KiB"."""
    if size <= 0:
        return "0 B"
    low = 1 << (size.bit_length() - 1)

    def human(n: int) -> str:
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if n < 1024:
                return f"{n} {unit}"
            n //= 1024
        return f"{n} PiB"
    return f"{human(low)} to {human(low * 2)}"


def _counts(conn: sqlite3.Connection, sql: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in conn.execute(sql).fetchall()}


def _check_schema(report: AuditReport, conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Tables and columns present that the drop box also expects (others are flagged)."""
    present: dict[str, list[str]] = {}
    for kind, name, table in conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master ORDER BY name").fetchall():
        if kind == "table" and name in ALLOWED_SCHEMA:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")').fetchall()]
            for column in columns:
                if column not in ALLOWED_SCHEMA[name]:
                    report.flag("unexpected_column", f"{name}.{column}",
                                "a column the drop box does not keep")
            present[name] = [c for c in columns if c in ALLOWED_SCHEMA[name]]
        elif kind == "index" and (name in ALLOWED_INDEXES or
                                  name.startswith(f"sqlite_autoindex_{table}_")):
            continue
        else:
            report.flag(f"unexpected_{kind}", name, f"a {kind} the drop box does not keep")
            if kind == "table":
                present[name] = []
    return present


def _check_values(report: AuditReport, conn: sqlite3.Connection,
                  present: dict[str, list[str]]) -> None:
    for table, _columns in present.items():
        names = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]
        kinds = ALLOWED_SCHEMA.get(table, {})
        bad: dict[str, int] = {}
        times: dict[str, int] = {}
        quoted = ", ".join(f'"{n}"' for n in names)
        for row in conn.execute(f'SELECT {quoted} FROM "{table}"'):  # noqa: S608 - names from the db
            for name, value in zip(names, row, strict=True):
                kind = kinds.get(name)
                if kind is not None and not kind.check(value):
                    bad[name] = bad.get(name, 0) + 1
                if (kind is None or not kind.numeric) and _looks_like_time(value):
                    times[name] = times.get(name, 0) + 1
        for name, count in bad.items():
            report.flag("unexpected_value", f"{table}.{name}",
                        f"{count} value(s) are not {kinds[name].description}")
        for name, count in times.items():
            report.flag("timestamp", f"{table}.{name}",
                        f"{count} value(s) look like an exact time (a time of day, or a "
                        "Unix time); the drop box keeps days only")


def _learn(report: AuditReport, conn: sqlite3.Connection, present: dict[str, list[str]]
           ) -> dict[str, dict[str, int]]:
    """The coarse metadata, and each stored item's recorded size (for the file checks)."""
    learned = report.learned
    sizes: dict[str, dict[str, int]] = {"envelopes": {}, "replies": {}}
    if {"id", "day", "size", "recipient", "source_id"} <= set(present.get("envelopes", [])):
        learned["envelopes"] = conn.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0]
        learned["envelopes_by_day"] = _counts(
            conn, "SELECT day, COUNT(*) FROM envelopes GROUP BY day ORDER BY day")
        learned["envelopes_by_recipient"] = _counts(
            conn, "SELECT recipient, COUNT(*) FROM envelopes GROUP BY recipient ORDER BY 1")
        learned["envelopes_linked_to_a_source"] = conn.execute(
            "SELECT COUNT(*) FROM envelopes WHERE source_id IS NOT NULL").fetchone()[0]
        learned["sources_with_several_waiting_envelopes"] = conn.execute(
            "SELECT COUNT(*) FROM (SELECT source_id FROM envelopes WHERE source_id IS NOT NULL "
            "GROUP BY source_id HAVING COUNT(*) > 1)").fetchone()[0]
        sizes["envelopes"] = {str(i): int(s) for i, s in conn.execute(
            "SELECT id, size FROM envelopes").fetchall() if isinstance(s, int)}
    if {"id", "day", "size", "source_id", "seen"} <= set(present.get("replies", [])):
        learned["replies"] = conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        learned["replies_by_day"] = _counts(
            conn, "SELECT day, COUNT(*) FROM replies GROUP BY day ORDER BY day")
        learned["replies_read_by_their_source"] = conn.execute(
            "SELECT COUNT(*) FROM replies WHERE seen = 1").fetchone()[0]
        learned["sources_with_replies"] = conn.execute(
            "SELECT COUNT(DISTINCT source_id) FROM replies").fetchone()[0]
        sizes["replies"] = {str(i): int(s) for i, s in conn.execute(
            "SELECT id, size FROM replies").fetchall() if isinstance(s, int)}
    if {"id", "created_day", "recipient"} <= set(present.get("sources", [])):
        learned["sources"] = conn.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
        learned["sources_by_day"] = _counts(
            conn, "SELECT created_day, COUNT(*) FROM sources GROUP BY created_day ORDER BY 1")
    if "last_visit_day" in present.get("sources", []):
        learned["sources_by_last_visit_day"] = _counts(
            conn, "SELECT last_visit_day, COUNT(*) FROM sources GROUP BY last_visit_day "
                  "ORDER BY 1")
    for table, by_id in sizes.items():
        classes: dict[str, int] = {}
        for size in sorted(by_id.values()):
            label = _size_class(size)
            classes[label] = classes.get(label, 0) + 1
        learned[f"{table}_by_size_class"] = classes
    return sizes


def _wrap_keys(conn: sqlite3.Connection, present: dict[str, list[str]]
               ) -> dict[str, dict[str, bytes]]:
    """Each stored item's at-rest key, to look inside its wrapped file."""
    keys: dict[str, dict[str, bytes]] = {}
    for table in ("envelopes", "replies"):
        if {"id", "wrap_key"} <= set(present.get(table, [])):
            keys[table] = {str(i): bytes(k) for i, k in conn.execute(
                f"SELECT id, wrap_key FROM {table}").fetchall()  # noqa: S608
                if isinstance(k, bytes) and len(k) == 32}
    return keys


# --- the folder ------------------------------------------------------------------------------

@dataclass
class _Context:
    root: Path
    report: AuditReport
    recipients: list[str]
    questionnaire: str | None
    listed: dict[str, dict[str, int]]
    vocabulary: frozenset[str] = frozenset()
    literals: list[str] = field(default_factory=list)
    seen_files: dict[str, set[str]] = field(default_factory=lambda: {"envelopes": set(),
                                                                      "replies": set()})
    wrap_keys: dict[str, dict[str, bytes]] = field(default_factory=dict)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _mtime_has_time_of_day(info: os.stat_result) -> bool:
    moment = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
    return (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0)


def _store_file(ctx: _Context, entry: os.DirEntry[str], rel: str, table: str) -> None:
    name = entry.name
    stem = name.removesuffix(".srdb")
    if not name.endswith(".srdb") or not _ID.fullmatch(stem):
        ctx.report.flag("file_name", rel, "a file name that is not a random id "
                                          "(<32 hex digits>.srdb)")
    _scan_ciphertext(ctx.report, Path(entry.path), rel, envelope=False)
    size = _check_wrapped(ctx.report, Path(entry.path), rel,
                          ctx.wrap_keys.get(table, {}).get(stem))
    info = entry.stat(follow_symlinks=False)
    if _mtime_has_time_of_day(info):
        ctx.report.flag("file_time", rel, "the file's modification time is an exact time, "
                                          "not normalised")
    recorded = ctx.listed.get(table, {}).get(stem)
    if recorded is None:
        ctx.report.flag("unlisted", rel, "a file with no row in the database (an interrupted "
                                         "commit, removed at the next start, or planted)")
    elif size is not None and recorded != size:
        ctx.report.flag("size_mismatch", rel, "its size differs from the size recorded in "
                                              "the database")
    ctx.seen_files[table].add(stem)


def _walk(ctx: _Context, folder: Path, rel: str,
          handle: Callable[[_Context, os.DirEntry[str], str], bool]) -> None:
    """Visit every entry under ``folder`` without following symlinks; ``handle`` returns True
    for an entry it accepts (folders it accepts are entered)."""
    for entry in _entries(folder):
        path_rel = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_symlink():
            ctx.report.flag("symlink", path_rel, "a symbolic link (never followed)")
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if not is_dir and not entry.is_file(follow_symlinks=False):
            ctx.report.flag("unexpected_file", path_rel, "not a regular file or folder")
            continue
        if not handle(ctx, entry, path_rel):
            ctx.report.flag("unexpected_folder" if is_dir else "unexpected_file", path_rel,
                            "not part of a drop box data folder")
            if not is_dir:
                _scan_ciphertext(ctx.report, Path(entry.path), path_rel, envelope=False)
            continue
        if is_dir and path_rel != "tor":
            _walk(ctx, Path(entry.path), path_rel, handle)


def _classify(ctx: _Context, entry: os.DirEntry[str], rel: str) -> bool:
    """Accept (and check) a known part of the data folder; False for anything else."""
    is_dir = entry.is_dir(follow_symlinks=False)
    parts = rel.split("/")
    report = ctx.report
    if is_dir:
        if rel == "tor":
            report.note("tor", rel, "tor's own state folder (consensus cache, logs, state "
                                    "file with tor's own timestamps, and copies of the onion "
                                    "service keys and staff client keys in onion-public/ and "
                                    "onion-staff/); not inspected")
        return rel in ("db", "store", "store/envelopes", "store/replies", "tmp", "secrets",
                       "keys", "onion", "onion/staff-clients", "tor") or (
            ctx.questionnaire is not None and ctx.questionnaire.startswith(rel + "/"))
    if rel == CONFIG_NAME:
        report.note("config", rel, "the configuration: recipient names and key files, staff "
                                   "names and signing keys, limits")
    elif rel == ctx.questionnaire:
        report.note("config", rel, "the questionnaire (the questions asked, no answers)")
    elif parts[0] == "keys" and len(parts) == 2 and rel.endswith(".pub"):
        report.note("public_key", rel, "a public key named in the configuration")
    elif parts[0] == "db" and len(parts) == 2 and entry.name in (
            DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal"):
        _scan_database_bytes(report, Path(entry.path), rel, ctx.literals, ctx.vocabulary)
    elif parts[:2] == ["store", "envelopes"] and len(parts) == 3:
        _store_file(ctx, entry, rel, "envelopes")
    elif parts[:2] == ["store", "replies"] and len(parts) == 3:
        _store_file(ctx, entry, rel, "replies")
    elif parts[0] == "tmp" and len(parts) == 2:
        if not (entry.name.endswith(".part") and _ID.fullmatch(entry.name[:-5])):
            return False
        report.note("upload_in_progress", rel, "the ciphertext of an upload in progress or "
                                               "interrupted (removed at the next start)")
        _scan_ciphertext(report, Path(entry.path), rel, envelope=False)
        if entry.stat(follow_symlinks=False).st_size >= len(WRAP_MAGIC):
            _check_wrapped(report, Path(entry.path), rel, None, complete=False)
    elif rel == "secrets/csrf.key":
        if entry.stat(follow_symlinks=False).st_size != 32:
            report.flag("unexpected_value", rel, "the CSRF key is not 32 random bytes")
        _scan_ciphertext(report, Path(entry.path), rel, envelope=False)
        report.note("secret", rel, "the key that signs form tokens (lets whoever holds it "
                                   "forge a form token, nothing more)")
    elif rel in ("onion/public.key", "onion/staff.key"):
        report.note("onion_key", rel, "an onion service secret key: whoever holds it can "
                                      "impersonate that onion address")
    elif parts[:2] == ["onion", "staff-clients"] and len(parts) == 3:
        report.note("onion_client", rel, "a staff member's onion client-authorisation public "
                                         "key; the file name is the staff member's name")
    else:
        return False
    return True


def _vocabulary(conn: sqlite3.Connection | None, recipients: list[str]) -> tuple[
        frozenset[str], list[str]]:
    """Words and literal texts the database file legitimately contains."""
    words = set(_SQL_WORDS)
    literals: list[str] = list(recipients)
    for table, columns in ALLOWED_SCHEMA.items():
        words.update(table.split("_"))
        for column in columns:
            words.update(column.split("_"))
    words.update(ALLOWED_INDEXES)
    for recipient in recipients:
        words.update(recipient.split("-"))
    if conn is not None:
        for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
            literals.append(str(sql))
        for (recipient,) in conn.execute(
                "SELECT DISTINCT recipient FROM sources UNION SELECT recipient FROM envelopes"
                ) if _has_tables(conn, "sources", "envelopes") else []:
            if isinstance(recipient, str):
                literals.append(recipient)
                words.update(recipient.split("-"))
    return frozenset(w.lower() for w in words), literals


def _has_tables(conn: sqlite3.Connection, *names: str) -> bool:
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(names) <= have


def audit(data_dir: Path) -> AuditReport:
    """Inspect ``data_dir`` as someone holding the disk would; never modifies it."""
    report = AuditReport(str(data_dir))
    info = data_dir.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        report.flag("symlink" if stat.S_ISLNK(info.st_mode) else "unexpected_file", ".",
                    "the data folder is not a real folder")
        return report
    recipients: list[str] = []
    questionnaire: str | None = None
    try:
        config = load_config(data_dir)
    except ConfigError as exc:
        report.note("config", CONFIG_NAME, f"the configuration could not be read: {exc}")
    else:
        recipients = [r.id for r in config.recipients]
        if config.questionnaire is not None:
            with contextlib.suppress(ValueError):
                questionnaire = str(config.questionnaire.relative_to(data_dir))
    db_dir = data_dir / "db"
    with _database_copy(db_dir) as conn:
        listed: dict[str, dict[str, int]] = {}
        wrap_keys: dict[str, dict[str, bytes]] = {}
        if conn is None:
            report.note("database", f"db/{DB_NAME}", "no database")
        else:
            try:
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if integrity != "ok":
                    report.flag("database", f"db/{DB_NAME}", "the database is damaged "
                                                             "(integrity check failed)")
                present = _check_schema(report, conn)
                _check_values(report, conn, present)
                listed = _learn(report, conn, present)
                wrap_keys = _wrap_keys(conn, present)
            except sqlite3.DatabaseError as exc:
                report.flag("database", f"db/{DB_NAME}", f"not a readable database ({exc})")
                conn = None
        vocabulary, literals = _vocabulary(conn, recipients)
        ctx = _Context(data_dir, report, recipients, questionnaire, listed, vocabulary,
                       literals, wrap_keys=wrap_keys)
        _walk(ctx, data_dir, "", _classify)
    for table, rows in listed.items():
        missing = set(rows) - ctx.seen_files[table]
        if missing:
            report.flag("missing", f"store/{table}", f"{len(missing)} listed item(s) have no "
                                                     "file")
    report.learned["exact_modification_times"] = _exact_times(data_dir)
    report.note("file_times", "store/", "change times (ctime) of files and folders are set by "
                                        "the kernel and cannot be normalised: a raw image of the "
                                        "file system shows when each was last written")
    return report


# Places whose modification time is not normalised by design (SQLite writes the database all
# the time) or may not be (a folder touched by a failed upload or a start-up clean-up).
_TIMED_PLACES = (".", "db", f"db/{DB_NAME}", f"db/{DB_NAME}-wal", f"db/{DB_NAME}-shm", "store",
                 "store/envelopes", "store/replies", "tmp", "secrets", "secrets/csrf.key")


def _exact_times(data_dir: Path) -> dict[str, str]:
    """Modification times with a time of day (UTC, to the second), by path: what the file
    system tells about when the server last wrote there."""
    times: dict[str, str] = {}
    for rel in _TIMED_PLACES:
        try:
            info = (data_dir / rel).lstat()
        except OSError:
            continue
        if _mtime_has_time_of_day(info):
            moment = dt.datetime.fromtimestamp(int(info.st_mtime), dt.UTC)
            times[rel] = moment.isoformat().replace("+00:00", "Z")
    return times


# --- the command -----------------------------------------------------------------------------

def render_text(report: AuditReport) -> str:
    """The report in plain words."""
    learned = report.learned
    lines = [f"Audit of {report.data_dir}", "",
             "What someone holding this disk learns (coarse metadata, by design):"]
    for label, key in (("reports and messages waiting for staff", "envelopes"),
                       ("sources (people who can come back with a return code)", "sources"),
                       ("sources with replies", "sources_with_replies"),
                       ("replies stored", "replies"),
                       ("replies already read by their source", "replies_read_by_their_source"),
                       ("waiting reports linked to a source", "envelopes_linked_to_a_source"),
                       ("sources with several waiting reports",
                        "sources_with_several_waiting_envelopes")):
        if key in learned:
            lines.append(f"  {label}: {learned[key]}")
    for label, key in (("waiting reports by day", "envelopes_by_day"),
                       ("waiting reports by recipient", "envelopes_by_recipient"),
                       ("waiting reports by size class", "envelopes_by_size_class"),
                       ("sources by day created", "sources_by_day"),
                       ("sources by day of their last visit", "sources_by_last_visit_day"),
                       ("replies by day", "replies_by_day"),
                       ("replies by size class", "replies_by_size_class"),
                       ("last written (file system times; the database is written all the "
                        "time)", "exact_modification_times")):
        if learned.get(key):
            lines.append(f"  {label}: " + ", ".join(f"{k}: {v}" for k, v in
                                                    learned[key].items()))
    lines += ["", "Other things in the folder:"]
    lines += [f"  {n.where}: {n.detail}" for n in report.notes]
    lines.append("")
    if report.clean:
        lines.append("Nothing beyond that was found.")
    else:
        lines.append(f"FLAGGED: {len(report.flags)} finding(s) beyond the coarse metadata:")
        lines += [f"  [{f.kind}] {f.where}: {f.detail}" for f in report.flags]
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    if not os.path.lexists(data_dir):
        raise ConfigError(f"{data_dir} does not exist")
    report = audit(data_dir)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render_text(report))
    sys.stdout.flush()
    return 0 if report.clean else FLAGGED_EXIT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "audit", help="what someone holding this data folder could learn",
        description="Inspect the data folder and database as someone who seized the disk "
                    "would, print what they learn (coarse metadata) and flag anything beyond "
                    f"it. Exits with status {FLAGGED_EXIT} when something is flagged.")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)
