"""SHA-256 of attachment bytes, computed on a worker thread for large inputs.

hashlib and libsodium both release the GIL, so with a second core free, hashing one block while
the caller encrypts or decrypts the next hides most of the digest's cost (benchmarks/envelope.py
measures it; with no free core the two simply run one after the other).
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["Sha256"]

_THREAD_MIN = 256 * 1024  # below this a thread hand-off costs more than it saves
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    # One worker only: tasks run in submission order, so each digest sees its bytes in order.
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="srdb-sha256")
        return _pool


class Sha256:
    """A SHA-256 whose large updates may run in the background; :meth:`wait` joins them."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pending: list[Future[None]] = []
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview, *,
               background: bool = False) -> None:
        """Add ``data`` (which must not change until :meth:`wait`)."""
        self.size += len(data)
        if background and len(data) >= _THREAD_MIN // 4:
            self._pending.append(_executor().submit(self._hash.update, data))
        else:
            self.wait()
            self._hash.update(data)

    def update_many(self, pieces: list[bytes]) -> None:
        """Hash ``pieces`` (in order) in the background as one job, after the previous job.

        Callers decrypt the next block meanwhile; the join happens at the next call, at
        :meth:`wait` or :meth:`hexdigest`, so at most two batches are in flight.
        """
        if not pieces:
            return
        total = sum(len(p) for p in pieces)
        self.size += total
        self.wait()
        if total < _THREAD_MIN:
            for piece in pieces:
                self._hash.update(piece)
            return
        self._pending.append(_executor().submit(self._update_all, pieces))

    def _update_all(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._hash.update(piece)

    def wait(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def hexdigest(self) -> str:
        self.wait()
        return self._hash.hexdigest()
