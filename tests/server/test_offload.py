"""The upload's own thread (dropbox_server/offload.py): order, bounded memory (backpressure),
errors on the thread, and clean-up on abort, alone and through the real upload endpoints."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from dropbox_server.offload import BATCH_SIZE, FIRST_BUFFER, Offload, run_to_the_end
from dropbox_server.storage import Upload
from tests.server.conftest import LABOUR, AgencyKeys, Client, MakeClient, backend_of
from tests.server.datafolder import snapshot
from tests.server.forms import BASIC_ANSWERS, MULTIPART, File, get_csrf, multipart, report_parts
from tests.server.test_envelope_path import labour_keys, post_envelope, seal

pytestmark = pytest.mark.asyncio

WAIT = 30.0  # generous bound for the thread to get somewhere (not a timing assertion)


async def eventually(predicate: Callable[[], bool]) -> None:
    """Let the thread and the loop run until ``predicate()`` holds (fails after WAIT s)."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_bytes_arrive_in_order_in_batches_and_calls_follow_them() -> None:
    seen: list[bytes] = []
    offload = Offload(lambda batch: seen.append(bytes(batch)), batch_size=10)
    for i in range(7):
        await offload.write(bytes([i]) * 4)
    assert await offload.call(lambda: b"".join(seen)) == b"".join(bytes([i]) * 4
                                                               for i in range(7))
    await offload.write(b"tail")
    await offload.close()
    assert [len(b) for b in seen] == [10, 10, 8, 4]  # the call flushed a short batch
    assert b"".join(seen) == b"".join(bytes([i]) * 4 for i in range(7)) + b"tail"


async def test_a_small_upload_holds_a_small_buffer() -> None:
    # Many uploads may be open at once (slow ones over Tor): each must not take a whole batch
    # of memory before it has sent that much. The buffer doubles as bytes arrive.
    seen: list[bytes] = []
    offload = Offload(lambda batch: seen.append(bytes(batch)))
    await offload.write(b"r" * 5000)
    assert offload.capacity == FIRST_BUFFER < BATCH_SIZE
    await offload.write(b"s" * 100_000)
    assert 105_000 <= offload.capacity <= 2 * 105_000
    await offload.write(b"t" * (2 * BATCH_SIZE))
    assert offload.capacity <= BATCH_SIZE
    await offload.close()
    assert [len(b) for b in seen][:2] == [BATCH_SIZE, BATCH_SIZE]  # full batches once large
    assert b"".join(seen) == b"r" * 5000 + b"s" * 100_000 + b"t" * (2 * BATCH_SIZE)


async def test_a_slow_thread_stops_the_writer_after_a_bounded_amount() -> None:
    gate = threading.Event()
    consumed: list[int] = []

    def consume(batch: bytearray) -> None:
        gate.wait(WAIT)
        consumed.append(len(batch))

    offload = Offload(consume, batch_size=1000, depth=2)
    written = 0

    async def fast_client() -> None:
        nonlocal written
        for _ in range(50):
            await offload.write(b"x" * 500)
            written += 500

    task = asyncio.create_task(fast_client())
    await eventually(lambda: written >= 2500)
    await asyncio.sleep(0.05)  # the writer really is stuck, not merely slow
    # Two batches handed over, a third full one waiting to be: the sixth write waits, and
    # with it the reading of the request.
    assert not task.done() and written == 2500 and offload.in_flight == 2
    gate.set()
    await task
    await offload.close()
    assert sum(consumed) == 50 * 500


async def test_an_error_on_the_thread_is_raised_and_stops_the_rest() -> None:
    consumed: list[bytes] = []

    def consume(batch: bytearray) -> None:
        if consumed:
            raise OSError(errno.ENOSPC, "No space left on device")
        consumed.append(bytes(batch))

    offload = Offload(consume, batch_size=4)
    with pytest.raises(OSError) as caught:
        for _ in range(20):
            await offload.write(b"abcd")
        await offload.close()
    assert caught.value.errno == errno.ENOSPC
    cleaned: list[str] = []
    await offload.abort(then=lambda: cleaned.append("done"))
    assert consumed == [b"abcd"] and cleaned == ["done"]
    with pytest.raises(RuntimeError):
        await offload.write(b"more")


