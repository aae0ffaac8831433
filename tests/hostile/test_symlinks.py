"""Symlinks planted in the data folder: the server refuses to start, or removes them, and never
follows one (store/, tmp/, db/, secrets/). Each case starts the real `dropbox-server run`."""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dropbox_envelope.keys import SecretKey, StaffSecretKey
from tests.e2e.test_product_loop import Server
from tests.hostile.live import Running, browser, csrf, make_data

START_DEADLINE = 8.0  # seconds for the server to serve, or to exit (it needs about 1)


def start_outcome(data: Path, log: Path) -> tuple[int | None, str]:
    """Start the server; (None if it serves, else its exit status, its stderr). A server that
    neither serves nor exits within START_DEADLINE is killed: its status is then -9."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "dropbox_server", "run", "--dev", "--data-dir", str(data),
             "--port", "0", "--staff-port", "0"], stdout=subprocess.PIPE, stderr=handle,
            text=True)
    watchdog = threading.Timer(START_DEADLINE, process.kill)
    watchdog.start()
    serving = False
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("staff API:"):
                serving = True
                break
    finally:
        watchdog.cancel()
    if serving:
        process.terminate()
    try:
        code = process.wait(START_DEADLINE)
    except subprocess.TimeoutExpired:  # printed its error, but does not exit
        process.kill()
        code = process.wait()
    process.stdout.close()
    return (None if serving else code), log.read_text()


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder that has been started once (so its folders exist), and a file outside
    it that a planted symlink will point to."""
    data, _agency, _staff = make_data(tmp_path)
    code, log = start_outcome(data, tmp_path / "first.log")
    assert code is None, log
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("not the drop box's\n")
    return data, outside


@pytest.mark.parametrize("folder", ["store/envelopes", "store/replies", "tmp", "db"])
def test_a_folder_replaced_by_a_symlink_stops_start_up(fresh: tuple[Path, Path],
                                                       folder: str, tmp_path: Path) -> None:
    data, outside = fresh
    target = data / folder
    moved = outside / folder.replace("/", "-")
    target.rename(moved)
    target.symlink_to(moved)
    code, log = start_outcome(data, tmp_path / "run.log")
    assert code not in (None, 0)
    assert "must be a real folder, not a symlink" in log
    assert "Traceback" not in log


def test_store_replaced_by_a_symlink_stops_start_up(fresh: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    data, outside = fresh
    (data / "store").rename(outside / "store")
    (data / "store").symlink_to(outside / "store")
    code, log = start_outcome(data, tmp_path / "run.log")
    assert code not in (None, 0)
    assert "symlink" in log


def test_symlinked_files_in_store_and_tmp_are_removed_not_followed(
        fresh: tuple[Path, Path], tmp_path: Path) -> None:
    data, outside = fresh
    victim = outside / "victim.txt"
    planted = [data / "store" / "envelopes" / f"{'ab' * 16}.srdb",
               data / "store" / "replies" / f"{'cd' * 16}.srdb",
               data / "tmp" / f"{'ef' * 16}.part", data / "tmp" / "dir-link"]
    for link in planted[:3]:
        link.symlink_to(victim)
    planted[3].symlink_to(outside, target_is_directory=True)
    code, log = start_outcome(data, tmp_path / "run.log")
    assert code is None, log
    assert not any(os.path.lexists(p) for p in planted)
    assert victim.read_text() == "not the drop box's\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_a_folder_planted_in_the_store(fresh: tuple[Path, Path], tmp_path: Path) -> None:
    data, _outside = fresh
    (data / "store" / "envelopes" / f"{'ab' * 16}.srdb").mkdir()
    code, log = start_outcome(data, tmp_path / "run.log")
    assert "Traceback" not in log
    assert code is None or (code > 0 and "store" in log)


def test_a_refused_start_exits(fresh: tuple[Path, Path], tmp_path: Path) -> None:
    data, _outside = fresh
    db = sqlite3.connect(data / "db" / "dropbox.sqlite")
    db.execute("PRAGMA user_version = 99")  # a schema from a newer version of the server
    db.close()
    code, log = start_outcome(data, tmp_path / "run.log")
    assert "newer than this software" in log
    assert code == 1


@pytest.mark.asyncio
async def test_a_symlinked_csrf_key_is_not_followed(fresh: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    data, outside = fresh
    key = data / "secrets" / "csrf.key"
    key.unlink()
    key.symlink_to(outside / "victim.txt")
    code, log = start_outcome(data, tmp_path / "check.log")
    if code is not None:
        assert "Traceback" not in log  # refused to start, with a message: acceptable
        return
    server = Server(data, tmp_path / "run.log")
    try:
        async with browser() as session:
            token = await csrf(session, Running(server, data, tmp_path, SecretKey.generate(),
                                                StaffSecretKey.generate()))
            cookie = next(c.value for c in session.cookie_jar if c.key == "srdb_csrf")
    finally:
        server.stop()
    followed = hmac.new(b"not the drop box's\n", cookie.encode(), hashlib.sha256).hexdigest()
    assert token != followed
