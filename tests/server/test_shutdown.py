"""The server stopping while a report is being stored keeps it whole.

At shutdown aiohttp cancels the handlers still running (after its grace period) and goes on to
the app's clean-up, which closes the storage. A report already received, whose fsync is still
running, must come out of that stored and listed, with nothing closed or deleted under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dropbox_server.app import create_app
from dropbox_server.public import CSRF_HEADER
from dropbox_server.storage import Storage, Upload
from tests.server.conftest import LABOUR, AgencyKeys, write_config
from tests.server.test_envelope_path import labour_keys, seal
from tests.storage.test_commit_cancelled import WAIT, assert_only_envelope_is, until

pytestmark = pytest.mark.asyncio
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


async def test_a_report_whose_fsync_runs_when_the_server_stops_is_stored_whole(
        data_dir: Path, agency_keys: AgencyKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync_started, release = threading.Event(), threading.Event()
    real_sync, real_close = Upload.sync_and_close, Storage.close

    def held_sync(self: Upload) -> None:
        fsync_started.set()
        release.wait(WAIT)
        real_sync(self)

    async def close_then_release(self: Storage) -> None:
        # The fsync goes on only once the clean-up has started closing the storage: the
        # order in which a slow disk meets a stopping server.
        asyncio.get_running_loop().call_later(0.05, release.set)
        await real_close(self)
    monkeypatch.setattr(Upload, "sync_and_close", held_sync)
    monkeypatch.setattr(Storage, "close", close_then_release)

    body = seal(labour_keys(agency_keys), attachment=b"evidence " * 20_000)
    runner = web.AppRunner(create_app(write_config(data_dir, agency_keys)),
                           shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/report") as page:
            match = _CSRF.search(await page.text())
        assert match is not None
        post = asyncio.ensure_future(session.post(
            f"{base}/submit/envelope?recipient={LABOUR}", data=body,
            headers={"Content-Type": "application/octet-stream", CSRF_HEADER: match[1]}))
        await until(fsync_started)
        await runner.cleanup()  # the handler is cancelled, the storage closed
        with contextlib.suppress(aiohttp.ClientError):
            (await post).release()  # the client may or may not get its answer

    monkeypatch.setattr(Storage, "close", real_close)
    storage = Storage(data_dir)
    await storage.open()
    try:
        await assert_only_envelope_is(storage, body)
    finally:
        await storage.close()
