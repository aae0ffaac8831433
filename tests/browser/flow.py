"""What a person does, in any browser and mode: report with two files, get a code, come back,
read the staff reply, answer it; and what must hold afterwards.

The staff side is the real CLI (``dropbox-client fetch``/``decrypt``/``reply``) in separate
processes. Every text the person types and every file carries a marker; in a mode where
JavaScript runs, no marker may appear in anything the browser sent (the relay's recording), and
with JavaScript off every marker must (which shows the recording works).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.browser.drivers import Browser, wait_until
from tests.browser.site import RECIPIENT_ID, RECIPIENT_NAME, LiveSite

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WIDTHS = (360, 1280)
QUESTIONNAIRE_ID = "default-en-1"


@dataclass(frozen=True)
class Mode:
    """A browser setting. ``big_mb``: size of the large attachment (smaller where JavaScript
    runs without JIT or WebAssembly, which seals at well under 1 MB/s)."""

    name: str
    js: bool
    big_mb: float
    screenshots: bool = False
    timeout: float = 120
    slow: bool = False  # sealing takes seconds: the progress display can be seen and tested


@dataclass
class Outcome:
    """What a run measured, for the report at the end of the test session."""

    browser: str
    mode: str
    sealed_bytes: int = 0
    sealed_ms: int = 0
    ready_s: float = 0.0
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        return self.sealed_bytes / 1e6 / (self.sealed_ms / 1000) if self.sealed_ms else 0.0


def _markers(tag: str) -> dict[str, str]:
    return {key: f"PLAINTEXT-{key.upper()}-{tag}" for key in
            ("message", "business", "location", "filename", "small", "big", "answer",
             "more_file")}


def _big_file(path: Path, size: int, marker: bytes) -> bytes:
    data = bytearray(os.urandom(size))
    data[1000:1000 + len(marker)] = marker
    data[-2000:-2000 + len(marker)] = marker
    path.write_bytes(data)
    return bytes(data)


def _shoot(browser: Browser, mode: Mode, page: str) -> None:
    if not mode.screenshots:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        browser.screenshot(ARTIFACTS / f"{browser.name}-{mode.name}-{page}", width)


def _code(browser: Browser, timeout: float) -> str:
    def ready() -> str | None:
        if browser.visible("#js-failed") or browser.visible("#js-fallback"):
            raise AssertionError("the page reports a failure: " +
                                 " ".join(browser.texts("#js-failed, #js-fallback")))
        groups = [g.strip() for g in browser.texts(".code .group")]
        groups = [g for g in groups if g]
        if len(groups) == 5 and all(re.fullmatch(r"\d{5}", g) for g in groups):
            return " ".join(groups)
        return None
    code: str = wait_until(ready, timeout, "the receipt with the return code")
    return code


def _while_sealing(browser: Browser, mode: Mode) -> None:
    """The progress display while a slow browser seals, and a page that still answers."""
    wait_until(lambda: browser.visible("#js-progress-lock"), 30, "the progress display")
    wait_until(lambda: (browser.js("document.querySelector('#js-progress-bar').value") or 0) > 0,
               mode.timeout, "progress")
    started = time.monotonic()
    assert browser.js("document.querySelector('#js-progress-bar').value") < 100
    # The page is not frozen: a script runs between two slices of sealing.
    assert time.monotonic() - started < 1.0
    assert browser.js("document.querySelector('#envelope-form button[type=submit]').disabled")
    ARTIFACTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        browser.screenshot(ARTIFACTS / f"{browser.name}-{mode.name}-progress", width)


FILE_CONTENTS = ("small", "big", "more_file")


def check_profile_clean(profile: Path, outcome: Outcome, *, js: bool) -> None:
    """After the browser closed: no marker of the report in any file of its profile (web
    storage, caches, blob storage, form history, session files). Compressed files (Firefox's
    session store) are not looked into.

    With JavaScript off only the files' contents are checked: the receipt is the answer to the
    form's POST, and Chromium keeps that POST body (the typed text and the files' paths, not
    their contents) with the history entry in its session files so that it can resubmit it.
    Tor Browser, always in private browsing, writes no session files."""
    keys = list(outcome.markers) if js else list(FILE_CONTENTS)
    found = []
    for path in profile.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{k} in {path.relative_to(profile)}" for k in keys
                      if outcome.markers[k].encode() in data]
    assert found == [], f"the browser kept parts of the report: {found}"


def check_no_storage(browser: Browser) -> None:
    """Nothing of the report is kept in the browser: no web storage, database, worker, cache."""
    assert browser.js("window.localStorage.length") == 0
    assert browser.js("window.sessionStorage.length") == 0
    assert browser.js("document.cookie") == ""  # both cookies are HttpOnly
    assert browser.js("'serviceWorker' in navigator ? "
                      "navigator.serviceWorker.controller === null : true") is True


def report_and_return(browser: Browser, site: LiveSite, mode: Mode, work: Path) -> Outcome:
    """The whole loop in ``browser``; returns what was measured."""
    outcome = Outcome(browser.name, mode.name)
    tag = f"{browser.name}-{mode.name}".replace("-", "_").upper()
    markers = outcome.markers = _markers(tag)
    small_name = f"evidence {markers['filename']}.txt"
    small = work / small_name
    small.write_bytes(f"Payslip: 0.00 for 70 hours. {markers['small']}\n".encode())
    big = work / f"video-{mode.name}.mp4"
    big_bytes = _big_file(big, int(mode.big_mb * 1024 * 1024), markers["big"].encode())
    message = f"They keep my passport. {markers['message']}\nZażółć gęślą jaźń — نحن هنا\n\nEnd."
    location = f"Near the station.\n{markers['location']}"
    mark = site.mark()

    browser.goto(site.url + "/")
    if mode.js:
        wait_until(lambda: browser.visible("#js-safest-note"), 30, "the note about Safest")
    else:
        assert not browser.visible("#js-safest-note")
    _shoot(browser, mode, "landing")

    browser.goto(site.url + "/report")
    if mode.js:
        started = _now()
        wait_until(lambda: browser.visible("#js-ready"), mode.timeout,
                   "libsodium to be ready in the page")
        outcome.ready_s = _now() - started
    browser.click(f"#recipient-{RECIPIENT_ID}")
    browser.click("#reporter-victim")
    browser.click("#what_happening-not_paid")
    browser.click("#what_happening-threats")
    browser.type("#business", f"Car wash {markers['business']}")
    browser.type("#location", location)
    browser.type("#message", message)
    browser.attach("#attachments", [small, big])
    _shoot(browser, mode, "form")
    browser.click("#envelope-form button[type=submit]")
    if mode.slow:
        _while_sealing(browser, mode)
    code = _code(browser, mode.timeout)
    if mode.js:
        assert browser.url().endswith("/report")  # the receipt is drawn in the page
        outcome.sealed_bytes = int(browser.js("document.body.getAttribute('data-sealed-bytes')"))
        outcome.sealed_ms = int(browser.js("document.body.getAttribute('data-sealed-ms')"))
        assert outcome.sealed_bytes == len(big_bytes) + small.stat().st_size
        assert RECIPIENT_NAME in " ".join(browser.texts("#js-receipt"))
        assert not browser.visible("#envelope-form")
        check_no_storage(browser)
    _shoot(browser, mode, "receipt")

    # The agency fetches and decrypts it: exactly the answers and bytes.
    [report] = site.fetch_new()
    doc = report.doc
    assert doc["kind"] == "report"
    assert doc["message"] == message
    assert doc["language"] == "en"
    assert doc["answers"] == {"reporter": "victim", "what_happening": ["not_paid", "threats"],
                              "business": f"Car wash {markers['business']}",
                              "location": location}
    assert doc["questionnaire"] == QUESTIONNAIRE_ID
    assert ("triage" in doc) is (not mode.js)  # the browser leaves triage to the staff tools
    assert [a["name"] for a in doc["attachments"]] == [small_name, big.name]
    assert report.attachment(small_name) == small.read_bytes()
    assert hashlib.sha256(report.attachment(big.name)).digest() == \
        hashlib.sha256(big_bytes).digest()
    source_id = report.source_id

    # Staff reply; the person comes back with the code, reads it and answers.
    reply_text = f"Thank you. Are you safe now? ({browser.name} {mode.name})"
    site.reply(source_id, reply_text)
    browser.goto(site.url + "/login")
    browser.type("#code", code)
    browser.click("form[action='/login'] button[type=submit]")
    wait_until(lambda: browser.url().endswith("/conversation"), 60, "the conversation page")
    assert reply_text in " ".join(browser.texts(".reply-text"))
    _shoot(browser, mode, "replies")
    if mode.js:
        wait_until(lambda: browser.visible("#js-ready"), mode.timeout, "the send-more form")
    answer = f"I am safe. {markers['answer']}"
    more_file = work / "more.txt"
    more_file.write_bytes(f"More: {markers['more_file']}".encode())
    browser.type("#message", answer)
    browser.attach("#attachments", [more_file])
    browser.click("#envelope-form button[type=submit]")
    wait_until(lambda: browser.visible(".success"), mode.timeout, "'Your information was sent'")
    if mode.js:
        check_no_storage(browser)
    browser.click("form.logout button[type=submit]")  # "Leave": the session ends
    wait_until(lambda: browser.url().rstrip("/") == site.url, 30, "the start page")
    [more] = site.fetch_new()
    assert more.doc["message"] == answer
    assert more.source_id == source_id  # the same conversation
    assert more.attachment("more.txt") == more_file.read_bytes()

    sent = site.sent_since(mark)
    found = [k for k, v in markers.items() if v.encode() in sent]
    if mode.js:
        assert found == [], f"plaintext left the browser: {found}"
        assert b"/submit/envelope" in sent and b"POST /report" not in sent
    else:
        assert found == list(markers), "the recording missed what the browser sent"
    return outcome


def _now() -> float:
    return time.monotonic()
