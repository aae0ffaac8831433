"""Careful file-system primitives: create-only opens, fsync, rename without clobbering, and
reading a JSON file that may not be what it claims."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from .errors import CliError

__all__ = [
    "create_new",
    "fsync_dir",
    "publish_file",
    "read_json_object",
    "refuse_existing",
    "write_new_file",
]

_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))


def refuse_existing(path: Path, what: str = "") -> None:
    """Raise :class:`CliError` if ``path`` exists (even as a dangling symlink)."""
    if os.path.lexists(path):
        raise CliError(f"{path} already exists; refusing to overwrite it{what}")


def create_new(path: Path, mode: int = 0o600) -> BinaryIO:
    """Open a new file for writing with permissions ``mode``; never follows or replaces anything.

    The mode is set exactly (not filtered by the umask) where the platform allows it.
    """
    try:
        fd = os.open(path, _CREATE_FLAGS, mode)
    except FileExistsError:
        raise CliError(f"{path} already exists; refusing to overwrite it") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_new_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (refusing to overwrite), write ``data``, fsync and close it.

    On a failure after creation the partial file is removed.
    """
    with create_new(path, mode) as handle:
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new names, renames) durable. A no-op where unsupported."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(tmp: Path, final: Path) -> None:
    """Give the finished file ``tmp`` its name ``final``, refusing to replace an existing file.

    A hard link is atomic and fails if ``final`` exists; file systems without hard links (FAT on
    a USB stick) fall back to check-then-rename.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise CliError(f"{final} already exists; refusing to overwrite it") from None
    except OSError:
        refuse_existing(final)
        os.rename(tmp, final)
    else:
        os.unlink(tmp)
    fsync_dir(final.parent)


def read_json_object(path: Path, limit: int, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``, reading at most ``limit`` bytes of it.

    Raises :class:`CliError` naming ``path`` (and ``what`` it should be, e.g. "the server
    metadata file") if it is larger, not UTF-8 JSON, or not an object; :class:`OSError` (such as
    :class:`FileNotFoundError`) if it cannot be opened.
    """
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    problem = f"{path}: {what} is" if what else f"{path}:"
    if len(data) > limit:
        raise CliError(f"{problem} too large")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CliError(f"{problem} not valid JSON") from None
    if not isinstance(doc, dict):
        raise CliError(f"{problem} not a JSON object")
    return doc
