"""The no-JavaScript report: sealed as it streams in, nothing in plaintext on disk, nothing
stored unless everything succeeded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.server.conftest import LABOUR, POLICE, AgencyKeys, Client, backend_of
from tests.server.datafolder import all_files, envelope_files, open_envelope, snapshot
from tests.server.forms import (
    BASIC_ANSWERS,
    MULTIPART,
    File,
    code_from_receipt,
    get_csrf,
    multipart,
    post_report,
    report_parts,
)

pytestmark = pytest.mark.asyncio

PHOTO = bytes(range(256)) * 300  # 75 KiB, several 64 KiB reads
PAYSLIP = b"%PDF-1.4 payslip for March: paid 0.00\n" * 50


async def test_report_round_trip(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    csrf = await get_csrf(client)
    answers: dict[str, str | list[str]] = {
        "reporter": "victim",
        "what_happening": ["threats", "not_paid", "documents_taken"],
        "danger_now": ["getting_worse"],
        "location": "Unit 4, Mill Lane\r\nbehind the petrol station",
        "workplace_type": "car_wash",
        "last_time": "2024-03-31",
        "workers_languages": "Romanian, Portuguese",
        "contact": "return_code_only",
    }
    files = [File("attachments", "photo 1.jpg", PHOTO, "image/jpeg"),
             File("attachments", "payslip-März.pdf", PAYSLIP, "application/pdf")]
    resp = await post_report(client, report_parts(
        csrf, recipient=LABOUR, answers=answers,
        message="They keep our documents.\r\nWe work 14 hours a day.", files=files))
    html = await resp.text()
    assert resp.status == 200, html
    code = code_from_receipt(html)
    assert "only time your code is shown" in html
    assert "Labour Inspectors" in html

    [path] = envelope_files(backend)
    for key in (agency_keys.labour, agency_keys.labour_backup):  # both stanzas open it
        opened = open_envelope(path, key)
        manifest = opened.manifest
        assert manifest.kind == "report"
        assert manifest.language == "en"
        assert manifest.message == "They keep our documents.\nWe work 14 hours a day."
        assert manifest.answers == {
            "reporter": "victim",
            # In the questionnaire's order, whatever order they were sent in.
            "what_happening": ["not_paid", "documents_taken", "threats"],
            "danger_now": ["getting_worse"],
            "location": "Unit 4, Mill Lane\nbehind the petrol station",
            "workplace_type": "car_wash",
            "last_time": "2024-03-31",
            "workers_languages": "Romanian, Portuguese",
            "contact": "return_code_only",
        }
        assert [(a.name, a.media_type, a.size) for a in manifest.attachments] == [
            ("photo 1.jpg", "image/jpeg", len(PHOTO)),
            ("payslip-März.pdf", "application/pdf", len(PAYSLIP))]
        assert opened.files == [PHOTO, PAYSLIP]
        assert manifest.extra["questionnaire"] == "default-en-1"
        assert manifest.extra["triage"] == {
            "urgent": True,
            "indicators": ["ilo:intimidation_and_threats", "ilo:retention_of_identity_documents",
                           "ilo:withholding_of_wages"]}

    async with backend.storage.db.execute("SELECT source_id, recipient FROM envelopes") as cur:
        [(source_id, recipient)] = list(await cur.fetchall())
    assert recipient == LABOUR
    source = await backend.storage.source(source_id)
    assert source is not None and source.recipient == LABOUR
    assert source.locator == code.replace(" ", "")[:7]
    assert not list(backend.storage.tmp_dir.iterdir())


async def test_police_report_without_files(client: Client, agency_keys: AgencyKeys) -> None:
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(
        csrf, recipient=POLICE, answers={"what_happening": ["domestic_abuse"], "reporter": ""},
        message="", empty_file_input=True))
    assert resp.status == 200, await resp.text()
    [path] = envelope_files(backend_of(client))
    opened = open_envelope(path, agency_keys.police)
    assert opened.manifest.attachments == ()
    assert opened.manifest.answers == {"what_happening": ["domestic_abuse"]}
    assert opened.manifest.extra["triage"] == {"urgent": False,
                                               "indicators": ["abuse:domestic_abuse"]}


async def test_the_receipt_cannot_be_resubmitted(client: Client) -> None:
    csrf = await get_csrf(client)
    parts = report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS, message="once")
    first = await post_report(client, parts)
    assert first.status == 200
    assert first.cookies["srdb_csrf"].value  # a fresh cookie replaces the used one
    again = await post_report(client, parts)  # e.g. reload on the receipt page
    assert again.status == 403
    assert len(envelope_files(backend_of(client))) == 1


async def test_no_plaintext_and_no_code_anywhere_on_disk(client: Client, data_dir: Path) -> None:
    marker_text = "MARKER-TEXT-3b1f9c"
    marker_answer = "MARKER-ANSWER-77d2e0"
    marker_file = b"MARKER-FILE-CONTENT-a41c5e" * 4000  # 100 KiB, several chunks
    marker_name = "MARKER-NAME-e9d0f2.txt"
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(
        csrf, recipient=LABOUR,
        answers={"what_happening": ["violence"], "business": marker_answer},
        message=f"{marker_text} happened here",
        files=[File("attachments", marker_name, marker_file, "text/plain"),
               File("attachments", "second.bin", marker_file[:1000])]))
    assert resp.status == 200
    code = code_from_receipt(await resp.text())
    digits = code.replace(" ", "")
    needles = [marker_text.encode(), marker_answer.encode(), b"MARKER-FILE-CONTENT",
               marker_name.encode(), b"MARKER", digits.encode(), code.encode(),
               digits[7:24].encode()]

    def scan() -> list[str]:
        found = []
        files = all_files(data_dir)
        names = {p.name for p in files}
        assert "dropbox.sqlite" in names
        for path in files:
            content = path.read_bytes()
            found += [f"{needle!r} in {path}" for needle in needles if needle in content]
        return found

    assert (data_dir / "db" / "dropbox.sqlite-wal").exists()
    assert scan() == []          # while running: database, WAL, shared memory, tmp, store
    await client.close()         # and after the database is closed and checkpointed
    assert scan() == []


BAD_NAMES = [
    "../../etc/passwd",
    "folder/photo.jpg",
    "x" * 256 + ".jpg",
    "..",
]


@pytest.mark.parametrize("filename", BAD_NAMES)
async def test_bad_file_names_are_refused(client: Client, filename: str) -> None:
    await assert_refused(client, [File("attachments", filename, b"data")], 400,
                         "A file name")


@pytest.mark.parametrize("encoded, text", [
    ("bad%01name.jpg", "hidden characters"),
    ("tab%09name.jpg", "hidden characters"),
    ("photo%E2%80%AEgpj.exe", "hidden characters"),  # right-to-left override
    ("del%7Fname.txt", "hidden characters"),
    ("..%5C..%5Cboot.ini", "A file name is not valid"),  # backslashes, RFC 5987-encoded
    ("..%2F..%2Fetc%2Fpasswd", "A file name is not valid"),
])
async def test_encoded_file_names_are_checked_too(client: Client, encoded: str,
                                                 text: str) -> None:
    disposition = f"form-data; name=\"attachments\"; filename*=UTF-8''{encoded}"
    await assert_refused(client, [File("attachments", "", b"data", disposition=disposition)],
                         400, text)


async def assert_refused(client: Client, files: list[File], status: int, text: str, *,
                         message: str = "my account") -> str:
    """Post a report with ``files`` and check it is refused with the form shown again, the
    typed text kept, and the store unchanged."""
    backend = backend_of(client)
    before = await snapshot(backend)
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(
        csrf, recipient=LABOUR, answers={**BASIC_ANSWERS, "business": "Kept Text Ltd"},
        message=message, files=files))
    html = await resp.text()
    assert resp.status == status, html
    assert text in html
    assert "Nothing has been sent yet" in html
    assert "Kept Text Ltd" in html and message[:100] in html  # nothing typed is lost
    assert await snapshot(backend) == before
    return html


async def test_too_many_files(client: Client) -> None:
    files = [File("attachments", f"f{i}.txt", b"x") for i in range(4)]
    html = await assert_refused(client, files, 400, "at most 3 files")
    assert "choose your files again" in html


async def test_upload_over_the_limit_is_413(client: Client) -> None:
    big = b"\0" * (300 * 1024)
    await assert_refused(client, [File("attachments", "video.mp4", big)], 413, "too large")


async def test_announced_huge_upload_is_refused_before_reading(client: Client) -> None:
    """A Content-Length far over the limit is answered at once, before the body is sent."""
    backend = backend_of(client)
    before = await snapshot(backend)
    csrf = await get_csrf(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["srdb_csrf"].value
    head = multipart(report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS))[:200]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST /report HTTP/1.1\r\nHost: {client.host}\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {10 * 1024 ** 3}\r\nCookie: srdb_csrf={cookie}\r\n\r\n".encode()
        + head)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert await snapshot(backend) == before


async def test_message_too_long(client: Client) -> None:
    await assert_refused(client, [], 400, "Your message is too long", message="m" * 2001)


async def test_a_long_message_with_crlf_newlines_fits(client: Client,
                                                      agency_keys: AgencyKeys) -> None:
    """Browsers count a newline as one character for maxlength but send CRLF."""
    message = "line\r\n" * 333  # 1998 characters once newlines are LF, 2331 as sent
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(csrf, recipient=POLICE, answers=BASIC_ANSWERS,
                                                  message=message))
    assert resp.status == 200
    [path] = envelope_files(backend_of(client))
    assert open_envelope(path, agency_keys.police).manifest.message == ("line\n" * 333).strip()


@pytest.mark.parametrize("answers, field, text", [
    ({"what_happening": []}, "what_happening", "Please tick at least one box."),
    ({"what_happening": ["not_paid", "invented"]}, "what_happening", "Choose only from"),
    ({"reporter": "king"}, "reporter", "Choose one of the options"),
    ({"business": "x" * 301}, "business", "at most 300 characters"),
    ({"job": "y" * 301}, "job", "at most 300 characters"),
    ({"last_time": "31/03/2024"}, "last_time", "year-month-day"),
    ({"nationality": "anything"}, "", "a field this site does not know"),
])
async def test_invalid_answers_show_the_form_again(client: Client, answers: dict[str, object],
                                                    field: str, text: str) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    csrf = await get_csrf(client)
    sent: dict[str, str | list[str]] = {**BASIC_ANSWERS, **answers}  # type: ignore[dict-item]
    resp = await post_report(client, report_parts(csrf, recipient=POLICE, answers=sent,
                                                  message="still here"))
    html = await resp.text()
    assert resp.status == 400
    assert text in html
    if field:
        # The message sits inside the field's own block, next to it.
        block = html[html.index(f'id="field-{field}"'):]
        block = block[:block.index('id="field-', 10)]
        assert text in block
    assert "still here" in html
    assert f'value="{POLICE}" required checked' in html  # the chosen agency is kept
    assert await snapshot(backend) == before
