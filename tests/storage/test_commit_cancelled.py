"""A commit cancelled half-way (the server stopping while a report is being stored) runs to its
end: the envelope is listed and whole, and the handler's clean-up afterwards deletes nothing
of it. Before, the clean-up could close the file descriptor under the fsync still running on a
thread, and delete the file of an envelope whose row the database thread went on to commit."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dropbox_server.errors import StorageError
from dropbox_server.storage import Storage, Upload

pytestmark = pytest.mark.asyncio
WAIT = 30.0  # bound for a thread to get somewhere (not a timing assertion)


@pytest_asyncio.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = Storage(tmp_path / "data")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def hold(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every upload's fsync wait for ``release`` (after setting ``started``)."""
    started, release = threading.Event(), threading.Event()
    real = Upload.sync_and_close

    def held(self: Upload) -> None:
        started.set()
        release.wait(WAIT)
        real(self)
    monkeypatch.setattr(Upload, "sync_and_close", held)
    return started, release


async def until(event: threading.Event) -> None:
    async with asyncio.timeout(WAIT):
        while not event.is_set():
            await asyncio.sleep(0.005)


def pending(storage: Storage, size: int) -> tuple[Upload, bytes]:
    body = os.urandom(size)
    upload = storage.new_upload()
    upload.write(body)
    return upload, body


async def cancelled_after(task: asyncio.Task[object], release: threading.Event,
                          upload: Upload) -> None:
    """Let the held step go on, see the caller's cancellation, clean up as handlers do."""
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    upload.discard()


async def assert_only_envelope_is(storage: Storage, body: bytes) -> None:
    """Exactly one envelope is listed, its file holds ``body``, and tmp/ is empty."""
    [row] = await storage.list_envelopes()
    assert row.size == len(body)
    assert sorted(p.stem for p in storage.envelopes_dir.iterdir()) == [row.id]
    stored = await storage.open_envelope(row.id)
    assert stored is not None
    with stored:
        assert stored.read_all() == body
    assert list(storage.tmp_dir.iterdir()) == []


async def test_an_envelope_commit_cancelled_during_its_fsync_still_stores_it_whole(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = hold(monkeypatch)
    upload, body = pending(storage, 300_000)
    task = asyncio.create_task(storage.commit_envelope(upload, recipient="city-police"))
    await until(started)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancellation does not cut it short either
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the fsync, not gone with the file still open
    await cancelled_after(task, release, upload)
    await assert_only_envelope_is(storage, body)


async def test_a_reply_commit_cancelled_during_its_fsync_still_stores_it_whole(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.staff.conftest import create_source

    source_id, _key = await create_source(storage)
    started, release = hold(monkeypatch)
    upload, body = pending(storage, 70_000)
    task = asyncio.create_task(storage.commit_reply(upload, source_id=source_id))
    await until(started)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    await cancelled_after(task, release, upload)

    [row] = await storage.list_replies(source_id)
    stored = await storage.open_reply(row.id)
    assert stored is not None
    with stored:
        assert stored.read_all() == body


async def test_a_commit_cancelled_while_its_commit_statement_is_queued_keeps_row_and_file(
        storage: Storage) -> None:
    # aiosqlite runs a statement already handed to its thread even when the awaiting task is
    # cancelled: the commit must not then delete the file of the row it committed.
    started, release = threading.Event(), threading.Event()

    def trace(sql: str) -> None:  # on the database thread
        if sql == "COMMIT":
            started.set()
            release.wait(WAIT)
    await storage.db.set_trace_callback(trace)
    upload, body = pending(storage, 10_000)
    task = asyncio.create_task(storage.commit_envelope(upload, recipient="city-police"))
    await until(started)
    task.cancel()
    await asyncio.sleep(0.05)
    await cancelled_after(task, release, upload)
    await storage.db.set_trace_callback(None)  # type: ignore[arg-type]  # None: tracing off
    await assert_only_envelope_is(storage, body)


async def test_closing_waits_for_a_commit_whose_caller_left_and_refuses_new_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The order of a shutdown: the handler is cancelled, then the storage closed.
    store = Storage(tmp_path / "data")
    await store.open()
    started, release = hold(monkeypatch)
    upload, body = pending(store, 100_000)
    task = asyncio.create_task(store.commit_envelope(upload, recipient="city-police"))
    await until(started)
    task.cancel()
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waiting for the commit, not closing the database under it
    late = store.new_upload()
    late.write(b"too late")
    with pytest.raises(StorageError, match="closing"):
        await store.commit_envelope(late, recipient="city-police")
    late.discard()
    release.set()
    await closing
    await cancelled_after(task, release, upload)

    reopened = Storage(tmp_path / "data")
    await reopened.open()
    try:
        await assert_only_envelope_is(reopened, body)
    finally:
        await reopened.close()
