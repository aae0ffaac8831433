"""One upload's per-byte work on a thread of its own, fed from the event loop in large batches.

Why: the event loop is a single thread, and the work an upload's bytes need besides receiving
them (SHA-256 of the envelope, the at-rest AEAD, ``os.write``; for the no-JS form also sealing)
costs about as much CPU as receiving them. Done inline, it halves the upload speed. hashlib,
libsodium (through cffi) and ``os.write`` release the GIL while they work, so a thread doing
them runs on the second core while the loop receives the next bytes.

Why batches of about 1 MiB: every hand-over wakes the other thread, which must then take the
GIL from a loop that holds it between system calls. Per 64 KiB read that costs more than it
saves (benchmarks/README.md); per MiB it is lost in the noise. For the same reason the thread
wakes the loop only when the loop waits for it, not after every batch.

Why a bounded queue: at most :data:`DEPTH` batches wait for or run on the thread, plus the one
being gathered. When the thread falls behind, :meth:`Offload.write` waits, the loop stops
reading the request, and TCP slows the client down: a fast client cannot make the server hold
the upload in memory. The batch buffers are allocated once and passed round (at most
``DEPTH + 1`` of them), so the memory an upload holds is fixed, and the allocator is not asked
for a fresh megabyte per batch.

Why the first batch starts small and grows: most reports are a few kilobytes, and many uploads
may be open at once (slow ones over Tor, or a flood of them); a megabyte each from the start
would be most of the server's memory under load. A buffer doubles as bytes arrive, so an upload
holds about twice what it has sent, up to the batch size.

Also here, for work that must not stop half-way when the server's shutdown cancels its caller:
:func:`finish` (a commit) and :func:`run_to_the_end` (a thread writing through a file the
caller's clean-up would close).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["BATCH_SIZE", "DEPTH", "Offload", "finish", "run_to_the_end"]

log = logging.getLogger("dropbox_server.offload")
T = TypeVar("T")
Bytes = bytes | bytearray | memoryview
# (function, arguments, where its result or exception goes, whether it runs even after a
# failure or an abort: the clean-up)
_Job = tuple[Callable[..., Any], tuple[Any, ...], list[Any], bool]

BATCH_SIZE = 1024 * 1024  # a multiple of the at-rest and payload block sizes (64 KiB)
FIRST_BUFFER = 16 * 1024  # a new batch buffer's size, doubled as it fills
DEPTH = 2  # batches handed over and not yet done, at most


class Offload:
    """Runs ``consume(batch)`` on a dedicated thread, in order, for the bytes given to
    :meth:`write`, gathered into batches of ``batch_size`` bytes (the last may be shorter).
    ``consume`` must not keep the batch: its buffer is reused once it returns. :meth:`call`
    runs any other step on the same thread, after the bytes before it.

    The objects ``consume`` and the calls touch belong to the thread until :meth:`close`
    returns: the caller must not use them meanwhile. An error on the thread is raised by the
    next :meth:`write`, :meth:`call` or :meth:`close`, and nothing queued after it runs. Leave
    with :meth:`close` (success) or :meth:`abort` (anything else, errors from :meth:`close`
    included). Use from one task at a time.
    """

    def __init__(self, consume: Callable[[Bytes], None], *, batch_size: int = BATCH_SIZE,
                 depth: int = DEPTH, name: str = "srdb-upload") -> None:
        if batch_size < 1 or depth < 1:
            raise ValueError("batch_size and depth must be positive")
        self._consume = consume
        self._batch_size = batch_size
        self._depth = depth
        self._batch = bytearray(min(batch_size, FIRST_BUFFER))
        self._fill = 0  # bytes of _batch in use
        self._spare: list[bytearray] = []  # batches the thread is done with (appended there)
        self._loop = asyncio.get_running_loop()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._submitted = 0  # jobs handed over (event loop)
        # Shared with the thread, under _lock: jobs finished, the first error, who waits.
        self._lock = threading.Lock()
        self._done = 0
        self._error: BaseException | None = None
        self._aborted = False
        self._waiter: tuple[asyncio.Future[None], int] | None = None
        self._open = True
        self._cleanup: asyncio.Task[None] | None = None  # the clean-up wait, once aborted
        # A daemon: a thread stuck in a write must not keep the process alive at exit. What it
        # leaves in tmp/ was never acknowledged, and start-up removes it.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Bytes gathered here and not yet handed over."""
        return self._fill

    @property
    def capacity(self) -> int:
        """Bytes allocated for gathering the next batch (grows with what arrives)."""
        return len(self._batch)

    @property
    def in_flight(self) -> int:
        """Jobs handed over to the thread and not yet finished."""
        with self._lock:
            return self._submitted - self._done

    async def write(self, data: Bytes) -> None:
        """Add bytes; hands a batch to the thread when one is full (waiting while
        :data:`DEPTH` are already there)."""
        self._check_open()
        view = memoryview(data).cast("B")
        while view:
            if self._fill == len(self._batch):
                self._grow(self._fill + len(view))
            take = min(len(view), len(self._batch) - self._fill)
            self._batch[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == self._batch_size:
                await self._hand_over()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread after everything written so far; returns its result."""
        self._check_open()
        if self._fill:
            await self._hand_over()
        box: list[Any] = []
        await self._submit(fn, (), box)
        await self._wait_until(self._submitted)
        return box[0]  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Hand over the last bytes, wait until the thread has done everything, and stop it.
        Raises the thread's error, if any (then call :meth:`abort`)."""
        self._check_open()
        if self._fill:
            await self._hand_over()
        await self._wait_until(self._submitted)
        self._open = False
        self._jobs.put(None)

    async def abort(self, then: Callable[[], None] | None = None) -> None:
        """Drop the bytes not yet handed over, stop the thread and run ``then`` (a clean-up,
        such as deleting the file being written) on it after the jobs already handed over,
        which are skipped unless one is running: ``then`` never races with one. Waits for it
        (a batch takes milliseconds, longer while a slow disk's queue is full); if the waiting
        task is cancelled, ``then`` still runs.
        Safe to call more than once (a later call waits for the first clean-up, then runs
        its own ``then``), and after :meth:`close`. Never raises the clean-up's error: the
        caller is usually handling another one, which matters more; it is logged.
        """
        self._fill = 0
        if self._cleanup is not None:
            # An abort already stopped the thread (its waiter may have been cancelled): wait
            # until the thread is done, so that this ``then`` cannot race a write either.
            await asyncio.shield(self._cleanup)
            if then is not None:
                _run_cleanup(then)
            return
        if not self._open:
            if then is not None:
                _run_cleanup(then)  # close() waited for everything of ours
            return
        self._open = False
        with self._lock:
            self._aborted = True  # the thread skips what is still queued
        box: list[Any] = []
        self._jobs.put((then or _nothing, (), box, True))
        self._submitted += 1
        self._jobs.put(None)
        self._cleanup = self._loop.create_task(
            self._wait_until(self._submitted, raise_error=False))
        await asyncio.shield(self._cleanup)
        if box and isinstance(box[0], BaseException):
            if not isinstance(box[0], Exception):
                raise box[0]
            _log_cleanup_error(box[0])

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the offload is closed")

    def _grow(self, wanted: int) -> None:
        # Double (at least), up to the batch size; only called when the buffer is full.
        size = len(self._batch)
        while size < min(wanted, self._batch_size):
            size *= 2
        grown = bytearray(min(size, self._batch_size))
        grown[:self._fill] = self._batch
        self._batch = grown

    async def _hand_over(self) -> None:
        batch, fill = self._batch, self._fill
        self._batch = (self._spare.pop() if self._spare
                       else bytearray(min(self._batch_size, FIRST_BUFFER)))
        self._fill = 0
        await self._submit(self._consume_batch, (batch, fill), [])

    def _consume_batch(self, batch: bytearray, fill: int) -> None:
        # On the thread. A short batch (the last, or one still growing) goes as a view, and
        # is not reused.
        if fill == len(batch) == self._batch_size:
            self._consume(batch)
            self._spare.append(batch)  # list.append is atomic: the loop pops it later
        else:
            with memoryview(batch) as view, view[:fill] as part:
                self._consume(part)

    async def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
                      box: list[Any]) -> None:
        await self._wait_until(self._submitted - self._depth + 1)  # backpressure
        self._jobs.put((fn, args, box, False))
        self._submitted += 1

    async def _wait_until(self, done: int, *, raise_error: bool = True) -> None:
        """Wait until ``done`` jobs have finished; raise the thread's error, if any (unless
        ``raise_error`` is false)."""
        while True:
            with self._lock:
                if raise_error and self._error is not None:
                    raise self._error
                if self._done >= done:
                    return
                waiter = self._loop.create_future()
                self._waiter = (waiter, done)
            try:
                await waiter
            finally:
                with self._lock:
                    self._waiter = None

    def _run(self) -> None:
        # The thread. Jobs run in order; after a failure (or an abort) only the clean-up runs.
        while (job := self._jobs.get()) is not None:
            fn, args, box, always = job
            with self._lock:
                skip = not always and (self._error is not None or self._aborted)
            result: Any = None
            error: BaseException | None = None
            if not skip:
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the event loop, raised there
                    error = exc
            box.append(result if error is None else error)
            with self._lock:
                self._done += 1
                if error is not None and self._error is None:
                    self._error = error
                waiter = self._waiter
                if waiter is not None and (self._done >= waiter[1] or self._error is not None):
                    self._waiter = None
                    self._loop.call_soon_threadsafe(_wake, waiter[0])


