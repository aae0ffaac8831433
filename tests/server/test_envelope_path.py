"""POST /submit/envelope: an envelope sealed in the browser, checked without a key and stored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

import pytest

from dropbox_envelope import Encryptor
from dropbox_envelope.keys import PublicKey
from tests.server.conftest import LABOUR, POLICE, AgencyKeys, Client, backend_of
from tests.server.datafolder import envelope_files, open_envelope, snapshot, stored_bytes
from tests.server.forms import get_csrf

pytestmark = pytest.mark.asyncio

OCTETS = "application/octet-stream"


def seal(keys: Sequence[PublicKey], *, message: str = "sealed in the browser",
         attachment: bytes = b"evidence") -> bytes:
    encryptor = Encryptor(keys)
    out = encryptor.add_attachment("note.txt", "text/plain", attachment)
    out += list(encryptor.finish(kind="report", language="en", message=message,
                                 answers={"what_happening": ["not_paid"]}))
    return b"".join(out)


def labour_keys(agency_keys: AgencyKeys) -> list[PublicKey]:
    return [agency_keys.labour.public_key, agency_keys.labour_backup.public_key]


async def post_envelope(client: Client, body: bytes | AsyncIterator[bytes], *,
                        recipient: str = LABOUR, csrf: str | None = None,
                        content_type: str = OCTETS) -> tuple[int, dict[str, str]]:
    token = csrf if csrf is not None else await get_csrf(client)
    resp = await client.post(f"/submit/envelope?recipient={recipient}", data=body,
                             headers={"Content-Type": content_type, "X-CSRF-Token": token})
    assert resp.content_type == "application/json"
    doc: dict[str, str] = await resp.json()
    return resp.status, doc


async def test_round_trip_creates_a_source(client: Client, agency_keys: AgencyKeys) -> None:
    envelope = seal(labour_keys(agency_keys))
    status, doc = await post_envelope(client, envelope)
    assert status == 200, doc
    assert doc["status"] == "received"
    assert re.fullmatch(r"\d{5}( \d{5}){4}", doc["code"])
    backend = backend_of(client)
    [path] = envelope_files(backend)
    assert stored_bytes(path) == envelope  # stored exactly as sent (wrapped at rest)
    opened = open_envelope(path, agency_keys.labour_backup)
    assert opened.manifest.message == "sealed in the browser"
    assert opened.files == [b"evidence"]
    source = await backend.storage.source_by_locator(doc["code"].replace(" ", "")[:7])
    assert source is not None and source.recipient == LABOUR


async def test_streamed_without_content_length(client: Client, agency_keys: AgencyKeys) -> None:
    envelope = seal([agency_keys.police.public_key], attachment=b"z" * 150_000)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(envelope), 10_000):
            yield envelope[i:i + 10_000]

    status, doc = await post_envelope(client, chunks(), recipient=POLICE)
    assert status == 200, doc
    [path] = envelope_files(backend_of(client))
    assert open_envelope(path, agency_keys.police).files == [b"z" * 150_000]


async def test_logged_in_source_adds_to_its_own_report(client: Client,
                                                       agency_keys: AgencyKeys) -> None:
    status, doc = await post_envelope(client, seal(labour_keys(agency_keys)))
    assert status == 200
    csrf = await get_csrf(client, "/login")
    resp = await client.post("/login", data={"csrf": csrf, "code": doc["code"]},
                             allow_redirects=False)
    assert resp.status == 303
    status, second = await post_envelope(client, seal(labour_keys(agency_keys), message="more"))
    assert (status, second) == (200, {"status": "received"})
    backend = backend_of(client)
    async with backend.storage.db.execute("SELECT DISTINCT source_id FROM envelopes") as cur:
        assert len(list(await cur.fetchall())) == 1
    assert (await snapshot(backend)).rows == {"sources": 1, "envelopes": 2, "replies": 0}
    # ...and only to the agency of that report.
    status, doc = await post_envelope(client, seal([agency_keys.police.public_key]),
                                      recipient=POLICE)
    assert status == 400


@pytest.mark.parametrize("name", ["garbage", "truncated", "bad magic", "extended", "empty"])
async def test_malformed_envelope(client: Client, agency_keys: AgencyKeys, name: str) -> None:
    envelope = seal(labour_keys(agency_keys))
    body = {"garbage": b"this is not an envelope" * 100,
            "truncated": envelope[:-100],
            # Without a key only the structure can be checked (the header MAC needs the key).
            "bad magic": bytes([envelope[0] ^ 1]) + envelope[1:],
            "extended": envelope + b"\0" * 40,
            "empty": b""}[name]
    backend = backend_of(client)
    before = await snapshot(backend)
    status, doc = await post_envelope(client, body)
    assert status == 400, doc
    assert "error" in doc
    assert await snapshot(backend) == before


async def test_wrong_content_type(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/json"):
        status, _ = await post_envelope(client, seal(labour_keys(agency_keys)),
                                        content_type=content_type)
        assert status == 415
    assert await snapshot(backend) == before


async def test_wrong_stanza_count(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    # Sealed to the main key only: the agency's offline backup could not open it.
    status, doc = await post_envelope(client, seal([agency_keys.labour.public_key]))
    assert status == 400, doc
    status, doc = await post_envelope(client, seal(labour_keys(agency_keys)), recipient=POLICE)
    assert status == 400, doc
    assert await snapshot(backend) == before


async def test_oversize(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    envelope = seal(labour_keys(agency_keys), attachment=b"\0" * (300 * 1024))
    status, _ = await post_envelope(client, envelope)  # announced by Content-Length
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(envelope), 65536):
            yield envelope[i:i + 65536]

    status, _ = await post_envelope(client, chunks())  # found while streaming
    assert status == 413
    assert await snapshot(backend) == before
    assert not list(backend.storage.tmp_dir.iterdir())


async def test_csrf_and_recipient_checks(client: Client, agency_keys: AgencyKeys) -> None:
    backend = backend_of(client)
    before = await snapshot(backend)
    envelope = seal(labour_keys(agency_keys))
    assert (await post_envelope(client, envelope, csrf="0" * 64))[0] == 403
    assert (await post_envelope(client, envelope, csrf=""))[0] == 403
    assert (await post_envelope(client, envelope, recipient="home-office"))[0] == 400
    token = await get_csrf(client)
    client.session.cookie_jar.clear()
    assert (await post_envelope(client, envelope, csrf=token))[0] == 403
    assert await snapshot(backend) == before
