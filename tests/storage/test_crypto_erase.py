"""Crypto-erase (docs/PROTOCOL.md §11): once an item is deleted, nobody can read it again, even
holding the agency's secret key, the item's old file bytes and a raw copy of everything in the
data folder (database, WAL, shared memory, every file: what a disk image shows at file level).

The adversary here is exhaustive: besides every wrap key the copied database still lists, it
tries every 32-byte window of every file in the copy as the key. The positive control runs the
same procedure before the deletion and recovers the report, so the procedure is known to work.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from dropbox_envelope.atrest import HEADER_SIZE, KEY_SIZE, Unwrapper, unwrap
from dropbox_envelope.errors import EnvelopeError
from dropbox_envelope.keys import SecretKey
from dropbox_envelope.streams import decrypt
from tests.server.datafolder import open_envelope
from tests.staff.conftest import Api, MemorySink, commit_envelope, create_source, seal

pytestmark = pytest.mark.asyncio
LIST = "/staff/v1/envelopes"


def copy_folder(data_dir: Path, to: Path) -> Path:
    """A raw copy of every file in the data folder, taken while the server has it open."""
    shutil.copytree(data_dir, to, symlinks=True)
    return to


def all_bytes(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def candidate_keys(folder: Path) -> set[bytes]:
    """Every key an adversary holding ``folder`` could try."""
    candidates: set[bytes] = set()
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(folder / "db", Path(scratch) / "db")  # opening it may write to it
        db = sqlite3.connect(Path(scratch) / "db" / "dropbox.sqlite")
        try:
            for table in ("envelopes", "replies"):
                candidates |= {bytes(k) for (k,) in db.execute(
                    f"SELECT wrap_key FROM {table}") if k is not None}  # noqa: S608
        finally:
            db.close()
    for data in all_bytes(folder).values():
        candidates |= {data[i:i + KEY_SIZE] for i in range(len(data) - KEY_SIZE + 1)}
    return candidates


def recover(folder: Path, old_file: bytes, agency: SecretKey) -> str | None:
    """The adversary: find the wrap key of ``old_file`` in ``folder``, unwrap it, decrypt it with
    the agency key. Returns the report's message, or None."""
    unwrapper = Unwrapper(bytes(KEY_SIZE), old_file[:HEADER_SIZE], len(old_file))
    first = old_file[HEADER_SIZE:HEADER_SIZE + unwrapper.layout.block_wrapped_size(0)]
    for key in candidate_keys(folder):
        try:
            Unwrapper(key, old_file[:HEADER_SIZE], len(old_file)).open_block(0, first)
        except EnvelopeError:
            continue
        envelope = unwrap(key, old_file)
        return decrypt(io.BytesIO(envelope), [agency], MemorySink()).message
    return None


async def _wrap_keys(api: Api, table: str) -> dict[str, bytes]:
    async with api.storage.db.execute(f"SELECT id, wrap_key FROM {table}") as cur:  # noqa: S608
        return {str(i): bytes(k) for i, k in await cur.fetchall()}


async def test_an_acknowledged_report_is_gone_even_with_the_agency_key_and_a_disk_copy(
        api: Api, tmp_path: Path) -> None:
    world = api.world
    agency = world.agency.public_key
    storage = api.storage
    source_id, source_key = await create_source(storage)
    ids = [await commit_envelope(storage, seal([agency], f"report number {i}"),
                                 source_id=source_id if i == 0 else None) for i in range(12)]
    reply = storage.new_upload()
    reply.write(seal([source_key.public_key], "a reply to erase", kind="reply"))
    reply_id = await storage.commit_reply(reply, source_id=source_id)
    envelope_keys = await _wrap_keys(api, "envelopes")
    reply_keys = await _wrap_keys(api, "replies")

    target = ids[3]
    old_file = storage.envelope_path(target).read_bytes()
    old_reply = storage.reply_path(reply_id).read_bytes()
    assert open_envelope(storage.envelope_path(target), world.agency).manifest.message == \
        "report number 3"

    # Positive control: before deletion, the procedure recovers the report from a copy.
    before = copy_folder(world.data_dir, tmp_path / "before")
    assert recover(before, old_file, world.agency) == "report number 3"
    assert any(envelope_keys[target] in data for data in all_bytes(before).values())

    # Staff acknowledge half the reports; the source deletes its reply.
    acknowledged = [*ids[::2], target]
    for envelope_id in acknowledged:
        response = await api.request("POST", f"{LIST}/{envelope_id}/ack")
        assert response.status == 204
    assert await storage.delete_reply(source_id, reply_id)
    assert not storage.erase_pending

    erased = [envelope_keys[i] for i in acknowledged] + [reply_keys[reply_id]]
    after = copy_folder(world.data_dir, tmp_path / "after")  # the server still running
    contents = all_bytes(after)
    assert {p.name for p in contents} >= {"dropbox.sqlite", "dropbox.sqlite-wal",
                                          "dropbox.sqlite-shm"}
    for key in erased:
        for path, data in contents.items():
            assert key not in data, f"an erased key is still in {path.name}"
            assert key.hex().encode() not in data
    assert recover(after, old_file, world.agency) is None
    assert recover(after, old_reply, world.agency) is None

    # The reports that were not acknowledged are still there and readable.
    kept = [i for i in ids if i not in acknowledged]
    assert {r.id for r in await storage.list_envelopes()} == set(kept)
    for envelope_id in kept:
        assert open_envelope(storage.envelope_path(envelope_id), world.agency).manifest.message \
            .startswith("report number")

    # And after a clean shutdown.
    await storage.close()
    stopped = copy_folder(world.data_dir, tmp_path / "stopped")
    for key in erased:
        assert all(key not in data for data in all_bytes(stopped).values())
    assert recover(stopped, old_file, world.agency) is None
    await storage.open()  # the fixture closes it


async def test_a_blocked_checkpoint_is_retried(api: Api) -> None:
    """A reader (a backup) holding the WAL stops the TRUNCATE checkpoint; the erasure is owed
    and done at the next chance."""
    storage = api.storage
    envelope_id = await commit_envelope(storage, seal([api.world.agency.public_key], "x"))
    key = (await _wrap_keys(api, "envelopes"))[envelope_id]
    reader = sqlite3.connect(storage.db_path, timeout=0.1)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM envelopes").fetchone()  # a read snapshot
        await storage.delete_envelope(envelope_id)
        assert storage.erase_pending
    finally:
        reader.close()
    await storage.settle_erasure()
    assert not storage.erase_pending
    folder = storage.db_path.parent
    assert all(key not in p.read_bytes() for p in folder.iterdir() if p.is_file())
