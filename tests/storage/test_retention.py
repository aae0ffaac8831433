"""Retention without silent loss (docs/PROTOCOL.md §11.5), with an injected "today": inactive
sources expire with their replies (crypto-erased), a login restarts the period, a source with a
report waiting never expires, reports never expire, and the log counts waiting reports by age
without identifying any."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from dropbox_server.app import create_app
from dropbox_server.appkeys import BACKEND
from dropbox_server.backend import Backend
from dropbox_server.config import Limits, load_config
from dropbox_server.errors import ConfigError
from dropbox_server.retention import (
    ExpiryResult,
    Maintenance,
    age_buckets,
    expire,
    seconds_until_next_run,
    waiting_message,
)
from dropbox_server.storage import Storage
from tests.server.conftest import LABOUR, AgencyKeys, write_config
from tests.server.forms import (
    BASIC_ANSWERS,
    code_from_receipt,
    get_csrf,
    post_report,
    report_parts,
)
from tests.staff.conftest import World, commit_envelope, create_source, seal

START = dt.date(2025, 1, 10)


class Today:
    """An injectable clock: the day the server believes it is."""

    def __init__(self, day: dt.date) -> None:
        self.day = day

    def __call__(self) -> dt.date:
        return self.day

    def advance(self, days: int) -> None:
        self.day += dt.timedelta(days=days)


async def add_reply(storage: Storage, source_id: str, text: str, world: World) -> str:
    source = await storage.source(source_id)
    assert source is not None
    upload = storage.new_upload()
    upload.write(seal([world.agency.public_key], text, kind="reply"))
    return await storage.commit_reply(upload, source_id=source_id)


async def open_storage(world: World, today: Today) -> Storage:
    storage = Storage(world.data_dir, clock=today)
    await storage.open()
    return storage


@pytest.mark.asyncio
async def test_an_inactive_source_expires_with_its_replies(world: World) -> None:
    today = Today(START)
    storage = await open_storage(world, today)
    try:
        source_id, _key = await create_source(storage)
        report = await commit_envelope(storage, seal([world.agency.public_key], "r"),
                                       source_id=source_id)
        replies = [await add_reply(storage, source_id, f"reply {i}", world) for i in range(2)]
        async with storage.db.execute("SELECT wrap_key FROM replies") as cur:
            keys = [bytes(r[0]) for r in await cur.fetchall()]
        assert await storage.delete_envelope(report)  # staff fetched it

        today.advance(90)  # 90 days after the last visit: still kept
        assert await expire(storage, today=today(), retention_days=90) == ExpiryResult(0, 0)
        assert await storage.source(source_id) is not None

        today.advance(1)
        result = await expire(storage, today=today(), retention_days=90)
        assert (result.sources, result.replies) == (1, 2)
        assert await storage.source(source_id) is None
        assert await storage.list_replies(source_id) == []
        assert [p for p in storage.replies_dir.iterdir()] == []
        assert not any(storage.reply_path(r).exists() for r in replies)
        for path in storage.db_path.parent.iterdir():  # the replies' keys are gone too
            assert all(key not in path.read_bytes() for key in keys), path
    finally:
        await storage.close()


@pytest.mark.asyncio
async def test_a_source_with_a_waiting_report_is_never_expired(world: World) -> None:
    today = Today(START)
    storage = await open_storage(world, today)
    try:
        source_id, _key = await create_source(storage)
        body = seal([world.agency.public_key], "nobody fetched me")
        report = await commit_envelope(storage, body, source_id=source_id)
        await add_reply(storage, source_id, "a reply", world)
        today.advance(1000)
        assert await expire(storage, today=today(), retention_days=90) == ExpiryResult(0, 0)
        assert await storage.source(source_id) is not None
        assert len(await storage.list_replies(source_id)) == 1
        stored = await storage.open_envelope(report)
        assert stored is not None
        with stored:
            assert stored.read_all() == body  # the report itself: never deleted for its age

        await storage.delete_envelope(report)  # fetched at last: now the source can expire
        assert await expire(storage, today=today(), retention_days=90) == ExpiryResult(1, 1)
    finally:
        await storage.close()


@pytest.mark.asyncio
async def test_a_report_arriving_during_expiry_keeps_its_source(world: World) -> None:
    today = Today(START)
    storage = await open_storage(world, today)
    try:
        source_id, _key = await create_source(storage)
        today.advance(200)
        cutoff = (today() - dt.timedelta(days=90)).isoformat()
        assert await storage.inactive_sources(cutoff) == [source_id]
        await commit_envelope(storage, seal([world.agency.public_key], "late"),
                              source_id=source_id)  # between the query and the deletion
        assert await storage.delete_source(source_id, last_visit_before=cutoff) is None
        assert await storage.source(source_id) is not None
    finally:
        await storage.close()


@pytest.mark.asyncio
async def test_a_login_restarts_the_period(aiohttp_client: Any, tmp_path: Path,
                                           agency_keys: AgencyKeys) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(data_dir, agency_keys, source_retention_days=30)
    today = Today(START)
    backend = Backend(config, clock=today)
    client = await aiohttp_client(create_app(config, backend=backend))
    storage = client.server.app[BACKEND].storage
    csrf = await get_csrf(client)
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS,
                                                  message="please call back"))
    code = code_from_receipt(await resp.text())
    [row] = await storage.list_envelopes()
    await storage.delete_envelope(row.id)
    assert row.source_id is not None
    source_id: str = row.source_id

    async def login() -> int:
        token = await get_csrf(client, "/login")
        answer = await client.post("/login", data={"csrf": token, "code": code},
                                   allow_redirects=False)
        return int(answer.status)

    today.advance(25)
    assert await login() == 303
    source = await storage.source(source_id)
    assert source is not None and source.last_visit_day == today().isoformat()
    assert source.created_day == START.isoformat()

    today.advance(30)  # 30 days since the login (55 since the report): kept
    await backend.maintenance.run_once()
    assert await storage.source(source_id) is not None
    today.advance(1)
    await backend.maintenance.run_once()
    assert await storage.source(source_id) is None
    assert await login() == 400  # the code is not known any more


@pytest.mark.asyncio
async def test_expiry_runs_at_start_up_and_then_daily(world: World) -> None:
    today = Today(START)
    storage = await open_storage(world, today)
    source_id, _key = await create_source(storage)
    await storage.close()

    today.advance(365)
    backend = Backend(world.config, clock=today)
    backend.maintenance = Maintenance(backend.storage, world.config.limits, clock=today,
                                      delay=lambda: 0.05)
    await backend.acquire()
    try:
        # Done before the server serves anything.
        assert backend.maintenance.runs == 1
        assert await backend.storage.source(source_id) is None
        other, _key = await create_source(backend.storage)
        today.advance(365)
        # A run may already be under way with the old day: wait for one that starts later.
        wanted = backend.maintenance.runs + 2
        for _ in range(200):
            await asyncio.sleep(0.02)
            if backend.maintenance.runs >= wanted:
                break
        assert backend.maintenance.runs >= wanted
        assert await backend.storage.source(other) is None
    finally:
        await backend.release()


@pytest.mark.asyncio
async def test_waiting_reports_are_logged_by_age_only(world: World,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    today = Today(START)
    storage = await open_storage(world, today)
    try:
        ids = []
        for age in (200, 40, 40, 10, 1):
            today.day = START - dt.timedelta(days=age)
            ids.append(await commit_envelope(storage, seal([world.agency.public_key], "x")))
        today.day = START
        caplog.set_level(logging.INFO, logger="dropbox_server.retention")
        await Maintenance(storage, Limits(), clock=today).run_once()
    finally:
        await storage.close()
    [record] = [r for r in caplog.records if r.name == "dropbox_server.retention"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("4 of 5 report(s) waiting to be fetched have waited 7 days or "
                              "more (1 received under 7 days ago, 1 received 7 to 29 days ago, "
                              "2 received 30 to 89 days ago, 1 received 90 days or more ago)")
    assert "never deleted" in message
    # Nothing that identifies a report: no id, no day.
    assert not any(i in message for i in ids)
    assert not re.search(r"\d{4}-\d{2}-\d{2}", message)


def test_age_buckets_and_messages() -> None:
    waiting = [("2025-01-10", 2), ("2025-01-03", 1), ("2024-12-01", 1), ("2024-10-12", 3),
               ("garbled", 1)]
    assert age_buckets(waiting, START) == {"under 7 days": 2, "7 to 29 days": 1,
                                           "30 to 89 days": 1, "90 days or more": 4}
    assert waiting_message([], START, 7) is None
    level, text = waiting_message([("2025-01-09", 3)], START, 7) or (0, "")
    assert level == logging.INFO and text == ("3 report(s) waiting to be fetched: 3 received "
                                              "under 7 days ago")


def test_the_daily_run_is_just_after_midnight_utc() -> None:
    now = dt.datetime(2025, 1, 10, 23, 0, tzinfo=dt.UTC)
    assert seconds_until_next_run(now) == 3600 + 300
    assert seconds_until_next_run(dt.datetime(2025, 1, 10, 0, 0, tzinfo=dt.UTC)) == 86400 + 300


def test_retention_settings(world: World) -> None:
    text = (world.data_dir / "dropbox.toml").read_text()
    assert "source_retention_days = 90" in text
    assert "unfetched_warning_days = 7" in text
    assert load_config(world.data_dir).limits.source_retention_days == 90
    (world.data_dir / "dropbox.toml").write_text(
        text.replace("source_retention_days = 90", "source_retention_days = 0"))
    with pytest.raises(ConfigError, match="source_retention_days must be at least 1"):
        load_config(world.data_dir)


def test_fetch_warns_about_reports_that_waited(world: World, start_server: Any, run: Any,
                                               tmp_path: Path) -> None:
    real_today = dt.datetime.now(dt.UTC).date()
    today = Today(real_today - dt.timedelta(days=10))

    async def populate() -> None:
        storage = await open_storage(world, today)
        try:
            await commit_envelope(storage, seal([world.agency.public_key], "ten days old"))
            today.day = real_today - dt.timedelta(days=30)
            await commit_envelope(storage, seal([world.agency.public_key], "thirty days old"))
            today.day = real_today
            await commit_envelope(storage, seal([world.agency.public_key], "new"))
        finally:
            await storage.close()
    asyncio.run(populate())
    server = start_server()
    common = ("fetch", "--server", server, "--identity", world.staff_key_file,
              "--passphrase-file", world.passphrase_file)

    result = run(*common, "--out", tmp_path / "inbox", "--json")
    assert result.code == 0, result.err
    oldest = (real_today - dt.timedelta(days=30)).isoformat()
    assert result.err.strip() == (
        f"warning: 2 report(s) had waited 7 days or more on the server (the oldest received "
        f"{oldest}). The server keeps reports until they are fetched: fetch more often.")
    assert len(json.loads(result.out)["fetched"]) == 3  # and they are fetched as usual

    result = run(*common, "--out", tmp_path / "inbox2", "--warn-after-days", "1")
    assert result.code == 0 and "warning" not in result.err  # nothing waiting any more
