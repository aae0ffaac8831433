"""The staff API stopping while a reply is being received: the handler's clean-up (closing and
deleting the reply's temporary file) waits until the thread writing it has finished, so no
write ever goes to a closed, or reused, file descriptor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading

import aiohttp
import pytest
from aiohttp import web

from dropbox_server.app import create_app
from dropbox_server.appkeys import BACKEND, STAFF_APP
from dropbox_server.staff import PREFIX
from dropbox_server.storage import Storage, Upload
from tests.staff.conftest import World, create_source, seal, signed_headers
from tests.storage.test_commit_cancelled import WAIT, until

pytestmark = pytest.mark.asyncio


async def test_a_reply_cut_off_by_shutdown_is_cleaned_up_only_after_its_write(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    write_started, release = threading.Event(), threading.Event()
    open_when_resumed: list[bool] = []
    real_write, real_close = Upload.write, Storage.close

    def held_write(self: Upload, data: bytes | bytearray | memoryview) -> None:
        if not write_started.is_set():
            write_started.set()
            release.wait(WAIT)
            try:
                os.fstat(self._fd)
                open_when_resumed.append(True)
            except OSError:
                open_when_resumed.append(False)
        real_write(self, data)

    async def close_then_release(self: Storage) -> None:
        # The app's clean-up comes after aiohttp has cancelled the handler (grace period
        # over): only then may the held write go on.
        asyncio.get_running_loop().call_later(0.05, release.set)
        await real_close(self)
    monkeypatch.setattr(Upload, "write", held_write)
    monkeypatch.setattr(Storage, "close", close_then_release)

    app = create_app(world.config)[STAFF_APP]
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    storage = app[BACKEND].storage
    source_id, key = await create_source(storage)
    body = seal([key.public_key], "a question from the agency", kind="reply")
    path = f"{PREFIX}/sources/{source_id}/replies"
    async with aiohttp.ClientSession() as session:
        post = asyncio.ensure_future(session.post(
            f"http://127.0.0.1:{port}{path}", data=body,
            headers=signed_headers(world.staff, "POST", path, body)))
        await until(write_started)
        await runner.cleanup()
        with contextlib.suppress(aiohttp.ClientError):
            (await post).release()
        # The cancelled handler finishes on its own once the write has (in the server,
        # asyncio.run waits for it at exit): then its clean-up has deleted the file.
        tmp = world.data_dir / "tmp"
        async with asyncio.timeout(WAIT):
            while not open_when_resumed or any(tmp.iterdir()):
                await asyncio.sleep(0.01)

    assert open_when_resumed == [True]
    assert list(world.replies_dir.iterdir()) == []
