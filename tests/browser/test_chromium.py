"""Debian's Chromium through Playwright: the whole loop with JavaScript on, without JIT and
WebAssembly (``--js-flags=--jitless``), and with JavaScript off; then what JavaScript adds:
checks before sealing, retry after a failed upload, the fallback when the script cannot seal,
and the quick exit on Esc pressed three times."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.drivers import (
    Chromium,
    fresh_profile,
    playwright_session,
    remove_profile,
    wait_until,
)
from tests.browser.flow import Mode, Outcome, check_profile_clean, report_and_return
from tests.browser.site import RECIPIENT_ID, LiveSite

pytestmark = pytest.mark.browser

QUICK_EXIT = "https://www.bbc.co.uk/weather"
APP_JS = Path(__file__).resolve().parents[2] / "dropbox_server" / "static" / "app.js"
MODES = [Mode("js", True, 20, screenshots=True),
         Mode("jitless", True, 2, timeout=300, slow=True),
         Mode("nojs", False, 20, screenshots=True)]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with playwright_session() as pw:
        yield pw


@pytest.fixture(scope="module")
def shared_chromium(playwright: Any) -> Iterator[Chromium]:
    """The JavaScript-on browser, shared by the tests of this module."""
    profile = fresh_profile("chromium")
    browser = Chromium(playwright, profile)
    # The quick exit's neutral site, answered locally: tests never leave the machine.
    browser.context.route(QUICK_EXIT + "**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<title>Weather</title>Weather"))
    try:
        yield browser
    finally:
        browser.close()
        remove_profile(profile)


@pytest.fixture
def chromium(shared_chromium: Chromium) -> Chromium:
    """The shared browser, as a new visitor: no cookies (no session) from an earlier test."""
    shared_chromium.context.clear_cookies()
    return shared_chromium


@pytest.mark.parametrize("mode", MODES, ids=[m.name for m in MODES])
def test_report_reply_answer(playwright: Any, site: LiveSite, mode: Mode, tmp_path: Path,
                             outcomes: list[Outcome]) -> None:
    profile = fresh_profile(f"chromium-{mode.name}")
    browser = Chromium(playwright, profile, js=mode.js, jitless=mode.name == "jitless")
    errors: list[str] = []
    browser.page.on("pageerror", lambda e: errors.append(str(e)))
    browser.posted.clear()
    browser.requested.clear()
    try:
        outcome = report_and_return(browser, site, mode, tmp_path)
        outcomes.append(outcome)
        if mode.js:  # --jitless also takes WebAssembly away: libsodium's pure-JS fallback ran
            wasm = browser.js("typeof WebAssembly")
            assert wasm == ("undefined" if mode.name == "jitless" else "object")
        # What Playwright reports of request bodies, on top of the relay's recording (it may
        # leave out large Blob bodies, so the relay is the one that must see the envelopes).
        posted = b"".join(browser.posted)
        if mode.js:
            leaked = [k for k, v in outcome.markers.items() if v.encode() in posted]
            assert leaked == [], f"plaintext in a request body: {leaked}"
        # No page loads anything from another origin.
        assert [u for u in browser.requested if not u.startswith(site.url + "/")] == []
        # Without WebAssembly libsodium reports the failed attempt, then uses its fallback.
        assert [e for e in errors if "WebAssembly" not in e] == []
        browser.close()
        check_profile_clean(profile, outcome, js=mode.js)
    finally:
        browser.close()
        remove_profile(profile)


def _fill_minimum(browser: Chromium, message: str) -> None:
    browser.click(f"#recipient-{RECIPIENT_ID}")
    browser.click("#what_happening-not_paid")
    browser.type("#message", message)


def _posts(site: LiveSite, mark: list[int]) -> list[str]:
    return re.findall(r"POST (/[^ ]*) HTTP", site.sent_since(mark).decode("latin-1"))


def test_required_answers_are_checked_before_anything_is_sealed(
        chromium: Chromium, site: LiveSite) -> None:
    chromium.goto(site.url + "/report")
    wait_until(lambda: chromium.visible("#js-ready"), 60, "the page script")
    mark = site.mark()
    chromium.type("#message", "nothing ticked")
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.visible(".error-summary"), 10, "the error summary")
    assert "Please tick at least one box." in chromium.texts("#field-what_happening")[0]
    assert not chromium.visible("#js-progress")
    chromium.page.wait_for_timeout(500)
    assert _posts(site, mark) == []  # nothing was sent
    assert chromium.js("document.activeElement.className") == "error-summary"
    group = "document.querySelector('#field-what_happening')"
    assert chromium.js(f"{group}.getAttribute('aria-invalid')") == "true"
    assert "js-error-what_happening" in chromium.js(f"{group}.getAttribute('aria-describedby')")
    # Ticking a box and sending again clears the error.
    chromium.click("#what_happening-not_paid")
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.visible("#js-receipt"), 60, "the receipt")
    assert chromium.js("document.querySelectorAll('[data-js-error]').length") == 0
    [report] = site.fetch_new()
    assert report.doc["message"] == "nothing ticked"


def test_a_failed_upload_is_retried_without_retyping(chromium: Chromium,
                                                     site: LiveSite) -> None:
    attempts: list[int] = []

    def flaky(route: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    chromium.page.route("**/submit/envelope**", flaky)
    try:
        chromium.goto(site.url + "/report")
        wait_until(lambda: chromium.visible("#js-ready"), 60, "the page script")
        _fill_minimum(chromium, "retry after a dropped connection")
        chromium.click("#envelope-form button[type=submit]")
        wait_until(lambda: chromium.visible("#js-failed"), 30, "the failure notice")
        assert chromium.js("document.activeElement.id") == "js-retry"
        assert chromium.js("document.querySelector('#message').value") == \
            "retry after a dropped connection"
        chromium.click("#js-retry")
        wait_until(lambda: chromium.visible("#js-receipt"), 60, "the receipt")
    finally:
        chromium.page.unroute("**/submit/envelope**")
    assert len(attempts) == 2
    [report] = site.fetch_new()
    assert report.doc["message"] == "retry after a dropped connection"


def test_without_the_library_the_form_says_so_and_posts_itself(chromium: Chromium,
                                                                site: LiveSite) -> None:
    # Only our own code, as if libsodium had failed to load.
    source = APP_JS.read_text(encoding="utf-8")
    ours = source[source.index("/* web/src/envelope.js */"):]
    chromium.page.route("**/static/app.js", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=ours))
    try:
        chromium.goto(site.url + "/report")
        wait_until(lambda: chromium.visible("#js-fallback"), 30, "the fallback notice")
        assert not chromium.visible("#js-ready")
        mark = site.mark()
        _fill_minimum(chromium, "sent the no-JS way")
        chromium.click("#envelope-form button[type=submit]")
        wait_until(lambda: chromium.visible(".code .group"), 60, "the server's receipt")
    finally:
        chromium.page.unroute("**/static/app.js")
    assert _posts(site, mark) == ["/report"]
    [report] = site.fetch_new()
    assert report.doc["message"] == "sent the no-JS way"
    assert "triage" in report.doc  # sealed by the server


def test_a_sealing_error_falls_back_on_the_next_send(chromium: Chromium,
                                                     site: LiveSite) -> None:
    chromium.goto(site.url + "/report")
    wait_until(lambda: chromium.visible("#js-ready"), 60, "the page script")
    chromium.js(f"document.querySelector('#recipient-{RECIPIENT_ID}')"
                ".setAttribute('data-keys', 'srdb1-x25519-damaged')")
    mark = site.mark()
    _fill_minimum(chromium, "after a sealing error")
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.visible("#js-fallback"), 30, "the fallback notice")
    assert _posts(site, mark) == []
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.visible(".code .group"), 60, "the server's receipt")
    assert _posts(site, mark) == ["/report"]
    [report] = site.fetch_new()
    assert report.doc["message"] == "after a sealing error"


def test_escape_three_times_leaves_for_the_neutral_site(chromium: Chromium,
                                                        site: LiveSite) -> None:
    chromium.goto(site.url + "/")
    chromium.goto(site.url + "/report")
    wait_until(lambda: chromium.visible("#js-esc-note"), 30, "the note about Esc")
    chromium.press_escape()
    chromium.press_escape()
    chromium.page.wait_for_timeout(2200)  # presses further apart do not count together
    chromium.press_escape()
    chromium.page.wait_for_timeout(300)
    assert chromium.url().startswith(site.url)
    chromium.press_escape()
    chromium.press_escape()
    wait_until(lambda: chromium.url().startswith(QUICK_EXIT), 10, "the quick exit")
    # The page was replaced, not added to: Back skips the report form.
    chromium.page.go_back()
    assert chromium.url() == site.url + "/"


def test_the_chosen_language_is_kept_through_the_script(chromium: Chromium,
                                                        site: LiveSite) -> None:
    chromium.goto(site.url + "/es/report")
    wait_until(lambda: chromium.visible("#js-ready"), 60, "the page script")
    assert chromium.js("document.documentElement.lang") == "es"
    _fill_minimum(chromium, "en español")
    mark = site.mark()
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.visible("#js-receipt"), 60, "the receipt")
    assert _posts(site, mark) == [f"/es/submit/envelope?recipient={RECIPIENT_ID}"]
    code = " ".join(chromium.texts("#js-receipt .code .group"))
    [report] = site.fetch_new()
    assert report.doc["language"] == "es"
    chromium.goto(site.url + "/es/login")
    chromium.type("#code", code)
    chromium.click("form[action='/es/login'] button[type=submit]")
    wait_until(lambda: chromium.url().endswith("/es/conversation"), 60, "the conversation")
    wait_until(lambda: chromium.visible("#js-ready"), 60, "the page script")
    chromium.type("#message", "más información")
    chromium.click("#envelope-form button[type=submit]")
    wait_until(lambda: chromium.url().endswith("/es/conversation?sent=1"), 60,
               "the conversation page in Spanish")
    [more] = site.fetch_new()
    assert more.doc["language"] == "es" and more.source_id == report.source_id
