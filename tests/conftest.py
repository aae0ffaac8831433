"""Shared pytest configuration. Helpers live in tests/support.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import require_binary as _require_binary


@pytest.fixture(name="require_binary")
def require_binary_fixture() -> Callable[[str, str], str]:
    """``require_binary(name, why)`` as a fixture, for tests that prefer injection."""
    return _require_binary
