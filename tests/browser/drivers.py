"""Real browsers behind one small interface: Debian's Chromium through Playwright, and Debian's
Firefox ESR (Tor Browser's engine) through Marionette. Nothing is downloaded: both browsers come
from apt, Playwright and marionette-driver from PyPI (never ``playwright install``).

Everything a test does goes through WebDriver-level commands (click, type, files, read text),
which work with page JavaScript off too; :meth:`Browser.js` evaluates script in the page and is
only used where JavaScript runs.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tests.support import require_binary, skip_or_fail

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
# Tor Browser's security levels, as Firefox preferences (see ../shared/notes/browser.md).
TOR_SAFER = {"javascript.options.wasm": False, "javascript.options.ion": False,
             "javascript.options.baselinejit": False, "javascript.options.asmjs": False,
             "javascript.options.native_regexp": False}
TOR_SAFEST = {"javascript.enabled": False}
# A quiet profile: nothing phones home during the tests.
FIREFOX_QUIET = {
    "app.update.disabledForTesting": True, "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore", "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False, "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False, "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False, "browser.newtabpage.enabled": False,
    "network.dns.disablePrefetch": True, "network.prefetch-next": False,
    "dom.disable_beforeunload": True,
}
WAIT = 0.1  # seconds between polls


class Browser(Protocol):
    name: str

    def goto(self, url: str) -> None: ...
    def url(self) -> str: ...
    def click(self, css: str) -> None: ...
    def type(self, css: str, text: str) -> None: ...
    def attach(self, css: str, paths: Sequence[Path]) -> None: ...
    def texts(self, css: str) -> list[str]: ...
    def visible(self, css: str) -> bool: ...
    def press_escape(self) -> None: ...
    def js(self, script: str) -> Any: ...
    def screenshot(self, stem: Path, width: int) -> Path: ...
    def close(self) -> None: ...


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(WAIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- Chromium --------------------------------------------------------------------------------

class Chromium:
    """One Chromium process (a persistent context) with one page."""

    def __init__(self, playwright: Any, profile: Path, *, js: bool = True,
                 jitless: bool = False) -> None:
        executable = require_binary("chromium", "the browser tests drive Debian's Chromium")
        flags = [*CHROMIUM_FLAGS, *(["--js-flags=--jitless"] if jitless else [])]
        self.name = "chromium"
        self.context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=flags,
            java_script_enabled=js, viewport={"width": 1280, "height": 900},
            accept_downloads=False)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.posted: list[bytes] = []  # every request body the page sends
        self.requested: list[str] = []  # every URL the browser asked for
        self.page.on("request", self._record)

    def _record(self, request: Any) -> None:
        self.requested.append(str(request.url))
        body = request.post_data_buffer
        if body:
            self.posted.append(bytes(body))

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def url(self) -> str:
        # A call into Playwright first: the sync API handles its events (route handlers,
        # navigations) only while the test is inside one of its calls.
        self.page.wait_for_timeout(1)
        return str(self.page.url)

    def click(self, css: str) -> None:
        self.page.click(css)

    def type(self, css: str, text: str) -> None:
        self.page.fill(css, text)

    def attach(self, css: str, paths: Sequence[Path]) -> None:
        self.page.set_input_files(css, [str(p) for p in paths])

    def texts(self, css: str) -> list[str]:
        return [str(t) for t in self.page.locator(css).all_inner_texts()]

    def visible(self, css: str) -> bool:
        return any(loc.is_visible() for loc in self.page.locator(css).all())

    def press_escape(self) -> None:
        self.page.keyboard.press("Escape")

    def js(self, script: str) -> Any:
        return self.page.evaluate(script)

    def screenshot(self, stem: Path, width: int) -> Path:
        """A full-page PNG at ``width`` CSS pixels, saved as ``<stem>-<width>.png``."""
        path = stem.with_name(f"{stem.name}-{width}.png")
        self.page.set_viewport_size({"width": width, "height": 900})
        self.page.screenshot(path=str(path), full_page=True)
        self.page.set_viewport_size({"width": 1280, "height": 900})
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


@contextlib.contextmanager
def playwright_session() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    manager = sync_playwright()
    playwright = manager.start()
    try:
        yield playwright
    finally:
        manager.__exit__(None, None, None)


# -- Firefox ESR -----------------------------------------------------------------------------

class Firefox:
    """One Firefox ESR process with its own profile, driven over Marionette."""

    def __init__(self, profile: Path, prefs: dict[str, Any]) -> None:
        executable = require_binary("firefox-esr", "the browser tests drive Firefox ESR")
        try:
            from marionette_driver.marionette import Marionette
        except ImportError:
            skip_or_fail("marionette-driver is not installed (pip install -e '.[test]')")
        self.name = "firefox"
        port = _free_port()
        profile.mkdir(parents=True, exist_ok=True)
        all_prefs = {**FIREFOX_QUIET, **prefs, "marionette.port": port}
        (profile / "user.js").write_text("".join(
            f"user_pref({_js_literal(k)}, {_js_literal(v)});\n" for k, v in all_prefs.items()))
        self._log = (profile / "firefox.log").open("wb")
        env = {**os.environ, "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"}
        self.process = subprocess.Popen(
            [executable, "--headless", "--marionette", "-remote-allow-system-access",
             "--no-remote", "--profile", str(profile), "about:blank"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.client: Any = None
        try:
            # Wait for the port here: Marionette's own polling leaks sockets.
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                           1):
                    break
                assert self.process.poll() is None, "Firefox exited at start-up"
                assert time.monotonic() < deadline, "Firefox opened no Marionette port in 60 s"
                time.sleep(0.2)
            self.client = Marionette(host="127.0.0.1", port=port)
            self.client.start_session()
        except BaseException:
            self.close()
            raise
        self.client.timeout.page_load = 120
        self.client.set_window_rect(width=1280, height=900)

    def _find(self, css: str) -> Any:
        from marionette_driver.by import By
        return self.client.find_element(By.CSS_SELECTOR, css)

    def _find_all(self, css: str) -> list[Any]:
        from marionette_driver.by import By
        return list(self.client.find_elements(By.CSS_SELECTOR, css))

    def goto(self, url: str) -> None:
        self.client.navigate(url)

    def url(self) -> str:
        return str(self.client.get_url())

    def click(self, css: str) -> None:
        self._find(css).click()

    def type(self, css: str, text: str) -> None:
        element = self._find(css)
        element.clear()
        element.send_keys(text)

    def attach(self, css: str, paths: Sequence[Path]) -> None:
        element = self._find(css)
        for path in paths:  # a `multiple` input adds each file sent to it
            element.send_keys(str(path))

    def texts(self, css: str) -> list[str]:
        return [str(e.text) for e in self._find_all(css)]

    def visible(self, css: str) -> bool:
        return any(e.is_displayed() for e in self._find_all(css))

    def press_escape(self) -> None:
        from marionette_driver.keys import Keys
        self.client.find_element("css selector", "body").send_keys(Keys.ESCAPE)

    def js(self, script: str) -> Any:
        # Marionette runs scripts in a sandbox; the page's own globals (and what the page set
        # on its DOM) are reached through wrappedJSObject.
        return self.client.execute_script(
            "const page = window.wrappedJSObject;\n"
            "return (function (window, document, navigator) {\n"
            f"  return ({script});\n"
            "})(page, page.document, page.navigator);")

    def screenshot(self, stem: Path, width: int) -> Path:
        """A full-page PNG, saved as ``<stem>-<width>.png`` with the width the page really had:
        Firefox's window does not get narrower than its toolbar (about 500 pixels)."""
        self.client.set_window_rect(width=width, height=900)
        actual = int(self.client.execute_script("return window.innerWidth;"))
        path = stem.with_name(f"{stem.name}-{actual}.png")
        png = self.client.screenshot(format="base64", full=True)
        path.write_bytes(base64.b64decode(png))
        self.client.set_window_rect(width=1280, height=900)
        return path

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.delete_session()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def _js_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + re.sub(r'(["\\])', r"\\\1", str(value)) + '"'


def fresh_profile(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"srdb-{prefix}-"))


def remove_profile(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
