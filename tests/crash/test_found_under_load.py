"""Failures the crash harness ran into under concurrent load, kept as small regression tests:
an acknowledgement while another request's listing is still reading (fixed in 7514a56), and a
listing long enough to reach the staff client in more than one read (fixed in cfb0711).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from client_cli.staffapi import StaffClient
from dropbox_envelope.keys import SecretKey, StaffSecretKey
from dropbox_server.storage import Storage
from tests.staff.conftest import commit_envelope, seal

pytestmark = pytest.mark.asyncio


async def test_acknowledging_while_staff_list_envelopes(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    await storage.open()
    try:
        envelope = seal([SecretKey.generate().public_key], "a report")
        ids = [await commit_envelope(storage, envelope) for _ in range(3)]
        # What list_envelopes does, paused where the event loop can switch to another
        # request: between the query's first step and fetching the rest of its rows.
        async with storage.db.execute("SELECT id FROM envelopes ORDER BY day, id") as listing:
            await listing.fetchone()
            assert await storage.delete_envelope(ids[0])
            await listing.fetchall()
        assert sorted(e.id for e in await storage.list_envelopes()) == sorted(ids[1:])
        assert sorted(p.stem for p in storage.envelopes_dir.iterdir()) == sorted(ids[1:])
        # The WAL cleanup that the open listing blocked is owed, and settles once it is done.
        assert storage.erase_pending
        for _ in range(50):
            if not storage.erase_pending:
                break
            await asyncio.sleep(0.1)
        assert not storage.erase_pending
    finally:
        await storage.close()


async def test_fetch_reads_a_listing_that_arrives_in_pieces(tmp_path: Path) -> None:
    listing = [{"id": f"{i:032x}", "source_id": None, "recipient": "city-police",
                "day": "2026-05-09", "size": 1000, "sha256": "ab" * 32} for i in range(50)]
    body = json.dumps({"envelopes": listing}).encode()

    async def envelopes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[:1000])
        await asyncio.sleep(0.2)  # the rest arrives later, as over a slow network
        await response.write(body[1000:])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/staff/v1/envelopes", envelopes)
    server = TestServer(app)
    await server.start_server()
    try:
        async with StaffClient(str(server.make_url("/")), StaffSecretKey.generate()) as api:
            assert len(await api.list_envelopes()) == 50
    finally:
        await server.close()