async def finish(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile; the caller's
    ``CancelledError`` then goes on, once ``work`` is done (its result or error dropped).

    For steps that must not stop half-way: an upload's commit (the fsync'd rename and the
    database row that lists it), and any thread still using a file the caller's clean-up would
    close or delete. Cancellation comes from the server's shutdown, after its grace period.
    """
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):  # cancelled again: still wait
                await asyncio.wait([future])
        if not future.cancelled() and (error := future.exception()) is not None:
            # Nobody else will see it: the caller goes on with its cancellation. Only the
            # kind: an error's text can name a file.
            log.warning("work that had to finish at shutdown failed (%s)",
                        type(error).__name__)
        raise


async def run_to_the_end(fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread(fn, *args)`` through :func:`finish`.

    A thread cannot be stopped. With plain ``to_thread`` a cancelled caller's clean-up (closing
    an upload's file descriptor, deleting its file) would run while ``fn`` still writes through
    that descriptor, and a descriptor number closed and reused meanwhile would take those bytes
    into another file.
    """
    # A plain future from the executor, not a Task like to_thread's: asyncio.run cancels every
    # task left at exit, and a cancelled one would let the caller's clean-up go ahead.
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await finish(loop.run_in_executor(None, functools.partial(context.run, fn, *args)))


def _nothing() -> None:
    """The clean-up of an :meth:`Offload.abort` given none: the thread still stops in order."""


def _run_cleanup(then: Callable[[], None]) -> None:
    try:
        then()
    except Exception as exc:  # see abort(): logged, not raised
        _log_cleanup_error(exc)


def _log_cleanup_error(exc: Exception) -> None:
    # Only the kind of error: a clean-up deletes a randomly named temporary file, which
    # start-up removes anyway if this failed.
    log.warning("an unfinished upload could not be cleaned up (%s); start-up will remove "
                "what is left in tmp/", type(exc).__name__)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
