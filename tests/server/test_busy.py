"""When the server is saturated, people get a friendly "try again in a minute" page and nothing
is stored."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.server.conftest import LABOUR, MakeClient, backend_of
from tests.server.datafolder import snapshot
from tests.server.forms import (
    BASIC_ANSWERS,
    File,
    code_from_receipt,
    get_csrf,
    post_report,
    report_parts,
)

pytestmark = pytest.mark.asyncio


async def test_too_many_uploads_at_once(make_client: MakeClient) -> None:
    client = await make_client(max_concurrent_uploads=0)
    backend = backend_of(client)
    before = await snapshot(backend)
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS,
                                                  files=[File("attachments", "a.txt", b"a")]))
    assert resp.status == 503
    assert "try again in a minute" in await resp.text()
    resp = await client.post(f"/submit/envelope?recipient={LABOUR}", data=b"x",
                             headers={"Content-Type": "application/octet-stream",
                                      "X-CSRF-Token": csrf})
    assert resp.status == 503
    assert "try again in a minute" in (await resp.json())["error"]
    assert await snapshot(backend) == before
    assert backend.uploads_in_progress == 0


async def test_argon2_queue_full(make_client: MakeClient) -> None:
    client = await make_client(code_workers=1, code_queue=0)
    backend = backend_of(client)
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS))
    code = code_from_receipt(await resp.text())
    before = await snapshot(backend)

    release = threading.Event()
    slow_job = asyncio.create_task(backend.run_argon2(release.wait, 10))
    await asyncio.sleep(0.01)  # the job holds the only slot
    try:
        csrf = await get_csrf(client)
        resp = await post_report(client, report_parts(
            csrf, recipient=LABOUR, answers=BASIC_ANSWERS,
            files=[File("attachments", "a.txt", b"a" * 100_000)]))
        assert resp.status == 503
        assert "try again in a minute" in await resp.text()
        login_csrf = await get_csrf(client, "/login")
        resp = await client.post("/login", data={"csrf": login_csrf, "code": code},
                                 allow_redirects=False)
        assert resp.status == 503
        assert "srdb_session" not in resp.cookies
    finally:
        release.set()
        await slow_job
    assert await snapshot(backend) == before
    assert not list(backend.storage.tmp_dir.iterdir())
    resp = await client.post("/login", data={"csrf": login_csrf, "code": code},
                             allow_redirects=False)
    assert resp.status == 303  # and once the queue drains, it works again
