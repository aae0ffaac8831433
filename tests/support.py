"""Helpers shared by the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import pytest

#: Set to "1" (as .ci/run does) to turn "dependency missing" skips into failures.
REQUIRE_ALL_ENV = "SRDB_REQUIRE_ALL"

# Debian installs tor as /usr/sbin/tor, which is not on a non-root user's PATH.
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test, or fail it when ``SRDB_REQUIRE_ALL=1`` is set."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str, why: str) -> str:
    """Return the path of executable ``name``; skip (or fail under CI) if it is missing."""
    path = shutil.which(name)
    if path is None:
        path = shutil.which(name, path=os.pathsep.join(_EXTRA_DIRS))
    if path is None:
        skip_or_fail(f"{name} not installed: {why}")
    return path


@dataclass(frozen=True)
class Result:
    """What one ``dropbox-client`` run returned and printed (the ``run`` fixture)."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]
