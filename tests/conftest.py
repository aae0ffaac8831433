"""Shared pytest configuration. Helpers live in tests/support.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import Result, Run
from tests.support import require_binary as _require_binary


@pytest.fixture(name="require_binary")
def require_binary_fixture() -> Callable[[str, str], str]:
    """``require_binary(name, why)`` as a fixture, for tests that prefer injection."""
    return _require_binary


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("decrypt", "--out", ...)``: ``dropbox-client`` in-process, as the console script
    runs it; the return code and what it printed (output from fixtures before is dropped)."""
    from client_cli.cli import main  # here: only tests that run the CLI import it

    def _run(*argv: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run
