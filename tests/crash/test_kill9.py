"""SIGKILL the real server at random moments under load; nothing acknowledged is ever lost,
nothing half-written is ever listed or served, and an interrupted staff fetch, run again, gets
each report exactly once.

Each cycle starts ``dropbox-server run --dev`` on the same data folder, checks the folder as
start-up left it (tmp/ empty, ``PRAGMA integrity_check``), checks everything acknowledged so far
(see tests/crash/harness.py), then lets browsers (no-JS form and browser-sealed envelopes, mostly
small, some of a few MB) and a staff member (replies) work against it, sometimes alongside
`dropbox-client fetch`, and kills it with SIGKILL after a random delay, or in the middle of the
fetch. At the end a last fetch runs to completion and the inbox is compared with the receipts.

``SRDB_CRASH_KILLS`` sets the number of kills (default 50); ``SRDB_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from pathlib import Path

import pytest

from dropbox_server.audit import audit
from tests.crash.harness import (
    Checker,
    Clients,
    Ledger,
    ServerProcess,
    dump_state,
    integrity_ok,
    make_world,
    start_fetch,
    wait_for_lines,
)

KILLS = int(os.environ.get("SRDB_CRASH_KILLS", "50"))
SEED = int(os.environ.get("SRDB_CRASH_SEED", str(random.SystemRandom().getrandbits(32))))
FETCH_EVERY = 4  # one cycle in four runs `dropbox-client fetch` and kills the server during it
REPLIES_CHECKED_PER_CYCLE = 2


async def one_life(cycle: int, clients: Clients, checker: Checker, rng: random.Random) -> None:
    """Check what the last kill left, then work until the next SIGKILL."""
    server, world, ledger = clients.server, clients.world, clients.ledger
    await server.start()
    checker.after_start()
    waiting = await checker.all(sample=REPLIES_CHECKED_PER_CYCLE)
    traffic = asyncio.create_task(clients.traffic())
    fetch = None
    try:
        if cycle % FETCH_EVERY == FETCH_EVERY - 1:
            fetch = await start_fetch(world, server)
            # Kill it after it acknowledged some of the waiting envelopes, while the next one
            # is in flight (or, now and then, once it got through them all).
            lines = rng.randint(1, max(1, len(waiting)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_lines(fetch, "fetched ", lines), 8)
            await asyncio.sleep(rng.uniform(0, 0.03))
        else:
            await asyncio.sleep(rng.uniform(0.02, 0.4))
    finally:
        await server.kill()
        traffic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await traffic
        if fetch is not None:
            await asyncio.wait_for(fetch.communicate(), 30)
            if fetch.returncode == 0:
                ledger.completed_fetches += 1
            else:
                ledger.interrupted_fetches += 1


async def final_fetch(clients: Clients, checker: Checker) -> None:
    """A last fetch that runs to completion: the inbox then holds every report exactly once."""
    server, world, ledger = clients.server, clients.world, clients.ledger
    await server.start()
    checker.after_start()
    await checker.all(sample=None)
    fetch = await start_fetch(world, server)
    _out, err = await asyncio.wait_for(fetch.communicate(), 60)
    assert fetch.returncode == 0, err.decode()
    ledger.completed_fetches += 1
    listed = await checker.all(sample=None)
    assert listed == set(), "the final fetch left envelopes on the server"
    assert not list(world.inbox.glob(".*.part")), "partial downloads left in the inbox"
    inbox_tokens = list(ledger.inbox.values())
    assert len(inbox_tokens) == len(set(inbox_tokens)), "a report was fetched twice"
    assert set(ledger.acknowledged) <= set(inbox_tokens)
    await server.stop()


@pytest.mark.asyncio
async def test_sigkill_at_random_points(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    world = make_world(tmp_path)
    ledger = Ledger()
    started = time.monotonic()
    with open(tmp_path / "server.log", "wb") as log:
        server = ServerProcess(world, log)
        clients = Clients(world, server, ledger, rng)
        try:
            for cycle in range(KILLS):
                checker = Checker(world, server, ledger,
                                  f"after kill {cycle} (SRDB_CRASH_SEED={SEED})")
                try:
                    await one_life(cycle, clients, checker, rng)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{dump_state(world)}") from None
            await final_fetch(clients, Checker(world, server, ledger,
                                               f"final check (SRDB_CRASH_SEED={SEED})"))
        finally:
            await server.kill()
    assert integrity_ok(world.db_path) == "ok"
    findings = audit(world.data_dir).flags
    assert not findings, findings

    acknowledged = len(ledger.acknowledged)
    # Stored but the receipt never reached the person: the kill fell between commit and reply.
    unacknowledged_kept = len(set(ledger.inbox.values()) - set(ledger.acknowledged))
    print(f"\n{KILLS} kills in {time.monotonic() - started:.0f} s (seed {SEED}): "
          f"{len(ledger.reports)} reports sent, {acknowledged} acknowledged, "
          f"{len(ledger.inbox)} fetched ({unacknowledged_kept} stored without a receipt), "
          f"{len(ledger.replies)} replies, {ledger.busy} busy, "
          f"fetches interrupted/completed {ledger.interrupted_fetches}/"
          f"{ledger.completed_fetches}")
    # The run must have exercised what it claims to.
    assert acknowledged >= KILLS
    assert len(ledger.reports) > acknowledged  # some submissions were cut by a kill
    assert ledger.replies
    if KILLS >= 2 * FETCH_EVERY:
        assert ledger.interrupted_fetches >= 1
