"""Looking at the data folder from outside: what is stored, and decrypting it as an agency."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from dropbox_envelope import AttachmentData, Decryptor, Manifest
from dropbox_envelope.atrest import unwrap
from dropbox_envelope.keys import SecretKey
from dropbox_server.backend import Backend


@dataclass(frozen=True)
class Snapshot:
    """Rows per table and the files in ``store/`` and ``tmp/``."""

    rows: dict[str, int]
    files: frozenset[str]


async def snapshot(backend: Backend) -> Snapshot:
    rows = {}
    for table in ("sources", "envelopes", "replies"):
        async with backend.storage.db.execute(f"SELECT COUNT(*) FROM {table}") as cur:  # noqa: S608
            row = await cur.fetchone()
        assert row is not None
        rows[table] = int(row[0])
    data = backend.config.data_dir
    files = frozenset(str(p.relative_to(data)) for folder in ("store", "tmp")
                      for p in (data / folder).rglob("*") if p.is_file())
    return Snapshot(rows, files)


@dataclass
class Opened:
    manifest: Manifest
    files: list[bytes] = field(default_factory=list)


def stored_bytes(path: Path) -> bytes:
    """The envelope in a stored file (``DATA/store/<table>/<id>.srdb``), unwrapped with the key
    in its database row (docs/PROTOCOL.md §11), as the staff download serves it."""
    data_dir, table = path.parents[2], path.parent.name
    db = sqlite3.connect(f"file:{data_dir / 'db' / 'dropbox.sqlite'}?mode=ro", uri=True)
    try:
        row = db.execute(f"SELECT wrap_key FROM {table} WHERE id = ?",  # noqa: S608
                         (path.stem,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"no row for {path}"
    return unwrap(bytes(row[0]), path.read_bytes())


def open_envelope(path: Path, *keys: SecretKey) -> Opened:
    """Decrypt a stored envelope (unwrapped first) as an agency would."""
    decryptor = Decryptor(list(keys))
    parts: dict[int, bytearray] = {}
    for event in decryptor.feed(stored_bytes(path)):
        if isinstance(event, AttachmentData):
            parts.setdefault(event.index, bytearray()).extend(event.data)
    manifest = decryptor.close()
    files = [bytes(parts.get(i, b"")) for i in range(len(manifest.attachments))]
    return Opened(manifest, files)


def envelope_files(backend: Backend) -> list[Path]:
    return sorted(backend.storage.envelopes_dir.glob("*.srdb"))


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
