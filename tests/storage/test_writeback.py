"""Starting an upload's writeback while it arrives (dropbox_server/writeback.py): the hint is
given for every few MiB, in order and without gaps, never for small reports, stops after a
failure, and changes nothing of what is stored. Its speed is measured in benchmarks/upload.py
(the "tail" column), not here."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import pytest

from dropbox_envelope.atrest import unwrap
from dropbox_server import storage as storage_module
from dropbox_server import writeback
from dropbox_server.storage import Upload
from dropbox_server.writeback import WRITEBACK_AFTER, start_writeback
from tests.support import skip_or_fail

MiB = 1024 * 1024


def test_the_hint_is_given_on_linux_for_a_written_file(tmp_path: Path) -> None:
    # CI runs Linux: there the call must exist and succeed, or every upload waits at fsync.
    assert writeback.available() == sys.platform.startswith("linux")
    path = tmp_path / "file"
    data = os.urandom(3 * MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        assert start_writeback(fd, 0, len(data)) == writeback.available()
        assert start_writeback(fd, 0, 0) is False  # nothing to write: no call
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_hint_that_cannot_be_given_is_false_not_an_error(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        assert start_writeback(write_end, 0, 10) is False  # a pipe has no pages to write
    finally:
        os.close(read_end)
        os.close(write_end)
    assert start_writeback(-1, 0, 10) is False  # no such file descriptor


def test_offsets_past_4_gib_reach_the_kernel_whole(tmp_path: Path) -> None:
    # A 2 GiB report's wrapped file goes past 2**31 bytes; a 32-bit offset would come out
    # negative and the kernel would refuse every hint from there on.
    fd = os.open(tmp_path / "sparse", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.pwrite(fd, b"x" * 4096, 5 << 30)
        assert start_writeback(fd, 3 << 30, 4096) == writeback.available()
        assert start_writeback(fd, 5 << 30, 4096) == writeback.available()
    finally:
        os.close(fd)


def test_the_call_only_starts_writeback_and_lets_other_threads_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    function = writeback._sync_file_range
    if function is None:
        skip_or_fail("no sync_file_range on this system (Linux has it)")
    # ctypes.PyDLL would hold the GIL for the call, stalling the event loop while it waits.
    python_api: int = ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
    assert not function._flags_ & python_api  # type: ignore[attr-defined]
    seen: list[tuple[int, int, int, int]] = []

    def fake(fd: int, offset: int, length: int, flags: int) -> int:
        seen.append((fd, offset, length, flags))
        return 0
    monkeypatch.setattr(writeback, "_sync_file_range", fake)
    assert start_writeback(7, 1 << 33, 5) is True
    # SYNC_FILE_RANGE_WRITE alone: a WAIT_* flag would consume the file's write error, which
    # the hint ignores, and the fsync before the receipt would then report success.
    assert seen == [(7, 1 << 33, 5, 2)]


Hints = list[tuple[int, int]]


def recording(monkeypatch: pytest.MonkeyPatch, answer: bool | None = None) -> Hints:
    """Record the hints Upload gives; they still reach the kernel unless ``answer`` is set."""
    calls: Hints = []

    def record(fd: int, offset: int, length: int) -> bool:
        # Never a byte that is not in the file yet.
        assert offset + length <= os.fstat(fd).st_size
        calls.append((offset, length))
        return start_writeback(fd, offset, length) if answer is None else answer
    monkeypatch.setattr(storage_module, "start_writeback", record)
    return calls


def write_in_batches(upload: Upload, data: bytes, batch: int) -> None:
    for start in range(0, len(data), batch):
        upload.write(data[start:start + batch])
    upload.sync_and_close()


def test_a_large_upload_is_hinted_in_order_without_gaps_and_stored_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recording(monkeypatch)
    upload = Upload(tmp_path / "big.part")
    data = os.urandom(13 * MiB + 12345)
    write_in_batches(upload, data, MiB)
    stored = upload.path.read_bytes()
    assert unwrap(upload.wrap_key, stored) == data
    assert calls, "no writeback hint for a 13 MiB upload"
    position = 0
    for offset, length in calls:
        assert offset == position and length >= WRITEBACK_AFTER
        position += length
    # Everything but the last few MiB was handed over before fsync.
    assert len(stored) - position < WRITEBACK_AFTER + MiB


def test_odd_sized_writes_are_hinted_without_gaps(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recording(monkeypatch)
    upload = Upload(tmp_path / "odd.part")
    data = os.urandom(9 * MiB + 7)
    write_in_batches(upload, data, 777_777)
    assert unwrap(upload.wrap_key, upload.path.read_bytes()) == data
    assert [offset for offset, _ in calls] == \
        [sum(length for _, length in calls[:i]) for i in range(len(calls))]
    assert len(calls) == 2  # at about 4 and 8 MiB of the wrapped file


def test_a_small_report_is_never_hinted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recording(monkeypatch)
    upload = Upload(tmp_path / "small.part")
    write_in_batches(upload, os.urandom(WRITEBACK_AFTER - 64 * 1024), 64 * 1024)
    assert calls == []


def test_after_a_failed_hint_no_more_are_tried_and_the_upload_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recording(monkeypatch, answer=False)
    upload = Upload(tmp_path / "nohint.part")
    data = os.urandom(12 * MiB)
    write_in_batches(upload, data, MiB)
    assert len(calls) == 1
    assert unwrap(upload.wrap_key, upload.path.read_bytes()) == data
