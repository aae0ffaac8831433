"""`dropbox-server audit` after the real product loop finds nothing beyond the coarse metadata,
and each kind of planted leak is flagged.

The round trip is the end-to-end flow of tests/e2e (a real `dropbox-server run --dev` process,
the no-JS form, `dropbox-client fetch`/`decrypt`/`reply`, the source logging in and answering),
followed by what that flow leaves out: a report and a browser-sealed envelope left waiting for
staff, and a reply not yet read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from dropbox_envelope import Encryptor
from dropbox_envelope.keys import PublicKey
from dropbox_server.audit import FLAGGED_EXIT, AuditReport, Finding, audit, text_runs
from dropbox_server.config import load_config
from tests.e2e import test_product_loop as e2e
from tests.e2e.test_product_loop import (
    Server,
    client,
    csrf,
    setup,  # noqa: F401 - the fixture
)
from tests.server.forms import MULTIPART, File, code_from_receipt, multipart, report_parts
from tests.support import make_server_folder

SECRET_TEXT = "They keep my passport and say they will call immigration if I complain."


# Findings set aside by the tests below that are not about them (none: stored files' times are
# normalised by storage.py, docs/PROTOCOL.md §11.4).
PENDING: set[str] = set()


def kinds(report: AuditReport) -> set[tuple[str, str]]:
    return {(f.kind, f.where) for f in report.flags}


def beyond_allowed(report: AuditReport, *, pending: set[str] = PENDING) -> list[Finding]:
    return [f for f in report.flags if f.kind not in pending]


def run_audit_command(data_dir: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "dropbox_server", "audit", "--data-dir",
                           str(data_dir), "--json"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode in (0, FLAGGED_EXIT), done.stderr
    return done.returncode, json.loads(done.stdout)


def seal(keys: list[PublicKey], message: str, attachment: bytes) -> bytes:
    encryptor = Encryptor(keys)
    out = encryptor.add_attachment("scan.pdf", "application/pdf", attachment)
    out += list(encryptor.finish(kind="report", language="en", message=message))
    return b"".join(out)


async def leave_work_waiting(server: Server, staff: Path, data_dir: Path) -> None:
    """A no-JS report and a browser-sealed envelope that staff have not fetched, and a reply
    the source has not read."""
    config = load_config(data_dir)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        token = await csrf(browser, f"{server.public}/report")
        parts = report_parts(token, recipient="city-police",
                             answers={"what_happening": ["threats"]}, message=SECRET_TEXT,
                             files=[File("attachments", "diary.txt",
                                         ("My diary: " + SECRET_TEXT + "\n").encode() * 200,
                                         "text/plain")])
        async with browser.post(f"{server.public}/report", data=multipart(parts),
                                headers={"Content-Type": MULTIPART}) as resp:
            assert resp.status == 200
            code_from_receipt(await resp.text())
        token = await csrf(browser, f"{server.public}/report")
        body = seal(list(config.recipients[0].keys), SECRET_TEXT, b"%PDF-1.4 " * 3000)
        async with browser.post(f"{server.public}/submit/envelope?recipient=city-police",
                                data=body, headers={"Content-Type": "application/octet-stream",
                                                    "X-CSRF-Token": token}) as resp:
            assert resp.status == 200, await resp.text()
    # A reply nobody has read yet, to the source of the waiting report.
    db = sqlite3.connect(data_dir / "db" / "dropbox.sqlite")
    try:
        [(source_id,)] = db.execute("SELECT source_id FROM envelopes WHERE source_id IN "
                                    "(SELECT id FROM sources) LIMIT 1").fetchall()
    finally:
        db.close()
    (staff / "reply2.txt").write_text("Please tell us the address of the car wash.")
    replied = client("reply", "--server", server.staff, "--identity", staff / "alice.key",
                     "--passphrase-file", staff / "pass.txt", "--source", source_id,
                     "--message-file", staff / "reply2.txt")
    assert replied.returncode == 0, replied.stderr


@pytest.mark.asyncio
async def test_round_trip_leaves_only_coarse_metadata(setup: tuple[Server, Path],  # noqa: F811
                                                      tmp_path: Path) -> None:
    server, staff = setup
    data_dir = tmp_path / "server"
    await e2e.test_report_fetch_decrypt_reply_answer(setup)
    await leave_work_waiting(server, staff, data_dir)

    # While the server runs (the WAL holds recent pages), and after it stopped.
    running = audit(data_dir)
    assert not beyond_allowed(running), running.flags
    server.stop()
    _status, doc = run_audit_command(data_dir)
    assert not beyond_allowed(audit(data_dir))
    learned = doc["learned"]
    assert isinstance(learned, dict)
    assert learned["envelopes"] == 2  # the two waiting; the fetched ones were acknowledged
    assert learned["sources"] == 3
    assert learned["sources_with_replies"] == 2
    assert learned["replies"] == 2 and learned["replies_read_by_their_source"] == 1
    assert sum(learned["envelopes_by_day"].values()) == 2
    assert sum(learned["envelopes_by_size_class"].values()) == 2
    assert all(" to " in label for label in learned["envelopes_by_size_class"])
    assert sum(learned["sources_by_last_visit_day"].values()) == 3
    # The database's own time is what the file system tells (stored files are normalised).
    assert "db/dropbox.sqlite" in learned["exact_modification_times"]
    assert not any(p.startswith("store/envelopes/") for p in learned["exact_modification_times"])
    # Nothing the person wrote is anywhere on the disk, in any form the scan recognises.
    for path in data_dir.rglob("*"):
        if path.is_file() and path.suffix != ".toml":
            assert SECRET_TEXT.encode() not in path.read_bytes(), path


# --- planted leaks ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data folder with a source and a waiting report, made by the real server."""
    root = tmp_path_factory.mktemp("audit")
    data = make_server_folder(root / "server", with_staff=False).data
    server = Server(data, root / "server.log")
    try:
        async def report() -> None:
            async with aiohttp.ClientSession(
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                token = await csrf(browser, f"{server.public}/report")
                parts = report_parts(token, recipient="city-police",
                                     answers={"what_happening": ["threats"]},
                                     message=SECRET_TEXT)
                async with browser.post(f"{server.public}/report", data=multipart(parts),
                                        headers={"Content-Type": MULTIPART}) as resp:
                    assert resp.status == 200
        asyncio.run(report())
    finally:
        server.stop()
    assert not beyond_allowed(audit(data))
    yield data


@pytest.fixture
def folder(clean_folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(clean_folder, copy, symlinks=True)
    return copy


def envelope_path(folder: Path) -> Path:
    [path] = (folder / "store" / "envelopes").glob("*.srdb")
    return path


def test_plaintext_file_in_the_store(folder: Path) -> None:
    planted = folder / "store" / "envelopes" / f"{'ab' * 16}.srdb"
    planted.write_text(SECRET_TEXT * 3)
    report = audit(folder)
    rel = f"store/envelopes/{planted.name}"
    assert {("plaintext", rel), ("not_ciphertext", rel), ("unlisted", rel)} <= kinds(report)
    # The finding says where, never what.
    assert "passport" not in json.dumps(report.to_json())


def test_plaintext_inside_an_envelope_file(folder: Path) -> None:
    path = envelope_path(folder)
    data = bytearray(path.read_bytes())
    data[200:200 + 40] = b"Maria Lopez, 12 High Street, Northtown.."
    path.write_bytes(bytes(data))
    rel = f"store/envelopes/{path.name}"
    assert ("plaintext", rel) in kinds(audit(folder))


def test_random_bytes_in_the_store_are_not_an_envelope(folder: Path) -> None:
    planted = folder / "store" / "replies" / f"{'cd' * 16}.srdb"
    planted.write_bytes(os.urandom(5000))
    rel = f"store/replies/{planted.name}"
    assert {("not_ciphertext", rel), ("unlisted", rel)} <= kinds(audit(folder))


def test_truncated_envelope_is_not_ciphertext_as_listed(folder: Path) -> None:
    path = envelope_path(folder)
    path.write_bytes(path.read_bytes()[:-10])
    rel = f"store/envelopes/{path.name}"
    assert {("not_ciphertext", rel), ("size_mismatch", rel)} <= kinds(audit(folder))


def test_a_file_name_that_is_not_a_random_id(folder: Path) -> None:
    path = envelope_path(folder)
    path.rename(path.with_name("report-from-maria.srdb"))
    found = kinds(audit(folder))
    assert ("file_name", "store/envelopes/report-from-maria.srdb") in found
    assert ("missing", "store/envelopes") in found


def test_a_column_with_a_time(folder: Path) -> None:
    db = sqlite3.connect(folder / "db" / "dropbox.sqlite")
    with db:
        db.execute("ALTER TABLE envelopes ADD COLUMN received TEXT")
        db.execute("UPDATE envelopes SET received = '2026-05-09 11:24:01'")
    db.close()
    found = kinds(audit(folder))
    assert {("unexpected_column", "envelopes.received"),
            ("timestamp", "envelopes.received")} <= found


def test_an_integer_unix_time_in_a_known_column(folder: Path) -> None:
    db = sqlite3.connect(folder / "db" / "dropbox.sqlite")
    with db:
        db.execute("UPDATE sources SET created_day = 1778325841")
    db.close()
    found = kinds(audit(folder))
    assert {("timestamp", "sources.created_day"),
            ("unexpected_value", "sources.created_day")} <= found


def test_an_unexpected_table(folder: Path) -> None:
    db = sqlite3.connect(folder / "db" / "dropbox.sqlite")
    with db:
        db.execute("CREATE TABLE access_log (day TEXT, ip TEXT)")
    db.close()
    assert ("unexpected_table", "access_log") in kinds(audit(folder))


def test_deleted_text_in_the_wal_and_in_free_pages(folder: Path) -> None:
    """Text written by a connection without secure_delete lingers after DELETE: first in the
    WAL, then (after a checkpoint) in the database file's free pages."""
    db = sqlite3.connect(folder / "db" / "dropbox.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA secure_delete=OFF")
    db.execute("PRAGMA wal_autocheckpoint=0")
    with db:
        db.execute("CREATE TABLE scratch (t TEXT)")
        db.executemany("INSERT INTO scratch VALUES (?)", [(SECRET_TEXT * 20,)] * 5)
    with db:
        db.execute("DROP TABLE scratch")
    found = kinds(audit(folder))
    assert ("plaintext", "db/dropbox.sqlite-wal") in found
    assert not any(k == "unexpected_table" for k, _ in found)  # the table itself is gone
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert ("plaintext", "db/dropbox.sqlite") in kinds(audit(folder))


def test_a_time_of_day_in_free_pages(folder: Path) -> None:
    db = sqlite3.connect(folder / "db" / "dropbox.sqlite")
    db.execute("PRAGMA secure_delete=OFF")
    with db:
        db.execute("CREATE TABLE scratch (t TEXT)")
        db.execute("INSERT INTO scratch VALUES ('at 23:41:07')")
    with db:
        db.execute("DROP TABLE scratch")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert ("timestamp", "db/dropbox.sqlite") in kinds(audit(folder))


def test_symlinks_are_flagged_and_never_followed(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET_TEXT * 3)
    (folder / "store" / "envelopes" / f"{'ef' * 16}.srdb").symlink_to(outside / "secret.txt")
    (folder / "tmp" / "link").symlink_to(outside)
    report = audit(folder)
    found = kinds(report)
    assert ("symlink", f"store/envelopes/{'ef' * 16}.srdb") in found
    assert ("symlink", "tmp/link") in found
    assert not any(k == "plaintext" for k, _ in found)  # the target was never read


def test_unexpected_files_and_folders(folder: Path) -> None:
    (folder / "logs").mkdir()
    (folder / "logs" / "access.log").write_text("GET /report 200\n")
    (folder / "tmp" / "upload.txt").write_text(SECRET_TEXT)
    (folder / "store" / "notes").mkdir()
    found = kinds(audit(folder))
    assert {("unexpected_folder", "logs"), ("unexpected_file", "tmp/upload.txt"),
            ("plaintext", "tmp/upload.txt"), ("unexpected_folder", "store/notes")} <= found


def test_an_exact_file_time_is_flagged(folder: Path) -> None:
    path = envelope_path(folder)
    os.utime(path, (1778325841, 1778325841))  # 2026-05-09 11:24:01 UTC
    assert ("file_time", f"store/envelopes/{path.name}") in kinds(audit(folder))


def test_file_times_are_normalised(clean_folder: Path) -> None:
    assert audit(clean_folder).clean


def test_command_exit_status_and_plain_words(folder: Path) -> None:
    status, doc = run_audit_command(folder)
    assert status == 0 and doc["clean"] is True
    (folder / "stray.txt").write_text("hello")
    status, doc = run_audit_command(folder)
    assert status == FLAGGED_EXIT and doc["clean"] is False
    done = subprocess.run([sys.executable, "-m", "dropbox_server", "audit", "--data-dir",
                           str(folder)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == FLAGGED_EXIT
    assert "FLAGGED" in done.stdout and "stray.txt" in done.stdout
    assert "sources" in done.stdout


def test_text_runs_cross_block_boundaries() -> None:
    text = b"x" * 40
    blocks = [b"\0\x01" * 5 + text[:7], text[7:29], text[29:] + b"\0" + b"y" * 31]
    runs = list(text_runs(iter(blocks)))
    assert [(offset, len(run)) for offset, run in runs] == [(10, 40)]
    assert hashlib.sha256(runs[0][1]).digest() == hashlib.sha256(text).digest()
