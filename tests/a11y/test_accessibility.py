"""Accessibility in a real browser: axe-core (npm, web/node_modules) injected into Debian's
Chromium on every page and state (empty form, errors, receipt, login error, expired form,
conversation with replies, right-to-left Arabic) finds no serious or critical violation; no
page scrolls sideways at 320 px; the report can be made with the keyboard alone, with a visible
focus; the language selector works with JavaScript off."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dropbox_server.i18n import LANGUAGES
from tests.a11y.conftest import LiveSite, launch

pytestmark = pytest.mark.browser

SERIOUS = {"serious", "critical"}
CODES = [lang.code for lang in LANGUAGES]
# Every finding, serious or not, per page and state: printed at the end for the reviewer.
FINDINGS: dict[str, list[dict[str, Any]]] = {}
_RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}));
}"""


def audit(page: Any, axe_script: Path, state: str) -> None:
    """Run axe on the page as it is now; fail on serious or critical violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe_script))
    violations: list[dict[str, Any]] = page.evaluate(_RUN_AXE)
    FINDINGS[state] = violations
    serious = [v for v in violations if v["impact"] in SERIOUS]
    assert not serious, f"{state}: {json.dumps(serious, indent=1, ensure_ascii=False)}"
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{state}: the page scrolls sideways ({width[0]} > {width[1]} px)"


def no_page_script(page: Any) -> None:
    """Keep the page's own script from loading: the server-rendered (no-JavaScript) states,
    while axe itself can still run."""
    page.route("**/static/app.js", lambda route: route.abort())


def page_of(context: Any) -> Any:
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(30_000)
    return page


def submit(page: Any) -> None:
    with page.expect_navigation():
        page.click("form#envelope-form button[type=submit]")


ARTIFACTS = Path(__file__).resolve().parents[1] / "browser" / "artifacts"


def shot(page: Any, code: str, name: str, width: int) -> None:
    """Screenshots for reviewers (git-ignored artefacts), at the widths people look at."""
    if width in (360, 1280):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"a11y-{code}-{name}-{width}.png"), full_page=True)


@pytest.mark.parametrize(("code", "width"),
                         [("en", 320), ("en", 1280), ("ar", 320), ("ar", 360), ("ar", 1280)])
def test_every_page_and_state(site: LiveSite, playwright: Any, tmp_path: Path,
                              axe_script: Path, code: str, width: int) -> None:
    context = launch(playwright, tmp_path / "profile", width=width)
    try:
        page = page_of(context)
        no_page_script(page)
        state = f"{code} {width}px"
        base = f"{site.url}/{code}"

        page.goto(f"{base}/")
        assert page.get_attribute("html", "dir") == ("rtl" if code == "ar" else None)
        audit(page, axe_script, f"{state} landing")
        shot(page, code, "landing", width)

        page.goto(f"{base}/report")
        audit(page, axe_script, f"{state} report form, empty")
        shot(page, code, "form", width)

        # Errors: an agency chosen, the one required question not answered.
        page.check("#recipient-labour-inspectors")
        page.evaluate("document.getElementById('business').removeAttribute('maxlength')")
        page.fill("#business", "x" * 301)  # too long: an error next to this field too
        submit(page)
        error = page.locator("#error-what_happening")
        assert error.is_visible()
        assert page.get_attribute("#field-what_happening", "aria-describedby") == \
            "error-what_happening"
        assert "error-business" in (page.get_attribute("#business", "aria-describedby") or "")
        audit(page, axe_script, f"{state} report form, errors")

        page.fill("#business", "Green Acres")
        page.check("#what_happening-not_paid")
        page.check("#danger_now-weapons")
        page.fill("#message", "They keep our passports.")
        submit(page)
        groups = page.locator(".code .group").all_inner_texts()
        assert len(groups) == 5
        audit(page, axe_script, f"{state} receipt")
        shot(page, code, "receipt", width)

        page.goto(f"{base}/login")
        audit(page, axe_script, f"{state} login")
        page.fill("#code", "123")
        with page.expect_navigation():
            page.click("form button[type=submit]")
        assert page.locator("#error-code").is_visible()
        audit(page, axe_script, f"{state} login, wrong code")

        page.fill("#code", " ".join(groups))
        with page.expect_navigation():
            page.click("form button[type=submit]")
        assert page.url.endswith(f"/{code}/conversation")
        audit(page, axe_script, f"{state} conversation, no replies")

        site.add_reply("Thank you. Are you safe now? Which town is it in?\n" + "w" * 300)
        site.add_reply("شكرًا لك. هل أنت بأمان الآن؟")
        page.reload()
        assert page.locator(".reply").count() == 2
        audit(page, axe_script, f"{state} conversation with replies")
        shot(page, code, "replies", width)

        submit(page)  # nothing written, no file: an error next to the message
        assert page.locator("#error-message").is_visible()
        audit(page, axe_script, f"{state} conversation, errors")

        page.fill("#message", "It is in the north.")
        submit(page)
        assert page.locator(".success").is_visible()
        audit(page, axe_script, f"{state} conversation, sent")

        context.clear_cookies()  # the form's protection is gone: the expired-form page
        with page.expect_navigation():
            page.click("form.logout button")
        audit(page, axe_script, f"{state} problem page")
    finally:
        context.close()


@pytest.mark.parametrize("code", CODES)
def test_pages_in_every_language(site: LiveSite, chromium: Any, axe_script: Path,
                                 code: str) -> None:
    """With the page's own script running (JavaScript on), at a phone's width."""
    page = page_of(chromium)
    page.set_viewport_size({"width": 320, "height": 700})
    for path in ("/", "/report", "/login"):
        page.goto(f"{site.url}/{code}{path}")
        assert page.get_attribute("html", "lang") == code
        audit(page, axe_script, f"{code} 320px {path} (JavaScript on)")
    # The page script's own error summary (checks before sealing).
    page.goto(f"{site.url}/{code}/report")
    page.check("#recipient-city-police")
    page.click("form#envelope-form button[type=submit]")
    page.wait_for_selector(".error-summary", timeout=10_000)
    audit(page, axe_script, f"{code} 320px report form, errors shown by the page script")


def focused(page: Any) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate("""() => {
      const e = document.activeElement;
      const s = getComputedStyle(e);
      return {id: e.id, tag: e.tagName.toLowerCase(), cls: e.className || "",
              hreflang: e.getAttribute("hreflang") || "", type: e.type || "",
              outline: s.outlineStyle, width: parseFloat(s.outlineWidth) || 0};
    }""")
    return info


def test_keyboard_only_report_with_visible_focus(site: LiveSite, chromium: Any) -> None:
    page = page_of(chromium)
    no_page_script(page)
    page.goto(f"{site.url}/report")
    seen: list[dict[str, Any]] = []
    for _ in range(400):
        page.keyboard.press("Tab")
        here = focused(page)
        if here["tag"] == "body":
            break
        seen.append(here)
        # Focus is visible on everything that takes it.
        assert here["outline"] != "none" and here["width"] >= 2, here
        if here["tag"] == "button" and "primary" in here["cls"]:
            break
    assert seen[0]["cls"] == "quick-exit"  # first thing a keyboard reaches
    assert [s["hreflang"] for s in seen if s["hreflang"]] == CODES
    reached = {s["id"] for s in seen}
    for required in ("recipient-labour-inspectors", "what_happening-not_paid", "message",
                     "attachments", "location", "last_time"):
        assert required in reached, f"{required} cannot be reached with Tab"

    # Make the report with the keyboard only.
    page.goto(f"{site.url}/report")
    steps = 0

    def tab_to(element_id: str) -> None:
        nonlocal steps
        for _ in range(400):
            page.keyboard.press("Tab")
            steps += 1
            if focused(page)["id"] == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("recipient-labour-inspectors")
    page.keyboard.press("Space")
    tab_to("what_happening-not_paid")
    page.keyboard.press("Space")
    tab_to("message")
    page.keyboard.type("Typed with the keyboard only.")
    for _ in range(400):
        page.keyboard.press("Tab")
        here = focused(page)
        if here["tag"] == "button" and "primary" in here["cls"]:
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert len(page.locator(".code .group").all_inner_texts()) == 5


def test_language_selector_without_javascript(site: LiveSite, chromium_no_js: Any) -> None:
    page = page_of(chromium_no_js)
    page.goto(f"{site.url}/report")
    assert page.get_attribute("html", "lang") == "en"
    with page.expect_navigation():
        page.click('nav.languages a[hreflang="es"]')
    assert page.url == f"{site.url}/es/report"
    assert page.get_attribute("html", "lang") == "es"
    assert page.inner_text("h1") == "Hacer una denuncia"
    assert page.get_attribute('nav.languages a[hreflang="es"]', "aria-current") == "true"
    # The language stays while moving around: links and forms keep the prefix.
    with page.expect_navigation():
        page.click("header a.home")
    assert page.url == f"{site.url}/es/"
    with page.expect_navigation():
        page.click('a[href="/es/login"]')
    page.fill("#code", "12")
    with page.expect_navigation():
        page.click("form button[type=submit]")
    assert page.url == f"{site.url}/es/login"
    assert "Un código de acceso tiene 25 cifras" in page.inner_text("#error-code")
    # And into Arabic, right to left.
    with page.expect_navigation():
        page.click('nav.languages a[hreflang="ar"]')
    assert page.url == f"{site.url}/ar/login"
    assert page.get_attribute("html", "dir") == "rtl"
    assert re.search(r"رمز", page.inner_text("h1"))
    # No cookie holds the language.
    assert {c["name"] for c in chromium_no_js.cookies()} <= {"srdb_csrf"}


def test_axe_finds_what_it_should(site: LiveSite, chromium: Any, axe_script: Path) -> None:
    """The check is live: a field without a label and an image without a text are caught."""
    page = page_of(chromium)
    page.goto(f"{site.url}/login")
    page.evaluate("""() => {
      const main = document.querySelector("main");
      main.insertAdjacentHTML("beforeend", '<input type="text" name="x"><img src="/static/x.png">');
    }""")
    with pytest.raises(AssertionError, match='"label"') as info:
        audit(page, axe_script, "login with two planted faults (expected)")
    assert '"image-alt"' in str(info.value)


def test_summary_of_findings() -> None:
    """Not a check: prints every finding (also minor and moderate) for the reviewer."""
    lines = [f"{state}: " + (", ".join(f"{v['id']} ({v['impact']})" for v in found) or "none")
             for state, found in FINDINGS.items()]
    print("\naxe-core findings per page and state:\n  " + "\n  ".join(lines))