def held_offload(events: list[str]) -> tuple[Offload, threading.Event, threading.Event]:
    """An offload whose batches wait on the thread until ``release`` is set (logged in
    ``events``); ``started`` is set when the first one runs."""
    started, release = threading.Event(), threading.Event()

    def consume(batch: bytearray) -> None:
        events.append("start")
        started.set()
        release.wait(WAIT)
        events.append("end")

    return Offload(consume, batch_size=4), started, release


async def test_abort_waits_for_the_batch_in_progress_before_cleaning_up() -> None:
    events: list[str] = []
    offload, started, release = held_offload(events)
    await offload.write(b"abcd")  # running on the thread
    await offload.write(b"efgh")  # queued behind it: skipped by the abort
    await eventually(started.is_set)
    abort = asyncio.create_task(offload.abort(then=lambda: events.append("cleanup")))
    await asyncio.sleep(0.05)
    assert not abort.done()
    release.set()
    await abort
    assert events == ["start", "end", "cleanup"]


async def test_a_second_abort_never_cleans_up_while_a_batch_is_still_running() -> None:
    # The first abort's waiter is cancelled (say, at shutdown) while a batch runs; a second
    # abort must still wait for the thread before its clean-up (deleting the file).
    events: list[str] = []
    offload, started, release = held_offload(events)
    await offload.write(b"abcd")
    await eventually(started.is_set)
    first = asyncio.create_task(offload.abort(then=lambda: events.append("cleanup1")))
    await asyncio.sleep(0.05)
    first.cancel()
    second = asyncio.create_task(offload.abort(then=lambda: events.append("cleanup2")))
    await asyncio.sleep(0.05)
    assert not second.done() and events == ["start"]
    release.set()
    await second
    assert events == ["start", "end", "cleanup1", "cleanup2"]


async def test_a_failing_clean_up_does_not_replace_the_error_being_handled(
        caplog: pytest.LogCaptureFixture) -> None:
    offload = Offload(lambda batch: None, batch_size=4)
    await offload.write(b"abcd")

    def cleanup() -> None:
        raise PermissionError(13, "Permission denied", "/data/tmp/secret-name")

    with pytest.raises(ValueError, match="the real problem"):
        try:
            raise ValueError("the real problem")
        except ValueError:
            await offload.abort(then=cleanup)
            raise
    assert "PermissionError" in caplog.text and "secret-name" not in caplog.text
    await offload.abort(then=cleanup)  # again, after the thread is gone: logged too


# -- through the server ----------------------------------------------------------------------

def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def write(self: Upload, data: bytes | bytearray) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Upload, "write", write)


