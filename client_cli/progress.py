"""A dependency-free progress indicator on stderr for long operations."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

__all__ = ["PROGRESS_THRESHOLD", "Progress"]

PROGRESS_THRESHOLD = 8 * 1024 * 1024
"""Below this many bytes an operation is quick enough not to need a progress display."""


class Progress:
    """Call with byte counts as work advances; shows ``\\r<label>: NN%`` when ``total`` exceeds
    :data:`PROGRESS_THRESHOLD` and the stream is a terminal. Use as a context manager so the
    line is cleared at the end, whatever happens."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 threshold: int = PROGRESS_THRESHOLD) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._label = label
        self._total = max(total, 1)
        self._done = 0
        self._shown = -1
        try:
            tty = self._stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.enabled = total > threshold and tty

    def __call__(self, count: int) -> None:
        if not self.enabled:
            return
        self._done += count
        percent = min(100, self._done * 100 // self._total)
        if percent != self._shown:
            self._shown = percent
            self._stream.write(f"\r{self._label}: {percent:3d}%")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.enabled and self._shown >= 0:
            self._stream.write("\r" + " " * (len(self._label) + 6) + "\r")
            self._stream.flush()
