"""A live public site and Debian's Chromium (Playwright from PyPI, no browser download) for the
accessibility, narrow-screen, keyboard and no-JavaScript language tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from dropbox_envelope import Encryptor
from dropbox_envelope.keys import PublicKey, SecretKey
from dropbox_server.app import create_app
from dropbox_server.appkeys import BACKEND
from dropbox_server.backend import Backend
from tests.server.conftest import AgencyKeys, write_config
from tests.support import require_binary, skip_or_fail

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


class LiveSite:
    """The real app from ``create_app`` on loopback, in a background thread."""

    def __init__(self, data_dir: Path, keys: AgencyKeys) -> None:
        self.config = write_config(data_dir, keys)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.backend: Backend | None = None
        self.url = ""

    def start(self) -> LiveSite:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        app = create_app(self.config)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.backend = app[BACKEND]
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def add_reply(self, message: str) -> None:
        """A staff reply, sealed to the newest source's key, as the staff API would store it."""
        async def add() -> None:
            assert self.backend is not None
            storage = self.backend.storage
            async with storage.db.execute("SELECT id FROM sources ORDER BY rowid DESC") as cur:
                row = await cur.fetchone()
            assert row is not None
            source = await storage.source(str(row[0]))
            assert source is not None
            encryptor = Encryptor([PublicKey.decode(source.public_key)])
            upload = storage.new_upload()
            upload.write(b"".join(encryptor.finish(kind="reply", language="en",
                                                   message=message)))
            await storage.commit_reply(upload, source_id=source.id)
        self.run(add())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSite]:
    keys = AgencyKeys(SecretKey.generate(), SecretKey.generate(), SecretKey.generate())
    live = LiveSite(tmp_path_factory.mktemp("a11y-site"), keys).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    require_binary("chromium", "the accessibility tests drive Debian's Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    manager = sync_playwright()
    instance = manager.start()
    try:
        yield instance
    finally:
        manager.__exit__(None, None, None)


def launch(playwright: Any, profile: Path, *, js: bool = True, width: int = 1280) -> Any:
    """A Chromium persistent context (Playwright refuses --user-data-dir in args)."""
    executable = require_binary("chromium", "the accessibility tests drive Debian's Chromium")
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
        java_script_enabled=js, viewport={"width": width, "height": 800},
        # axe is injected as a script the page's CSP would refuse (script-src 'self').
        bypass_csp=True, accept_downloads=False)


@pytest.fixture
def chromium(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    context = launch(playwright, tmp_path / "profile")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def chromium_no_js(playwright: Any, tmp_path: Path) -> Iterator[Any]:
    context = launch(playwright, tmp_path / "profile-nojs", js=False)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="session")
def axe_script() -> Path:
    if not AXE.is_file():
        skip_or_fail(f"axe-core is not installed: run 'npm ci' in {ROOT / 'web'}")
    return AXE
