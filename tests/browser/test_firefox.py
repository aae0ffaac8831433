"""Debian's Firefox ESR (Tor Browser's engine) through Marionette, at Tor Browser's three
security levels: "Standard" (JavaScript with JIT and WebAssembly), "Safer" (JavaScript without
JIT, WebAssembly or asm.js: libsodium's pure-JS fallback) and "Safest" (JavaScript off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.drivers import (
    TOR_SAFER,
    TOR_SAFEST,
    Firefox,
    fresh_profile,
    remove_profile,
    wait_until,
)
from tests.browser.flow import Mode, Outcome, check_profile_clean, report_and_return
from tests.browser.site import LiveSite

pytestmark = [pytest.mark.browser,
              # marionette-driver and its dependencies use deprecated standard modules.
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

QUICK_EXIT = "https://www.bbc.co.uk/weather"
MODES = [(Mode("standard", True, 20, screenshots=True), {}),
         (Mode("safer", True, 2, timeout=300, slow=True), TOR_SAFER),
         (Mode("safest", False, 20, screenshots=True), TOR_SAFEST)]


@pytest.mark.parametrize(("mode", "prefs"), MODES, ids=[m.name for m, _ in MODES])
def test_report_reply_answer(site: LiveSite, mode: Mode, prefs: dict[str, Any], tmp_path: Path,
                             outcomes: list[Outcome]) -> None:
    profile = fresh_profile(f"firefox-{mode.name}")
    browser = Firefox(profile, prefs)
    try:
        outcome = report_and_return(browser, site, mode, tmp_path)
        outcomes.append(outcome)
        if mode.js:
            wasm = browser.js("typeof WebAssembly")
            assert wasm == ("undefined" if prefs else "object")
            # Esc pressed three times leaves for the neutral site (not reachable here).
            browser.goto(site.url + "/")
            for _ in range(3):
                browser.press_escape()
            wait_until(lambda: browser.url().startswith(QUICK_EXIT), 20, "the quick exit")
        browser.close()
        check_profile_clean(profile, outcome, js=mode.js)
    finally:
        browser.close()
        remove_profile(profile)
