"""Stored files on disk: the at-rest wrapping of :mod:`dropbox_envelope.atrest` applied to file
descriptors, and the file system metadata rules.

Everything here blocks (``pread``, AEAD over 64 KiB blocks): callers on the event loop run it
in a thread.

File system metadata (docs/PROTOCOL.md §11.4): stored files and the folders holding them get
their modification and access times set to the Unix epoch (1970-01-01T00:00:00Z) when they are
written, and stored files are read with ``O_NOATIME`` so reading them does not record when.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

from dropbox_envelope.atrest import MAX_HEADER_SIZE, Unwrapper
from dropbox_envelope.errors import WrappedFileCorrupted

__all__ = ["StoredFile", "normalise_times", "open_for_reading"]

_NOATIME = getattr(os, "O_NOATIME", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
EPOCH_NS = (0, 0)


def normalise_times(target: int | Path) -> None:
    """Set atime and mtime of a file (descriptor or path; never following a symlink) to the
    epoch. The change time (ctime) is the kernel's and cannot be set by a process."""
    if isinstance(target, int):
        os.utime(target, ns=EPOCH_NS)
    else:
        os.utime(target, ns=EPOCH_NS, follow_symlinks=False)


def open_for_reading(path: Path) -> int:
    """A read-only descriptor that neither follows a symlink nor updates the access time."""
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW | _NOATIME)
    except PermissionError:
        # O_NOATIME is refused on files owned by someone else; we still must not follow links.
        if not _NOATIME:
            raise
        return os.open(path, os.O_RDONLY | _NOFOLLOW)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length:
        block = os.pread(fd, length, offset)
        if not block:  # the file shrank under us
            raise WrappedFileCorrupted()
        parts.append(block)
        length -= len(block)
        offset += len(block)
    return b"".join(parts)


class StoredFile:
    """A wrapped file opened for random-access reading of its plaintext (the envelope).

    ``size`` is the envelope's length. Every byte :meth:`read` returns has been authenticated;
    a damaged file raises :class:`WrappedFileCorrupted`.
    """

    def __init__(self, fd: int, key: bytes) -> None:
        self._fd = fd
        try:
            wrapped_size = os.fstat(fd).st_size
            self._unwrapper = Unwrapper(key, _pread_exact(fd, min(MAX_HEADER_SIZE, wrapped_size), 0)
                                        if wrapped_size else b"", wrapped_size)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def open(cls, path: Path, key: bytes) -> StoredFile:
        return cls(open_for_reading(path), key)

    @property
    def size(self) -> int:
        return self._unwrapper.plain_size

    def read(self, first: int, last: int) -> bytes:
        """Plaintext bytes ``first..last`` (inclusive)."""
        return b"".join(self._unwrapper.open(piece, _pread_exact(self._fd, piece.length,
                                                                   piece.offset))
                        for piece in self._unwrapper.plan(first, last))

    def read_all(self) -> bytes:
        return self.read(0, self.size - 1) if self.size else b""

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StoredFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
