"""The staff API against the real app (``create_app(config)[STAFF_APP]``) and a real data
folder: signatures, listing, downloads with ranges, acknowledgement, sources and replies."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientResponse

from dropbox_envelope.keys import SecretKey
from dropbox_envelope.streams import decrypt
from dropbox_server.staff import HEADER_BODY_SHA256, MAX_REPLY_BYTES
from tests.server.datafolder import stored_bytes
from tests.staff.conftest import (
    RECIPIENT,
    Api,
    MemorySink,
    commit_envelope,
    create_source,
    seal,
    sha256,
)

pytestmark = pytest.mark.asyncio

LIST = "/staff/v1/envelopes"


async def _error(response: ClientResponse) -> str:
    assert response.content_type == "application/json"
    doc = await response.json()
    assert isinstance(doc["error"], str) and doc["error"]
    return str(doc["error"])


# --- signatures ------------------------------------------------------------------------------

async def test_unsigned_requests_are_refused_everywhere(api: Api) -> None:
    for path in (LIST, "/staff/v1/no-such-thing", "/"):
        response = await api.client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"] == "SRDB-Staff-v1"
        assert "not signed" in await _error(response)


async def test_a_signed_request_is_accepted(api: Api) -> None:
    response = await api.request("GET", LIST)
    assert response.status == 200
    assert await response.json() == {"envelopes": []}
    assert response.headers["Cache-Control"] == "no-store"


async def test_signature_by_another_key_is_refused(api: Api) -> None:
    headers = api.headers("GET", LIST, key=api.world.stranger)
    headers["X-SRDB-Key"] = api.world.staff.public_key.encode()  # claim to be alice
    response = await api.client.get(LIST, headers=headers)
    assert response.status == 401
    assert "does not match" in await _error(response)


async def test_unauthorised_key_is_refused(api: Api) -> None:
    response = await api.request("GET", LIST, key=api.world.stranger)
    assert response.status == 401
    assert "not authorised" in await _error(response)


async def test_expired_and_future_timestamps_are_refused(api: Api) -> None:
    api.backend.started_at = 0  # isolate the window check from the start-time check
    window = api.world.config.limits.staff_signature_window
    for now in (int(time.time()) - window - 5, int(time.time()) + window + 5):
        response = await api.request("GET", LIST, now=now)
        assert response.status == 401
        assert "expired" in await _error(response)


async def test_timestamp_before_server_start_is_refused(api: Api) -> None:
    response = await api.request("GET", LIST, now=api.backend.started_at - 1)
    assert response.status == 401


async def test_replayed_request_is_refused(api: Api) -> None:
    headers = api.headers("GET", LIST)
    assert (await api.client.get(LIST, headers=headers)).status == 200
    response = await api.client.get(LIST, headers=headers)
    assert response.status == 401
    assert "replay" in await _error(response)


async def test_tampered_path_or_query_is_refused(api: Api) -> None:
    headers = api.headers("GET", "/staff/v1/sources?waiting=1")
    response = await api.client.get("/staff/v1/sources?waiting=0", headers=headers)
    assert response.status == 401
    headers = api.headers("GET", LIST)
    response = await api.client.get("/staff/v1/sources?waiting=1", headers=headers)
    assert response.status == 401


async def test_tampered_body_hash_is_refused(api: Api) -> None:
    source_id, source_key = await create_source(api.storage)
    path = f"/staff/v1/sources/{source_id}/replies"
    signed_body = seal([source_key.public_key], "what was signed", kind="reply")
    other_body = seal([source_key.public_key], "what is sent", kind="reply")
    headers = api.headers("POST", path, signed_body)
    headers[HEADER_BODY_SHA256] = sha256(other_body)  # consistent with the body, not signed
    response = await api.client.post(path, data=io.BytesIO(other_body), headers=headers)
    assert response.status == 401
    assert await api.storage.list_replies(source_id) == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_only_get_and_post(api: Api, method: str) -> None:
    response = await api.request(method, LIST)
    assert response.status == 405


async def test_get_requests_take_no_body(api: Api) -> None:
    response = await api.request("POST", f"/staff/v1/envelopes/{'0' * 32}/ack", b"surprise")
    assert response.status == 400


# --- envelopes -------------------------------------------------------------------------------

async def test_list_describes_every_envelope(api: Api) -> None:
    agency = api.world.agency.public_key
    first = seal([agency], "first report")
    second = seal([agency], "second", [("photo.jpg", b"\xff\xd8" * 5000)])
    source_id, _key = await create_source(api.storage)
    ids = [await commit_envelope(api.storage, first),
           await commit_envelope(api.storage, second, source_id=source_id)]
    response = await api.request("GET", LIST)
    listed = {e["id"]: e for e in (await response.json())["envelopes"]}
    assert set(listed) == set(ids)
    for envelope_id, data, source in ((ids[0], first, None), (ids[1], second, source_id)):
        entry = listed[envelope_id]
        assert entry["size"] == len(data)
        assert entry["sha256"] == sha256(data)
        assert entry["source_id"] == source
        assert entry["recipient"] == RECIPIENT
        assert entry["day"] == time.strftime("%Y-%m-%d", time.gmtime())


async def test_download_whole_envelope(api: Api) -> None:
    data = seal([api.world.agency.public_key], "a report", [("a.bin", bytes(300_000))])
    envelope_id = await commit_envelope(api.storage, data)
    response = await api.request("GET", f"{LIST}/{envelope_id}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["ETag"] == f'"sha256:{sha256(data)}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.content_length == len(data)
    assert await response.read() == data


async def test_ranges_reassemble_to_the_same_bytes(api: Api) -> None:
    data = seal([api.world.agency.public_key], "a report", [("a.bin", bytes(100_000))])
    envelope_id = await commit_envelope(api.storage, data)
    path, size = f"{LIST}/{envelope_id}", len(data)

    head = await api.request("GET", path, headers={"Range": "bytes=0-999"})
    assert head.status == 206
    assert head.headers["Content-Range"] == f"bytes 0-999/{size}"
    tail = await api.request("GET", path, headers={"Range": "bytes=1000-"})
    assert tail.status == 206
    assert tail.headers["Content-Range"] == f"bytes 1000-{size - 1}/{size}"
    assert await head.read() + await tail.read() == data

    suffix = await api.request("GET", path, headers={"Range": "bytes=-10"})
    assert suffix.status == 206 and await suffix.read() == data[-10:]
    beyond_end = await api.request("GET", path, headers={"Range": f"bytes={size - 5}-{size + 50}"})
    assert beyond_end.status == 206 and await beyond_end.read() == data[-5:]


async def test_unsatisfiable_range_is_416(api: Api) -> None:
    data = seal([api.world.agency.public_key], "short")
    envelope_id = await commit_envelope(api.storage, data)
    response = await api.request("GET", f"{LIST}/{envelope_id}",
                                 headers={"Range": f"bytes={len(data)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    await _error(response)


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=9-2", "items=0-1", "bytes=x-"])
async def test_ranges_we_ignore_send_the_whole_file(api: Api, header: str) -> None:
    data = seal([api.world.agency.public_key], "short")
    envelope_id = await commit_envelope(api.storage, data)
    response = await api.request("GET", f"{LIST}/{envelope_id}", headers={"Range": header})
    assert response.status == 200
    assert await response.read() == data


async def test_if_range_with_another_etag_sends_the_whole_file(api: Api) -> None:
    data = seal([api.world.agency.public_key], "short")
    envelope_id = await commit_envelope(api.storage, data)
    path = f"{LIST}/{envelope_id}"
    stale = await api.request("GET", path, headers={"Range": "bytes=10-",
                                                    "If-Range": '"sha256:' + "0" * 64 + '"'})
    assert stale.status == 200 and await stale.read() == data
    current = await api.request("GET", path, headers={"Range": "bytes=10-",
                                                      "If-Range": f'"sha256:{sha256(data)}"'})
    assert current.status == 206 and await current.read() == data[10:]


async def test_unknown_and_malformed_ids(api: Api) -> None:
    unknown = await api.request("GET", f"{LIST}/{'a' * 32}")
    assert unknown.status == 404
    await _error(unknown)
    for bad in ("A" * 32, "a" * 31, "a" * 33, "a" * 31 + "g", "db.sqlite", "...."):
        response = await api.request("GET", f"{LIST}/{bad}")
        assert response.status == 400, bad
        assert "32 lowercase hex" in await _error(response)
        assert (await api.request("POST", f"{LIST}/{bad}/ack")).status == 400, bad
        assert (await api.request("GET", f"/staff/v1/sources/{bad}")).status == 400, bad


async def test_ack_deletes_file_and_row_idempotently(api: Api) -> None:
    data = seal([api.world.agency.public_key], "gone soon")
    envelope_id = await commit_envelope(api.storage, data)
    path = api.storage.envelope_path(envelope_id)
    assert path.exists()
    response = await api.request("POST", f"{LIST}/{envelope_id}/ack")
    assert response.status == 204
    assert not path.exists()
    assert await api.storage.envelope(envelope_id) is None
    assert (await api.request("POST", f"{LIST}/{envelope_id}/ack")).status == 204
    assert (await api.request("GET", f"{LIST}/{envelope_id}")).status == 404
    assert (await (await api.request("GET", LIST)).json())["envelopes"] == []


# --- sources and replies ---------------------------------------------------------------------

async def test_source_reply_key(api: Api) -> None:
    source_id, source_key = await create_source(api.storage)
    response = await api.request("GET", f"/staff/v1/sources/{source_id}")
    assert await response.json() == {"source_id": source_id,
                                     "public_key": source_key.public_key.encode(),
                                     "recipient": RECIPIENT}
    missing = await api.request("GET", f"/staff/v1/sources/{'b' * 32}")
    assert missing.status == 404


async def _decrypt_reply(api: Api, reply_id: str, key: SecretKey) -> str:
    manifest = decrypt(io.BytesIO(stored_bytes(api.storage.reply_path(reply_id))), [key],
                       MemorySink())
    assert manifest.kind == "reply"
    return manifest.message


async def test_reply_is_stored_and_listed_as_waiting(api: Api) -> None:
    source_id, source_key = await create_source(api.storage)
    body = seal([source_key.public_key], "We received your report.", kind="reply")
    path = f"/staff/v1/sources/{source_id}/replies"
    response = await api.request("POST", path, body)
    assert response.status == 201
    reply_id = (await response.json())["reply_id"]
    [row] = await api.storage.list_replies(source_id)
    assert (row.id, row.size, row.sha256, row.seen) == (reply_id, len(body), sha256(body), False)
    assert await _decrypt_reply(api, reply_id, source_key) == "We received your report."
    waiting = await api.request("GET", "/staff/v1/sources?waiting=1")
    assert await waiting.json() == {"sources": [{"source_id": source_id, "unread_replies": 1}]}
    assert (await api.request("GET", "/staff/v1/sources")).status == 400


async def _refused_reply(api: Api, body: bytes, status: int, *,
                         headers: dict[str, str] | None = None) -> str:
    source_id, _key = await create_source(api.storage)
    response = await api.request("POST", f"/staff/v1/sources/{source_id}/replies", body,
                                 headers=headers)
    assert response.status == status
    assert await api.storage.list_replies(source_id) == []
    assert list(api.world.replies_dir.iterdir()) == []
    assert list((api.world.data_dir / "tmp").iterdir()) == []
    return await _error(response)


async def test_reply_with_two_stanzas_is_refused(api: Api) -> None:
    body = seal([SecretKey.generate().public_key, SecretKey.generate().public_key], "hi",
                kind="reply")
    assert "exactly one key" in await _refused_reply(api, body, 400)


@pytest.mark.parametrize("body", [b"not an envelope at all", b"SRDB-ENV\x01\x01"])
async def test_malformed_reply_is_refused(api: Api, body: bytes) -> None:
    assert "not a valid envelope" in await _refused_reply(api, body, 400)


async def test_truncated_reply_is_refused(api: Api) -> None:
    body = seal([SecretKey.generate().public_key], "hi", kind="reply")
    await _refused_reply(api, body[:-10], 400)


async def test_reply_body_must_match_its_signed_hash(api: Api) -> None:
    body = seal([SecretKey.generate().public_key], "hi", kind="reply")
    source_id, _key = await create_source(api.storage)
    path = f"/staff/v1/sources/{source_id}/replies"
    headers = api.headers("POST", path, body)  # signs sha256(body), sends a different body
    altered = bytearray(body)
    altered[-1] ^= 1
    response = await api.client.post(path, data=io.BytesIO(altered), headers=headers)
    assert response.status == 400
    assert "signed SHA-256" in await _error(response)
    assert await api.storage.list_replies(source_id) == []


async def test_oversized_reply_is_refused(api: Api) -> None:
    await _refused_reply(api, bytes(MAX_REPLY_BYTES + 1), 413)


async def test_oversized_reply_without_length_is_cut_off(api: Api) -> None:
    """A chunked body (no Content-Length) is counted while it streams."""
    body = seal([SecretKey.generate().public_key], "x", [("big", bytes(MAX_REPLY_BYTES))],
                kind="reply")
    source_id, _key = await create_source(api.storage)
    path = f"/staff/v1/sources/{source_id}/replies"

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    response = await api.client.post(path, data=chunks(), headers=api.headers("POST", path, body))
    assert response.status == 413
    assert await api.storage.list_replies(source_id) == []
    assert list((api.world.data_dir / "tmp").iterdir()) == []


async def test_reply_needs_octet_stream(api: Api) -> None:
    body = seal([SecretKey.generate().public_key], "hi", kind="reply")
    await _refused_reply(api, body, 415, headers={"Content-Type": "text/plain"})


async def test_reply_to_unknown_source_is_404(api: Api) -> None:
    body = seal([SecretKey.generate().public_key], "hi", kind="reply")
    response = await api.request("POST", f"/staff/v1/sources/{'c' * 32}/replies", body)
    assert response.status == 404
    assert list((api.world.data_dir / "tmp").iterdir()) == []
