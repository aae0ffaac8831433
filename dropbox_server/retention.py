"""Retention without silent loss (docs/PROTOCOL.md §11.5).

* An acknowledged report is deleted at once (the staff ``ack``), not here.
* A source that has not logged in for ``[server] source_retention_days`` (default 90, counted
  in whole days from ``last_visit_day``) is deleted with its replies, which are crypto-erased;
  but never while a report of theirs is still waiting to be fetched.
* A report is never deleted for its age. Instead the server log warns, at start-up and daily,
  with counts by age bucket only (nothing that identifies a report or a source), and
  ``dropbox-client fetch`` warns when it finds old ones.

:class:`Maintenance` runs all this once when the server starts (before it serves) and then once
a day, just after midnight UTC, in a background task owned by the Backend (opened and closed
from the apps' ``cleanup_ctx``). The same run sets the stored files' times to the epoch again
and finishes any WAL checkpoint that a deletion still owes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .config import Limits
from .storage import Clock, Storage, utc_today

__all__ = ["AGE_BUCKETS", "ExpiryResult", "Maintenance", "age_buckets", "expire",
           "seconds_until_next_run", "waiting_message"]

log = logging.getLogger(__name__)

AGE_BUCKETS: tuple[tuple[int, str], ...] = (
    (0, "under 7 days"),
    (7, "7 to 29 days"),
    (30, "30 to 89 days"),
    (90, "90 days or more"),
)
"""(minimum age in days, label): how waiting reports are counted in the log."""

RUN_AFTER_MIDNIGHT = 300  # seconds past 00:00 UTC


@dataclass(frozen=True)
class ExpiryResult:
    sources: int = 0
    replies: int = 0


async def expire(storage: Storage, *, today: dt.date, retention_days: int) -> ExpiryResult:
    """Delete sources last seen more than ``retention_days`` days before ``today`` that have no
    report waiting, with their replies."""
    if retention_days < 1:
        raise ValueError("the retention period is at least one day")
    cutoff = (today - dt.timedelta(days=retention_days)).isoformat()
    sources = replies = 0
    for source_id in await storage.inactive_sources(cutoff):
        erased = await storage.delete_source(source_id, last_visit_before=cutoff)
        if erased is not None:
            sources += 1
            replies += erased
    return ExpiryResult(sources, replies)


def age_buckets(waiting: list[tuple[str, int]], today: dt.date) -> dict[str, int]:
    """Counts of waiting reports per :data:`AGE_BUCKETS` label (empty buckets included)."""
    counts = {label: 0 for _age, label in AGE_BUCKETS}
    for day, count in waiting:
        try:
            age = (today - dt.date.fromisoformat(day)).days
        except ValueError:
            age = AGE_BUCKETS[-1][0]  # an unreadable day is treated as old: warn rather than hide
        label = next(label for minimum, label in reversed(AGE_BUCKETS) if age >= minimum)
        counts[label] += count
    return counts


def waiting_message(waiting: list[tuple[str, int]], today: dt.date,
                    warn_after_days: int) -> tuple[int, str] | None:
    """(log level, message) about the reports waiting to be fetched, or None if there are
    none. A warning when any waited ``warn_after_days`` or longer."""
    total = sum(count for _day, count in waiting)
    if not total:
        return None
    old = sum(count for day, count in waiting
              if _age(day, today) >= warn_after_days)
    buckets = ", ".join(f"{count} received {label} ago"
                        for label, count in age_buckets(waiting, today).items() if count)
    if not old:
        return logging.INFO, f"{total} report(s) waiting to be fetched: {buckets}"
    return logging.WARNING, (
        f"{old} of {total} report(s) waiting to be fetched have waited {warn_after_days} days "
        f"or more ({buckets}). Reports are never deleted until staff fetch them: ask them to "
        "run `dropbox-client fetch`.")


def _age(day: str, today: dt.date) -> int:
    try:
        return (today - dt.date.fromisoformat(day)).days
    except ValueError:
        return 1 << 30


def seconds_until_next_run(now: dt.datetime | None = None) -> float:
    """Seconds from ``now`` (UTC) until the next run, a few minutes after midnight UTC."""
    now = now or dt.datetime.now(dt.UTC)
    next_day = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return (next_day - now).total_seconds() + RUN_AFTER_MIDNIGHT


class Maintenance:
    """Expiry, the waiting-reports log line, file times and owed checkpoints: once at start-up,
    then daily in a background task."""

    def __init__(self, storage: Storage, limits: Limits, *, clock: Clock = utc_today,
                 delay: Callable[[], float] = seconds_until_next_run) -> None:
        self._storage = storage
        self._limits = limits
        self._clock = clock
        self._delay = delay
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    async def run_once(self) -> ExpiryResult:
        today = self._clock()
        storage = self._storage
        result = await expire(storage, today=today,
                              retention_days=self._limits.source_retention_days)
        if result.sources:
            log.info("retention: deleted %d source(s) not seen for more than %d days, with "
                     "%d reply(ies)", result.sources, self._limits.source_retention_days,
                     result.replies)
        message = waiting_message(await storage.waiting_days(), today,
                                  self._limits.unfetched_warning_days)
        if message is not None:
            log.log(message[0], "%s", message[1])
        await storage.normalise_stored_times()
        # Also after a crash, whose WAL may still hold deleted rows' keys.
        await storage.settle_erasure(force=True)
        self.runs += 1
        return result

    async def start(self) -> None:
        """Run once now (the server does not serve before this is done), then daily."""
        await self.run_once()
        self._task = asyncio.create_task(self._daily(), name="srdb-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _daily(self) -> None:
        while True:
            await asyncio.sleep(self._delay())
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Keep serving; the next day's run tries again.
                log.exception("daily maintenance failed")
