"""The store on disk: files wrapped at rest and served as they were sent (whole and by range),
file system times normalised, damage detected instead of served, and the v1 -> v2 migration that
wraps files stored before wrapping existed (also when interrupted)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from dropbox_envelope.atrest import HEADER_SIZE, VERSION, WRAPPED_BLOCK_SIZE, Layout, unwrap, wrap
from dropbox_server.audit import audit
from dropbox_server.storage import _MIGRATIONS, Storage
from tests.server.datafolder import stored_bytes
from tests.staff.conftest import (
    RECIPIENT,
    Api,
    Run,
    World,
    commit_envelope,
    create_source,
    open_storage,
    seal,
)

LIST = "/staff/v1/envelopes"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.asyncio
async def test_stored_files_are_wrapped_and_served_as_sent(api: Api) -> None:
    agency = api.world.agency.public_key
    bodies = [seal([agency], "short"),
              seal([agency], "three blocks and a bit", [("a", os.urandom(200_000))])]
    for body in bodies:
        envelope_id = await commit_envelope(api.storage, body)
        raw = api.storage.envelope_path(envelope_id).read_bytes()
        assert raw.startswith(b"SRDB-ATR" + bytes([VERSION])) and body[:64] not in raw
        assert len(raw) == Layout.for_plain(len(body)).wrapped_size
        [row] = [r for r in await api.storage.list_envelopes() if r.id == envelope_id]
        assert (row.size, row.sha256) == (len(body), sha256(body))  # the envelope's, not the file's

        response = await api.request("GET", f"{LIST}/{envelope_id}")
        assert response.status == 200
        assert response.headers["ETag"] == f'"sha256:{sha256(body)}"'
        assert await response.read() == body


@pytest.mark.asyncio
async def test_ranges_across_block_boundaries(api: Api) -> None:
    body = seal([api.world.agency.public_key], "ranges", [("a", os.urandom(300_000))])
    envelope_id = await commit_envelope(api.storage, body)
    size = len(body)
    block = 65536
    for first, last in [(0, 0), (block - 1, block), (block, 2 * block - 1), (70_000, size - 1),
                        (1, size - 2), (3 * block + 5, 3 * block + 5), (size - 1, size - 1)]:
        response = await api.request("GET", f"{LIST}/{envelope_id}",
                                     headers={"Range": f"bytes={first}-{last}"})
        assert response.status == 206, (first, last)
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert await response.read() == body[first:last + 1]
    response = await api.request("GET", f"{LIST}/{envelope_id}", headers={"Range": "bytes=-10"})
    assert await response.read() == body[-10:]
    response = await api.request("GET", f"{LIST}/{envelope_id}",
                                 headers={"Range": f"bytes={size}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


@pytest.mark.asyncio
async def test_files_an_older_server_wrapped_are_still_served_and_audited(api: Api) -> None:
    """Files written before AEGIS-256 (at-rest version 1, XChaCha20-Poly1305) stay readable:
    whole, by range, and the audit opens them."""
    body = seal([api.world.agency.public_key], "from an older server", [("a", os.urandom(150_000))])
    envelope_id = await commit_envelope(api.storage, body)
    async with api.storage.db.execute("SELECT wrap_key FROM envelopes WHERE id = ?",
                                      (envelope_id,)) as cur:
        [(key,)] = await cur.fetchall()
    path = api.storage.envelope_path(envelope_id)
    path.write_bytes(wrap(bytes(key), body, version=1))
    assert path.read_bytes()[:9] == b"SRDB-ATR\x01"

    response = await api.request("GET", f"{LIST}/{envelope_id}")
    assert response.status == 200 and await response.read() == body
    response = await api.request("GET", f"{LIST}/{envelope_id}",
                                 headers={"Range": "bytes=65530-65545"})
    assert response.status == 206 and await response.read() == body[65530:65546]
    report = audit(api.world.data_dir)
    assert not [f for f in report.flags if f.kind == "not_ciphertext"], report.flags

    path.write_bytes(b"SRDB-ATR\x09" + wrap(bytes(key), body)[9:])  # a version from the future
    [finding] = [f for f in audit(api.world.data_dir).flags if f.kind == "not_ciphertext"]
    assert "upgrade the server" in finding.detail


def times(path: Path) -> tuple[int, int]:
    info = path.stat(follow_symlinks=False)
    return info.st_mtime_ns, info.st_atime_ns


@pytest.mark.asyncio
async def test_file_times_are_the_epoch_and_reading_does_not_change_them(api: Api) -> None:
    storage = api.storage
    source_id, key = await create_source(storage)
    ids = [await commit_envelope(storage, seal([api.world.agency.public_key], f"r{i}"))
           for i in range(3)]
    upload = storage.new_upload()
    upload.write(seal([key.public_key], "reply", kind="reply"))
    reply_id = await storage.commit_reply(upload, source_id=source_id)
    await storage.delete_envelope(ids[0])
    for envelope_id in ids[1:]:
        assert (await api.request("GET", f"{LIST}/{envelope_id}")).status == 200
    stored = await storage.open_reply(reply_id)
    assert stored is not None
    with stored:
        stored.read_all()
    paths = [storage.envelope_path(i) for i in ids[1:]] + [storage.reply_path(reply_id)]
    folders = [storage.envelopes_dir, storage.replies_dir, storage.tmp_dir]
    for path in paths + folders:
        assert times(path) == (0, 0), path
    for path in paths:
        assert stat_mode(path) == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- damage ----------------------------------------------------------------------------------

def spoil(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.asyncio
async def test_a_damaged_file_is_never_served(api: Api) -> None:
    body = seal([api.world.agency.public_key], "damaged", [("a", os.urandom(300_000))])
    first_bad = await commit_envelope(api.storage, body)
    later_bad = await commit_envelope(api.storage, body)
    cut = await commit_envelope(api.storage, body)
    spoil(api.storage.envelope_path(first_bad), HEADER_SIZE + 10)
    spoil(api.storage.envelope_path(later_bad), HEADER_SIZE + 4 * WRAPPED_BLOCK_SIZE + 10)
    path = api.storage.envelope_path(cut)
    path.write_bytes(path.read_bytes()[:HEADER_SIZE + 2 * WRAPPED_BLOCK_SIZE])

    for envelope_id in (first_bad, cut):  # found before anything is sent: a clean error
        response = await api.request("GET", f"{LIST}/{envelope_id}")
        assert response.status == 500
        assert "damaged" in (await response.json())["error"]

    # Found after the first 256 KiB went out: the connection is broken, never padded.
    response = await api.request("GET", f"{LIST}/{later_bad}")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    # The intact blocks are still served by range.
    response = await api.request("GET", f"{LIST}/{later_bad}",
                                 headers={"Range": "bytes=0-99999"})
    assert await response.read() == body[:100_000]


def test_fetch_does_not_acknowledge_a_damaged_file(
        world: World, start_server: Callable[[], str], run: Run, tmp_path: Path) -> None:
    body = seal([world.agency.public_key], "damaged", [("a", os.urandom(300_000))])
    with open_storage(world.data_dir) as (storage, loop):
        envelope_id = loop.run_until_complete(commit_envelope(storage, body))
    spoil(world.envelopes_dir / f"{envelope_id}.srdb", HEADER_SIZE + 4 * WRAPPED_BLOCK_SIZE + 1)
    server = start_server()
    inbox = tmp_path / "inbox"
    result = run("fetch", "--server", server, "--identity", world.staff_key_file,
                 "--passphrase-file", world.passphrase_file, "--out", inbox, "--json")
    assert result.code == 1
    summary = json.loads(result.out)
    assert summary["fetched"] == [] and summary["errors"][0]["envelope_id"] == envelope_id
    assert not (inbox / f"{envelope_id}.srdb").exists()
    with open_storage(world.data_dir) as (storage, loop):
        assert [r.id for r in loop.run_until_complete(storage.list_envelopes())] == [envelope_id]


# --- migration from schema v1 ----------------------------------------------------------------

def make_v1_folder(world: World, items: dict[str, list[tuple[str, bytes]]]) -> None:
    """A data folder as the v1 server left it: plain envelope files, rows without keys."""
    storage = Storage(world.data_dir)
    for folder in (storage.db_path.parent, storage.envelopes_dir, storage.replies_dir,
                   storage.tmp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(storage.db_path)
    db.executescript("BEGIN;" + _MIGRATIONS[1] + "PRAGMA user_version=1; COMMIT;")
    db.execute("INSERT INTO sources VALUES (?,?,?,?,?,?,?,?,?)",
               ("5" * 32, "1234567", bytes(16), 2, 65536 * 1024, bytes(32),
                world.agency.public_key.encode(), RECIPIENT, "2024-11-02"))
    for item_id, data in items["envelopes"]:
        db.execute("INSERT INTO envelopes VALUES (?,?,?,?,?,?)",
                   (item_id, "5" * 32, RECIPIENT, "2024-11-03", len(data), sha256(data)))
        (storage.envelopes_dir / f"{item_id}.srdb").write_bytes(data)
    for item_id, data in items["replies"]:
        db.execute("INSERT INTO replies (id, source_id, day, size, sha256) VALUES (?,?,?,?,?)",
                   (item_id, "5" * 32, "2024-11-04", len(data), sha256(data)))
        (storage.replies_dir / f"{item_id}.srdb").write_bytes(data)
    db.commit()
    db.close()


def v1_items(world: World) -> dict[str, list[tuple[str, bytes]]]:
    agency = world.agency.public_key
    return {"envelopes": [("a" * 32, seal([agency], "old one")),
                          ("b" * 32, seal([agency], "old two", [("x", os.urandom(150_000))]))],
            "replies": [("c" * 32, seal([agency], "old reply", kind="reply"))]}


def check_migrated(world: World, items: dict[str, list[tuple[str, bytes]]]) -> None:
    db = sqlite3.connect(f"file:{world.data_dir / 'db' / 'dropbox.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT created_day, last_visit_day FROM sources").fetchall() == [
            ("2024-11-02", "2024-11-02")]
        for table in ("envelopes", "replies"):
            rows = db.execute(f"SELECT id, size, sha256, wrap_key FROM {table}"  # noqa: S608
                              ).fetchall()
            old_ids = {i for i, _ in items[table]}
            by_sha = {sha256(data): data for _, data in items[table]}
            assert len(rows) == len(items[table])
            for item_id, size, digest, key in rows:
                assert item_id not in old_ids  # a new id: the wrapped file's name
                path = world.data_dir / "store" / table / f"{item_id}.srdb"
                assert unwrap(bytes(key), path.read_bytes()) == by_sha[digest]
                assert size == len(by_sha[digest])
            names = {p.stem for p in (world.data_dir / "store" / table).iterdir()}
            assert names == {r[0] for r in rows}  # the plain files are gone
    finally:
        db.close()


def test_v1_files_are_wrapped_at_start_up(world: World) -> None:
    items = v1_items(world)
    make_v1_folder(world, items)
    with open_storage(world.data_dir) as (storage, loop):
        rows = loop.run_until_complete(storage.list_envelopes())
        assert {r.sha256 for r in rows} == {sha256(d) for _, d in items["envelopes"]}
        assert stored_bytes(storage.envelope_path(rows[0].id)) in [d for _, d in
                                                                  items["envelopes"]]
    check_migrated(world, items)
    with open_storage(world.data_dir):  # a second start changes nothing
        pass
    check_migrated(world, items)


def test_an_interrupted_migration_finishes_at_the_next_start(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    items = v1_items(world)
    make_v1_folder(world, items)
    # A wrapped copy placed by a run that died before its row was updated: an orphan.
    (world.envelopes_dir / f"{'d' * 32}.srdb").write_bytes(b"SRDB-ATR\x02" + os.urandom(600))

    # Die right after the first row was switched over, before its plain file was removed.
    real = Storage._unlink_durably

    def die(self: Storage, path: Path) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(Storage, "_unlink_durably", die)
    with pytest.raises(KeyboardInterrupt), open_storage(world.data_dir):
        pass
    monkeypatch.setattr(Storage, "_unlink_durably", real)
    assert (world.envelopes_dir / f"{'a' * 32}.srdb").exists()  # the plain file is still there

    with open_storage(world.data_dir):
        pass
    check_migrated(world, items)
