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


async def test_an_envelope_commit_cancelled_during_its_fsync_still_stores_it_whole(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = hold(monkeypatch)
    body = os.urandom(300_000)
    upload = storage.new_upload()
    upload.write(body)
    task = asyncio.create_task(storage.commit_envelope(upload, recipient="city-police"))
    await until(started)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second cancellation does not cut it short either
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the fsync, not gone with the file still open
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    upload.discard()  # what every handler does when the commit raised

    [row] = await storage.list_envelopes()
    assert row.size == len(body)
    stored = await storage.open_envelope(row.id)
    assert stored is not None
    with stored:
        assert stored.read_all() == body
    assert list(storage.tmp_dir.iterdir()) == []


async def test_a_reply_commit_cancelled_during_its_fsync_still_stores_it_whole(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.staff.conftest import create_source

    source_id, _key = await create_source(storage)
    started, release = hold(monkeypatch)
    body = os.urandom(70_000)
    upload = storage.new_upload()
    upload.write(body)
    task = asyncio.create_task(storage.commit_reply(upload, source_id=source_id))
    await until(started)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    upload.discard()

    [row] = await storage.list_replies(source_id)
    stored = await storage.open_reply(row.id)
    assert stored is not None
    with stored:
        assert stored.read_all() == body
