"""Requests the report endpoint must refuse, each with the right status and the store unchanged
(rows and files counted before and after)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.server.conftest import LABOUR, Client, backend_of
from tests.server.datafolder import snapshot
from tests.server.forms import (
    BASIC_ANSWERS,
    BOUNDARY,
    MULTIPART,
    Field,
    File,
    Part,
    get_csrf,
    multipart,
    report_parts,
)

pytestmark = pytest.mark.asyncio

FILE = File("attachments", "photo.jpg", b"\xff\xd8" + b"p" * 100_000, "image/jpeg")


def full(csrf: str) -> list[Part]:
    return report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS, message="m", files=[FILE])


def without_end(body: bytes) -> bytes:
    return body[:-(len(BOUNDARY) + 6)]  # "--BOUNDARY--\r\n"


def nested(csrf: str) -> bytes:
    return without_end(multipart([Field("csrf", csrf), Field("recipient", LABOUR)])) + (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachments\"\r\n"
        "Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
        "--inner\r\nContent-Disposition: file; filename=\"a.txt\"\r\n\r\nx\r\n--inner--\r\n"
        f"\r\n--{BOUNDARY}--\r\n").encode()


Build = Callable[[str], tuple[bytes, str]]


def parts(build: Callable[[str], list[Part]]) -> Build:
    return lambda csrf: (multipart(build(csrf)), MULTIPART)


CASES: dict[str, tuple[Build, int, str]] = {
    "no csrf field": (parts(lambda c: full(c)[1:]), 403, "This form has expired"),
    "wrong csrf": (parts(lambda c: full("0" * 64)), 403, "This form has expired"),
    "csrf not first": (parts(lambda c: [full(c)[1], full(c)[0], *full(c)[2:]]), 403,
                       "This form has expired"),
    "unknown recipient": (parts(lambda c: report_parts(
        c, recipient="immigration-enforcement", answers=BASIC_ANSWERS, files=[FILE])), 400,
        "Choose who should receive your report from the list"),
    "file before recipient": (parts(lambda c: [Field("csrf", c), FILE, Field("recipient", LABOUR),
                                               *full(c)[2:]]), 400,
                              "Choose who should receive your report"),
    "no recipient chosen": (parts(lambda c: report_parts(c, recipient=None,
                                                         answers=BASIC_ANSWERS)), 400,
                            "Choose who should receive your report"),
    "recipient twice": (parts(lambda c: [*full(c)[:2], Field("recipient", LABOUR),
                                         *full(c)[2:]]), 400, "could not be read"),
    "file under another name": (parts(lambda c: [*full(c)[:-1], File("evidence", "a.txt", b"a")]),
                                400, "could not be read"),
    "truncated in a file": (lambda c: (multipart(full(c))[:-5000], MULTIPART), 400,
                            "could not be read"),
    "no closing boundary": (lambda c: (without_end(multipart(full(c))), MULTIPART), 400,
                            "could not be read"),
    "not multipart at all": (lambda c: (b"csrf=" + c.encode(), MULTIPART), 400,
                             "could not be read"),
    "no boundary parameter": (lambda c: (multipart(full(c)), "multipart/form-data"), 400,
                              "could not be read"),
    "nested multipart": (lambda c: (nested(c), MULTIPART), 400, "could not be read"),
    "urlencoded": (lambda c: (f"csrf={c}&recipient={LABOUR}".encode(),
                              "application/x-www-form-urlencoded"), 415, "could not be read"),
    "plain text": (lambda c: (b"hello", "text/plain"), 415, "could not be read"),
    "json": (lambda c: (b"{}", "application/json"), 415, "could not be read"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_refused_and_nothing_stored(client: Client, case: str) -> None:
    build, status, text = CASES[case]
    backend = backend_of(client)
    before = await snapshot(backend)
    body, content_type = build(await get_csrf(client))
    resp = await client.post("/report", data=body, headers={"Content-Type": content_type})
    html = await resp.text()
    assert resp.status == status, html
    assert text in html
    assert await snapshot(backend) == before
    assert not list(backend.storage.tmp_dir.iterdir())
    assert backend.uploads_in_progress == 0


async def test_without_the_cookie_the_token_is_worthless(client: Client) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    csrf = await get_csrf(client)
    client.session.cookie_jar.clear()
    resp = await client.post("/report", data=multipart(full(csrf)),
                             headers={"Content-Type": MULTIPART})
    assert resp.status == 403
    assert "accept cookies" in await resp.text()
    assert await snapshot(backend) == before


async def test_a_part_with_a_transfer_encoding_is_refused(client: Client) -> None:
    csrf = await get_csrf(client)
    body = multipart(full(csrf)).replace(
        b'filename="photo.jpg"\r\n',
        b'filename="photo.jpg"\r\nContent-Transfer-Encoding: base64\r\n')
    resp = await client.post("/report", data=body, headers={"Content-Type": MULTIPART})
    assert resp.status == 400
