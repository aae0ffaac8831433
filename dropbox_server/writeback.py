"""Asking the kernel to start writing a file's pages to disk while the upload goes on.

Why: below the kernel's background threshold (``dirty_background_ratio``, gigabytes on a server
with memory to spare), nothing makes it write an upload's pages until ``fsync`` asks for them.
The receipt waits for that ``fsync``, so it waited for the whole file to reach the disk after
the last byte had arrived: about 0.1 s per 200 MiB and 0.9 s per 2 GiB on the benchmark machine
(benchmarks/README.md). Started every few MiB, the disk works while the bytes arrive, ``fsync``
has only the last few MiB left, and the dirty pages an upload holds stay bounded however many
large uploads run at once.

This is a hint, never a promise: the report is durable only after ``fsync`` (which also
reports any write error). So a failure here is ignored, and where the call does not exist
(not Linux) nothing is done.

``sync_file_range(SYNC_FILE_RANGE_WRITE)`` is the documented way to start writeback of a range
without waiting for it; Python's ``os`` has no binding, hence ctypes. ``posix_fadvise``'s
``DONTNEED`` starts writeback too on Linux, but as a side effect of dropping the pages, which is
not what it is for.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["WRITEBACK_AFTER", "available", "start_writeback"]

WRITEBACK_AFTER = 4 * 1024 * 1024  # bytes written between two hints
# <fcntl.h>; the same value on every Linux architecture. Never add SYNC_FILE_RANGE_WAIT_*:
# waiting would consume the file's pending write error, which is ignored here, and the
# fsync that decides whether a receipt is shown would then report success.
_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        import ctypes  # a Python built without it still runs the server, without hints

        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc among them
        function = libc.sync_file_range
    except (ImportError, OSError, TypeError, AttributeError):  # no such call here (not Linux)
        return None
    # glibc and musl declare the offset and count as off64_t on every architecture. ctypes
    # releases the GIL during the call.
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load()


def available() -> bool:
    """Whether this system can start writeback early (Linux)."""
    return _sync_file_range is not None


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing ``length`` bytes of ``fd`` from ``offset`` to disk, without waiting for
    them (it may wait while the disk's queue is full, which slows a writer that outruns the
    disk). False if the hint could not be given (then ``fsync`` does all the work)."""
    if _sync_file_range is None or length <= 0:
        return False
    return _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0
