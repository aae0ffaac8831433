"""Coming back with a return code: login, replies decrypted in memory, sending more, deleting a
reply, leaving."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dropbox_envelope import Encryptor
from dropbox_envelope.codes import damm
from dropbox_envelope.keys import PublicKey, SecretKey
from dropbox_server.backend import Sessions
from dropbox_server.config import Limits
from tests.server.conftest import LABOUR, AgencyKeys, Client, backend_of
from tests.server.datafolder import open_envelope, snapshot
from tests.server.forms import (
    BASIC_ANSWERS,
    MULTIPART,
    Field,
    File,
    code_from_receipt,
    get_csrf,
    multipart,
    post_report,
    report_parts,
)

pytestmark = pytest.mark.asyncio


async def make_report(client: Client) -> str:
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS,
                                                  message="first report"))
    assert resp.status == 200
    return code_from_receipt(await resp.text())


def count_argon2(client: Client) -> list[int]:
    """Count calls into the Argon2 pool from now on."""
    backend = backend_of(client)
    calls: list[int] = []
    real = backend.run_argon2

    async def counting(fn: Any, *args: Any) -> Any:
        calls.append(1)
        return await real(fn, *args)
    backend.run_argon2 = counting  # type: ignore[method-assign]
    return calls


async def login(client: Client, code: str) -> Any:
    csrf = await get_csrf(client, "/login")
    return await client.post("/login", data={"csrf": csrf, "code": code}, allow_redirects=False)


async def test_right_code_opens_the_conversation(client: Client) -> None:
    code = await make_report(client)
    resp = await login(client, code.replace(" ", "-"))  # separators do not matter
    assert resp.status == 303
    assert resp.headers["Location"] == "/conversation"
    cookie = resp.cookies["srdb_session"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/" and not cookie["max-age"]
    page = await client.get("/conversation")
    html = await page.text()
    assert page.status == 200
    assert "There are no replies yet" in html
    assert "Labour Inspectors" in html
    assert 'href="/conversation"' in await (await client.get("/")).text()


@pytest.mark.parametrize("make_bad, message, hashed", [
    (lambda c: c[:-1] + str((int(c[-1]) + 1) % 10), "typing mistake", False),
    (lambda c: c[:-3], "has 25 digits; this one has 22", False),
    (lambda c: c.replace("1", "l").replace("0", "O"), "only digits", False),
    (lambda c: "1" * 65, "too long", False),
    (lambda c: "1 " * 40, "too long", False),
])
async def test_bad_codes_are_refused_before_any_hashing(client: Client, make_bad: Any,
                                                        message: str, hashed: bool) -> None:
    code = await make_report(client)
    calls = count_argon2(client)
    bad = make_bad(code.replace(" ", ""))
    resp = await login(client, bad)
    assert resp.status == 400
    assert message in await resp.text()
    assert "srdb_session" not in resp.cookies
    assert len(calls) == int(hashed)
    assert (await client.get("/conversation", allow_redirects=False)).status == 303


async def test_unknown_code_costs_the_same_as_a_known_one(client: Client) -> None:
    await make_report(client)
    calls = count_argon2(client)
    body = "9999999" + "12345678901234567"
    unknown = body + str(damm(body))
    resp = await login(client, unknown)
    assert resp.status == 400
    html = await resp.text()
    assert "This return code is not known here" in html
    assert len(calls) == 1  # Argon2 ran on a dummy salt: no locator oracle
    assert "srdb_session" not in resp.cookies


async def test_wrong_secret_for_a_known_locator(client: Client) -> None:
    code = (await make_report(client)).replace(" ", "")
    body = code[:7] + ("1" if code[7] != "1" else "2") + code[8:24]
    resp = await login(client, body + str(damm(body)))
    assert resp.status == 400
    assert "This return code is not known here" in await resp.text()


async def test_login_needs_the_csrf_token(client: Client) -> None:
    code = await make_report(client)
    await get_csrf(client, "/login")
    resp = await client.post("/login", data={"csrf": "0" * 64, "code": code})
    assert resp.status == 403
    resp = await client.post("/login", data=b"csrf=x", headers={"Content-Type": "text/plain"})
    assert resp.status == 415


def seal_reply(public_key: str, message: str) -> bytes:
    encryptor = Encryptor([PublicKey.decode(public_key)])
    return b"".join(encryptor.finish(kind="reply", language="en", message=message))


async def insert_reply(client: Client, source_id: str, message: str) -> str:
    storage = backend_of(client).storage
    source = await storage.source(source_id)
    assert source is not None
    upload = storage.new_upload()
    upload.write(seal_reply(source.public_key, message))
    return await storage.commit_reply(upload, source_id=source_id)


async def only_source_id(client: Client) -> str:
    async with backend_of(client).storage.db.execute("SELECT id FROM sources") as cur:
        [(source_id,)] = list(await cur.fetchall())
    return str(source_id)


async def test_replies_round_trip(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    code = await make_report(client)
    source_id = await only_source_id(client)
    reply_id = await insert_reply(client, source_id, "Thank you. <b>Are you safe</b> now?")
    broken_id = await insert_reply(client, source_id, "x")
    backend.storage.reply_path(broken_id).write_bytes(b"SRDB-ENV damaged")
    assert (await login(client, code)).status == 303

    html = await (await client.get("/conversation")).text()
    assert "Thank you. &lt;b&gt;Are you safe&lt;/b&gt; now?" in html  # escaped, never markup
    assert "This reply could not be opened." in html
    assert html.count('class="new"') == 2
    assert [r.seen for r in await backend.storage.list_replies(source_id)] == [True, True]
    html = await (await client.get("/conversation")).text()
    assert 'class="new"' not in html

    # Send more information: the same fields as the report, minus the recipient.
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)  # type: ignore[union-attr]
    body = multipart([Field("csrf", csrf), Field("message", "He came back today.\r\nSame van."),
                      Field("language", "en"),
                      File("attachments", "van.jpg", b"\xff\xd8van", "image/jpeg")])
    resp = await client.post("/conversation/send", data=body, headers={"Content-Type": MULTIPART},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/conversation?sent=1"
    assert "Your information was sent." in await (await client.get("/conversation?sent=1")).text()
    async with backend.storage.db.execute(
            "SELECT id, source_id, recipient FROM envelopes ORDER BY rowid") as cur:
        rows = list(await cur.fetchall())
    assert [(r[1], r[2]) for r in rows] == [(source_id, LABOUR), (source_id, LABOUR)]
    opened = open_envelope(backend.storage.envelope_path(rows[1][0]), agency_keys.labour)
    assert opened.manifest.message == "He came back today.\nSame van."
    assert opened.manifest.answers == {}
    assert opened.files == [b"\xff\xd8van"]

    # Delete the reply: gone from the database and the disk.
    path = backend.storage.reply_path(reply_id)
    assert path.exists()
    resp = await client.post("/conversation/delete-reply", data={"csrf": csrf, "reply": reply_id},
                             allow_redirects=False)
    assert resp.status == 303
    assert not path.exists()
    assert [r.id for r in await backend.storage.list_replies(source_id)] == [broken_id]
    assert "Are you safe" not in await (await client.get("/conversation")).text()

    # Leave: the session is over.
    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/conversation", allow_redirects=False)).status == 303


async def test_send_refusals_store_nothing(client: Client) -> None:
    backend = backend_of(client)
    await login(client, await make_report(client))
    html = await (await client.get("/conversation")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)  # type: ignore[union-attr]
    before = await snapshot(backend)
    cases = [
        ([Field("csrf", csrf), Field("message", ""), Field("language", "en")], 400,
         "Write a message or choose a file"),
        ([Field("csrf", csrf), Field("message", "m" * 2001)], 400, "too long"),
        ([Field("csrf", csrf), Field("recipient", "city-police"), Field("message", "x")], 400,
         "does not know"),
        ([Field("csrf", "0" * 64), Field("message", "x")], 403, "expired"),
        ([Field("csrf", csrf), Field("message", "x")]
         + [File("attachments", f"{i}.txt", b"x") for i in range(4)], 400, "at most 3 files"),
    ]
    for parts, status, text in cases:
        resp = await client.post("/conversation/send", data=multipart(parts),
                                 headers={"Content-Type": MULTIPART})
        assert resp.status == status, (parts, await resp.text())
        assert text in await resp.text()
    assert await snapshot(backend) == before


async def test_pages_need_a_session(client: Client) -> None:
    csrf = await get_csrf(client)
    assert (await client.get("/conversation", allow_redirects=False)).headers["Location"] == \
        "/login"
    resp = await client.post("/conversation/send", data=multipart([Field("csrf", csrf)]),
                             headers={"Content-Type": MULTIPART})
    assert resp.status == 403
    resp = await client.post("/conversation/delete-reply",
                             data={"csrf": csrf, "reply": "0" * 32})
    assert resp.status == 403


async def test_session_ending_during_an_upload_does_not_break_it(client: Client,
                                                                 agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    resp = await login(client, await make_report(client))
    token = resp.cookies["srdb_session"].value
    html = await (await client.get("/conversation")).text()
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)  # type: ignore[union-attr]
    body = multipart([Field("csrf", csrf), Field("message", "late"), Field("language", "en"),
                      File("attachments", "big.bin", b"b" * 200_000)])
    half = len(body) // 2
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield body[:half]
        started.set()
        await proceed.wait()
        yield body[half:]

    task = asyncio.create_task(client.post("/conversation/send", data=slow(),
                                           headers={"Content-Type": MULTIPART},
                                           allow_redirects=False))
    await started.wait()
    await asyncio.sleep(0.05)
    backend.sessions.end(token)  # the session expires mid-upload
    proceed.set()
    resp = await task
    assert resp.status == 303
    async with backend.storage.db.execute(
            "SELECT id, source_id FROM envelopes ORDER BY rowid") as cur:
        [first, second] = list(await cur.fetchall())
    assert second[1] == first[1]  # linked to the same source
    opened = open_envelope(backend.storage.envelope_path(second[0]), agency_keys.labour)
    assert opened.files == [b"b" * 200_000]


async def test_a_session_ends_after_30_idle_minutes() -> None:
    now = [0.0]
    sessions = Sessions(Limits().session_minutes, clock=lambda: now[0])
    token = sessions.create("source", LABOUR, SecretKey.generate())
    for _ in range(3):  # each use starts the 30 minutes again
        now[0] += 29 * 60
        assert sessions.get(token) is not None
    now[0] += 30 * 60 + 1
    assert sessions.get(token) is None
    now[0] += 1
    assert sessions.get(token) is None  # gone for good, not only hidden
