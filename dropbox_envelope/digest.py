"""SHA-256 of attachment bytes, computed on a worker thread for large inputs.

hashlib and libsodium both release the GIL, so hashing one block while the caller encrypts or
decrypts the next roughly halves the cost of the digest (benchmarks/envelope.py measures it).
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

    def update(self, data: bytes, *, background: bool = False) -> None:
        """Add ``data`` (which must not change until :meth:`wait`)."""
        self.size += len(data)
        if background and len(data) >= _THREAD_MIN // 4:
            self._pending.append(_executor().submit(self._hash.update, data))
        else:
            self.wait()
            self._hash.update(data)

    def wait(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def hexdigest(self) -> str:
        self.wait()
        return self._hash.hexdigest()
