"""`dropbox-server backup` / `restore`: a backup taken while the server takes reports, restored
into a new folder, served again, fetched and decrypted: the same reports, byte for byte. Then
what the archive records (no times, no owners), consistency when the server deletes during a
backup, and everything `restore` refuses."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import pytest

from dropbox_envelope.streams import decrypt
from dropbox_server import backup as backup_module
from dropbox_server.backup import make_backup, restore_backup
from dropbox_server.errors import BackupError
from dropbox_server.storage import Storage
from tests.e2e.test_product_loop import Server, client, csrf
from tests.staff.conftest import (
    MemorySink,
    World,
    commit_envelope,
    create_source,
    open_storage,
    seal,
)

FAST_KDF = f"code_kdf_opslimit = 1\ncode_kdf_memlimit = {8 * 1024 * 1024}\n"


def fast_codes(world: World) -> None:
    path = world.data_dir / "dropbox.toml"
    path.write_text(path.read_text().replace("[server]\n", "[server]\n" + FAST_KDF, 1))


def server_command(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dropbox_server", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


async def submit(session: aiohttp.ClientSession, public: str, token: str,
                 body: bytes) -> str:
    async with session.post(f"{public}/submit/envelope?recipient=city-police", data=body,
                            headers={"Content-Type": "application/octet-stream",
                                     "X-CSRF-Token": token}) as resp:
        doc = await resp.json()
        assert resp.status == 200, doc
        return str(doc["code"])


@pytest.mark.asyncio
async def test_backup_during_activity_restores_every_report(world: World,
                                                            tmp_path: Path) -> None:
    fast_codes(world)
    agency = world.agency.public_key
    sent: dict[str, bytes] = {}  # sha256 -> envelope
    storage = Storage(world.data_dir)  # some history before the server starts
    await storage.open()
    source_id, source_key = await create_source(storage)
    for i in range(4):
        body = seal([agency], f"before start {i}", [("photo", os.urandom(150_000))])
        sent[hashlib.sha256(body).hexdigest()] = body
        await commit_envelope(storage, body, source_id=source_id)
    upload = storage.new_upload()
    upload.write(seal([source_key.public_key], "a reply", kind="reply"))
    await storage.commit_reply(upload, source_id=source_id)
    await storage.close()

    server = Server(world.data_dir, tmp_path / "server.log")
    archive = tmp_path / "backup.tar"
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            token = await csrf(browser, f"{server.public}/report")
            first_body = seal([agency], "submitted while running 0")
            sent[hashlib.sha256(first_body).hexdigest()] = first_body
            code = await submit(browser, server.public, token, first_body)
            before_backup = set(sent)

            stop = asyncio.Event()
            during: list[float] = []

            async def keep_submitting() -> None:
                i = 1
                while not stop.is_set():
                    body = seal([agency], f"submitted while running {i}",
                                [("x", os.urandom(20_000))])
                    sent[hashlib.sha256(body).hexdigest()] = body
                    await submit(browser, server.public, token, body)
                    during.append(time.monotonic())
                    i += 1

            activity = asyncio.create_task(keep_submitting())
            await asyncio.sleep(0.2)
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dropbox_server", "backup", "--data-dir",
                str(world.data_dir), "--out", str(archive),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await process.communicate()
            ended = time.monotonic()
            await asyncio.sleep(0.2)
            stop.set()
            await activity
        assert process.returncode == 0, err.decode()
        assert "holds the server keys" in out.decode()
        assert any(started <= t <= ended for t in during)  # it really ran during activity
    finally:
        server.stop()

    restored = tmp_path / "restored"
    done = server_command("restore", "--from", archive, "--data-dir", restored)
    assert done.returncode == 0, done.stderr
    assert "every item verified" in done.stdout
    assert server_command("restore", "--from", archive, "--data-dir", restored).returncode == 1

    server = Server(restored, tmp_path / "restored.log")
    try:
        inbox = tmp_path / "inbox"
        fetched = client("fetch", "--server", server.staff, "--identity", world.staff_key_file,
                         "--passphrase-file", world.passphrase_file, "--out", inbox, "--json")
        assert fetched.returncode == 0, fetched.stderr
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            token = await csrf(browser, f"{server.public}/login")
            async with browser.post(f"{server.public}/login", data={"csrf": token, "code": code},
                                    allow_redirects=False) as resp:
                assert resp.status == 303  # a return code from before the backup still works
    finally:
        server.stop()

    got = {}
    for path in sorted(inbox.glob("*.srdb")):
        data = path.read_bytes()
        manifest = decrypt(io.BytesIO(data), [world.agency], MemorySink())
        got[hashlib.sha256(data).hexdigest()] = manifest.message
    assert before_backup <= set(got)  # nothing that existed before the backup is missing
    assert len(got) > len(before_backup)  # some of what arrived during the activity, too
    assert set(got) <= set(sent)  # and nothing that was never sent appears
    for digest, message in got.items():
        expected = decrypt(io.BytesIO(sent[digest]), [world.agency], MemorySink()).message
        assert message == expected


# --- the archive -----------------------------------------------------------------------------

def populate(world: World, count: int = 3) -> list[str]:
    with open_storage(world.data_dir) as (storage, loop):
        return [loop.run_until_complete(commit_envelope(
            storage, seal([world.agency.public_key], f"report {i}"))) for i in range(count)]


def test_the_archive_records_no_times_and_no_owners(world: World, tmp_path: Path) -> None:
    ids = populate(world)
    (world.data_dir / "secrets").mkdir(exist_ok=True)
    (world.data_dir / "secrets" / "csrf.key").write_bytes(os.urandom(32))
    (world.data_dir / "tor").mkdir()
    (world.data_dir / "tor" / "cached-consensus").write_text("not backed up")
    summary = make_backup(world.data_dir, tmp_path / "b.tar")
    assert (summary.envelopes, summary.replies, summary.schema) == (3, 0, 2)
    assert (tmp_path / "b.tar").stat().st_mode & 0o777 == 0o600
    with tarfile.open(tmp_path / "b.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == "srdb-backup.json" and names[-1] == "db/dropbox.sqlite"
    assert {"dropbox.toml", "keys/agency.pub", "keys/alice.pub", "secrets/csrf.key"} <= set(names)
    assert {f"store/envelopes/{i}.srdb" for i in ids} <= set(names)
    assert not any(n.startswith(("tor", "tmp")) for n in names)
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == \
            (0, 0, 0, "", ""), member.name
        assert member.mode == (0o700 if member.isdir() else 0o600)
    with pytest.raises(BackupError, match="already exists"):
        make_backup(world.data_dir, tmp_path / "b.tar")
    with pytest.raises(BackupError, match="outside the data folder"):
        make_backup(world.data_dir, world.data_dir / "b.tar")


def test_an_item_deleted_during_the_backup_is_left_out(world: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = populate(world)
    real = backup_module._snapshot

    def snapshot_then_ack(db_path: Path) -> sqlite3.Connection:
        snapshot = real(db_path)
        with open_storage(world.data_dir) as (storage, loop):  # staff acknowledge one now
            loop.run_until_complete(storage.delete_envelope(ids[1]))
        return snapshot
    monkeypatch.setattr(backup_module, "_snapshot", snapshot_then_ack)
    summary = make_backup(world.data_dir, tmp_path / "b.tar")
    assert summary.envelopes == 2
    restored = restore_backup(tmp_path / "b.tar", tmp_path / "new")
    assert restored.envelopes == 2
    listed = asyncio.run(_listed(tmp_path / "new"))
    assert listed == {ids[0], ids[2]}


async def _listed(data_dir: Path) -> set[str]:
    storage = Storage(data_dir)
    await storage.open()
    try:
        return {r.id for r in await storage.list_envelopes()}
    finally:
        await storage.close()


# --- restore refuses -------------------------------------------------------------------------

def rewrite(archive: Path, out: Path, change: dict[str, bytes | None],
            extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:  # type: ignore[assignment]
    """Copy a backup, replacing (bytes) or dropping (None) members, then adding ``extra``."""
    with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isreg() else b""  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name] or b""
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if member.isreg() else None)
        for info, data in extra:
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def archive(world: World, tmp_path: Path) -> Path:
    populate(world, 2)
    make_backup(world.data_dir, tmp_path / "good.tar")
    return tmp_path / "good.tar"


def test_restore_refuses_a_folder_that_is_not_empty(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "something").write_text("keep me")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(archive, target)
    assert (target / "something").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert restore_backup(archive, empty).envelopes == 2  # an empty folder is fine


def _member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize("name,kind", [
    ("../escaped", tarfile.REGTYPE),
    ("/etc/cron.d/evil", tarfile.REGTYPE),
    ("store/envelopes/../../x", tarfile.REGTYPE),
    ("store/envelopes/notes.txt", tarfile.REGTYPE),
    ("db/other.sqlite", tarfile.REGTYPE),
    ("keys/link.pub", tarfile.SYMTYPE),
    ("keys/hard", tarfile.LNKTYPE),
    ("dev", tarfile.CHRTYPE),
    ("dropbox.toml", tarfile.REGTYPE),  # a second copy
    (".hidden", tarfile.REGTYPE),
])
def test_restore_refuses_entries_that_do_not_belong(archive: Path, tmp_path: Path, name: str,
                                                    kind: bytes) -> None:
    hostile = rewrite(archive, tmp_path / "hostile.tar", {}, [(_member(name, kind), b"x")])
    target = tmp_path / "new"
    with pytest.raises(BackupError):
        restore_backup(hostile, target)
    assert not target.exists()  # nothing left behind
    assert not (tmp_path / "escaped").exists()


def test_restore_refuses_damage_and_other_files(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        stored = next(m.name for m in tar.getmembers() if m.name.startswith("store/envelopes/"))
        data = bytearray(tar.extractfile(stored).read())  # type: ignore[union-attr]
    data[100] ^= 1
    cases = {
        "damaged": rewrite(archive, tmp_path / "d.tar", {stored: bytes(data)}),
        "missing file": rewrite(archive, tmp_path / "m.tar", {stored: None}),
        "no database": rewrite(archive, tmp_path / "n.tar", {"db/dropbox.sqlite": None}),
        "not a backup": rewrite(archive, tmp_path / "x.tar", {"srdb-backup.json": None}),
        "newer format": rewrite(archive, tmp_path / "v.tar", {"srdb-backup.json": json.dumps(
            {"format": "srdb-backup", "version": 2, "schema": 2}).encode()}),
    }
    for label, path in cases.items():
        target = tmp_path / f"new-{label.replace(' ', '-')}"
        with pytest.raises(BackupError):
            restore_backup(path, target)
        assert not target.exists(), label
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(BackupError, match="cannot read"):
        restore_backup(tmp_path / "plain.txt", tmp_path / "new-plain")


def test_command_line_errors(world: World, tmp_path: Path) -> None:
    done = server_command("backup", "--data-dir", tmp_path / "nowhere", "--out",
                          tmp_path / "x.tar")
    assert done.returncode == 1 and "does not exist" in done.stderr
    done = server_command("restore", "--from", tmp_path / "none.tar", "--data-dir",
                          tmp_path / "new")
    assert done.returncode == 1 and "cannot read" in done.stderr
