"""Fixtures for the real-browser tests: one live site per test module, and a summary of what
each browser measured (printed at the end and written to artifacts/speeds.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser.flow import ARTIFACTS, Outcome
from tests.browser.site import LiveSite

_OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    live = LiveSite(tmp_path_factory.mktemp("site")).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def outcomes() -> list[Outcome]:
    return _OUTCOMES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    terminalreporter.section("in-browser encryption")
    rows = []
    for o in _OUTCOMES:
        line = f"{o.browser:9} {o.mode:9} "
        if o.sealed_ms:
            line += (f"sealed {o.sealed_bytes / 1e6:6.1f} MB in {o.sealed_ms / 1000:6.2f} s = "
                     f"{o.mb_per_s:6.2f} MB/s; libsodium ready after {o.ready_s:4.1f} s")
        else:
            line += "JavaScript off: sealed by the server"
        terminalreporter.write_line(line)
        rows.append({"browser": o.browser, "mode": o.mode, "bytes": o.sealed_bytes,
                     "ms": o.sealed_ms, "mb_per_s": round(o.mb_per_s, 3),
                     "ready_s": round(o.ready_s, 2)})
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "speeds.json").write_text(json.dumps(rows, indent=2) + "\n")
