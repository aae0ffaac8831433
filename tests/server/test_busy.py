"""When the server is saturated, people get a friendly "try again in a minute" page and nothing
is stored."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dropbox_server.backend import Busy
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
    client = await make_client(code_workers=1, code_queue=0, new_report_code_queue=0)
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


async def test_new_reports_take_the_next_argon2_thread_before_logins(
        make_client: MakeClient) -> None:
    client = await make_client(code_workers=1, code_queue=2, new_report_code_queue=1)
    backend = backend_of(client)
    release = threading.Event()
    ran: list[str] = []

    def job(name: str) -> str:
        ran.append(name)
        return name

    holder = asyncio.create_task(backend.run_argon2(release.wait, 10))
    await asyncio.sleep(0.01)  # the only thread is taken
    logins = [asyncio.create_task(backend.run_argon2(job, f"login {i}")) for i in range(2)]
    await asyncio.sleep(0)
    # The login queue is full: a third login attempt is refused at once...
    assert not backend.argon2_has_room("login")
    with pytest.raises(Busy):
        await backend.run_argon2(job, "login 2")
    # ... while a new report still gets its place, and goes first.
    assert backend.argon2_has_room("new_report")
    report = asyncio.create_task(backend.run_argon2(job, "report", lane="new_report"))
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await backend.run_argon2(job, "report 2", lane="new_report")
    release.set()
    assert await asyncio.wait_for(asyncio.gather(holder, report, *logins), 30) == [
        True, "report", "login 0", "login 1"]
    assert ran == ["report", "login 0", "login 1"]
    assert backend.argon2_has_room("login")


async def test_a_waiting_request_that_gives_up_frees_its_place(make_client: MakeClient) -> None:
    client = await make_client(code_workers=1, code_queue=1)
    backend = backend_of(client)
    release = threading.Event()
    holder = asyncio.create_task(backend.run_argon2(release.wait, 10))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(backend.run_argon2(str, "gives up"))
    await asyncio.sleep(0)
    assert not backend.argon2_has_room("login")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert backend.argon2_has_room("login")
    release.set()
    assert await asyncio.wait_for(holder, 30) is True
    assert await asyncio.wait_for(backend.run_argon2(str, "next"), 30) == "next"