async def test_disk_full_on_the_thread_gives_an_error_and_stores_nothing(
        client: Client, agency_keys: AgencyKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    disk_full(monkeypatch)
    envelope = seal(labour_keys(agency_keys), attachment=b"e" * 200_000)
    resp = await client.post(f"/submit/envelope?recipient={LABOUR}", data=envelope,
                             headers={"Content-Type": "application/octet-stream",
                                      "X-CSRF-Token": await get_csrf(client)})
    assert resp.status == 500
    token = await get_csrf(client)
    body = multipart(report_parts(token, recipient=LABOUR, answers=BASIC_ANSWERS,
                                  files=[File("attachments", "a.bin", b"f" * 200_000)]))
    resp = await client.post("/report", data=body, headers={"Content-Type": MULTIPART})
    assert resp.status == 500
    assert "Your report was not saved" in await resp.text()
    assert await snapshot(backend) == before
    assert not list(backend.storage.tmp_dir.iterdir())


async def test_a_client_that_goes_away_mid_upload_leaves_no_temporary_file(
        make_client: MakeClient, agency_keys: AgencyKeys) -> None:
    client = await make_client(max_report_bytes=16 * 1024 * 1024)
    backend = backend_of(client)
    before = await snapshot(backend)
    envelope = seal(labour_keys(agency_keys), attachment=os.urandom(6 * 1024 * 1024))
    sent = asyncio.Event()

    async def half_then_gone() -> AsyncIterator[bytes]:
        for start in range(0, 4 * 1024 * 1024, 65536):  # batches reach the thread
            yield envelope[start:start + 65536]
        sent.set()
        await eventually(lambda: any(backend.storage.tmp_dir.iterdir()))
        raise ConnectionResetError("the person closed the tab")

    with pytest.raises(Exception):  # noqa: B017 - whatever the client library makes of it
        await post_envelope(client, half_then_gone())
    assert sent.is_set()
    await eventually(lambda: backend.uploads_in_progress == 0)
    await eventually(lambda: not list(backend.storage.tmp_dir.iterdir()))
    assert await snapshot(backend) == before


async def test_the_padding_of_a_large_form_upload_is_written_in_bounded_pieces(
        make_client: MakeClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """PADMÉ pads a 48 MiB envelope by about 1.5 MiB of zeros; they must reach the file a
    batch at a time, not gathered whole (memory would grow with the upload's size)."""
    client = await make_client(max_report_bytes=64 * 1024 * 1024)
    writes: list[int] = []
    original = Upload.write

    def write(self: Upload, data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        original(self, data)

    monkeypatch.setattr(Upload, "write", write)
    token = await get_csrf(client)
    body = multipart(report_parts(token, recipient=LABOUR, answers=BASIC_ANSWERS, files=[
        File("attachments", "big.bin", os.urandom(48 * 1024 * 1024))]))
    resp = await client.post("/report", data=io.BytesIO(body),
                             headers={"Content-Type": MULTIPART})
    assert resp.status == 200, await resp.text()
    total = sum(writes)
    assert total - 48 * 1024 * 1024 > 1024 * 1024  # the padding really is over a batch
    assert max(writes) < BATCH_SIZE + 2 * 65_536


# -- steps that must finish even when their caller is cancelled (server shutdown) -------------

def held(events: list[str]) -> tuple[Callable[[], str], threading.Event, threading.Event]:
    started, release = threading.Event(), threading.Event()

    def work() -> str:
        events.append("start")
        started.set()
        release.wait(WAIT)
        events.append("end")
        return "done"
    return work, started, release


async def test_a_cancelled_caller_goes_on_only_after_the_thread_has_finished() -> None:
    events: list[str] = []
    work, started, release = held(events)
    task = asyncio.create_task(run_to_the_end(work))
    await eventually(started.is_set)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # cancelled again: still waits
    await asyncio.sleep(0.05)
    assert not task.done() and events == ["start"]
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["start", "end"]


async def test_run_to_the_end_returns_the_result_and_raises_the_error() -> None:
    events: list[str] = []
    work, _started, release = held(events)
    release.set()
    assert await run_to_the_end(work) == "done"

    def fail() -> None:
        raise OSError(errno.ENOSPC, "full")
    with pytest.raises(OSError, match="full"):
        await run_to_the_end(fail)


async def test_a_cancelled_caller_gets_its_cancellation_and_the_work_s_error_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    # The cancellation is what the caller must handle (the server is stopping). The work's
    # own error arrived while it waited and nobody else will see it: logged, by kind only
    # (an error's text can name a file).
    release = threading.Event()

    def fail() -> None:
        release.wait(WAIT)
        raise OSError(errno.EIO, "broken /data/tmp/secret-name.part")
    task = asyncio.create_task(run_to_the_end(fail))
    await asyncio.sleep(0.05)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    [record] = [r for r in caplog.records if r.name == "dropbox_server.offload"]
    assert "OSError" in record.getMessage() and "secret-name" not in record.getMessage()


async def test_work_left_by_a_cancelled_caller_is_not_cancelled_with_the_other_tasks() -> None:
    # asyncio.run cancels every task left when the server's main coroutine returns; the
    # thread's result must still be awaited, not abandoned, by the caller that waits for it.
    events: list[str] = []
    work, started, release = held(events)
    task = asyncio.create_task(run_to_the_end(work))
    await eventually(started.is_set)
    for other in asyncio.all_tasks():
        if other is not asyncio.current_task():
            other.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["start", "end"]
