"""``dropbox-client fetch``: download new envelopes into an inbox folder, then acknowledge them.

The server deletes an envelope once it is acknowledged, so the order is what makes a fetch
safe to interrupt anywhere and run again (nothing lost, nothing twice):

1. download into ``INBOX/.<id>.srdb.part`` (resumed with a Range request if it exists);
2. check the size, the ETag and the SHA-256 of what is on disk, and fsync it;
3. write the sidecar ``INBOX/<id>.meta.json`` (server metadata ``decrypt`` reads, plus what
   this fetch knows: the day, the staff key's fingerprint and, for an envelope from a returning
   source, the source's reply public key, so that replies can be sealed offline);
4. rename the part to ``INBOX/<id>.srdb`` and fsync the folder;
5. only then acknowledge.

An envelope whose ``<id>.srdb`` is already in the inbox with the right size and SHA-256 (a run
stopped between 4 and 5) is acknowledged without downloading it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dropbox_envelope.keys import StaffSecretKey

from . import tor
from .errors import CliError, describe_error, one_line
from .fsutil import fsync_dir
from .progress import Progress
from .staffapi import (
    ConnectorFactory,
    EnvelopeListing,
    NotFound,
    ServerUnreachable,
    SignatureRejected,
    StaffApiError,
    StaffClient,
    add_connection_arguments,
    load_staff_identity,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inbox lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["FetchSummary", "fetch_inbox", "register", "run"]

ENVELOPE_SUFFIX = ".srdb"
SIDECAR_SUFFIX = ".meta.json"
LOCK_NAME = ".fetch.lock"
HASH_BLOCK = 1024 * 1024
WARN_AFTER_DAYS = 7


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fetch", help="download new envelopes from the server into an inbox folder",
        description="Download every new envelope into INBOX as <id>.srdb with its server "
                    "metadata <id>.meta.json, verify its SHA-256, and only then tell the server "
                    "to delete its copy. Safe to interrupt and run again.")
    add_connection_arguments(parser)
    tor.add_arguments(parser)
    parser.add_argument("--out", metavar="INBOX", type=Path, required=True,
                        help="the inbox folder (created if missing)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary on standard output")
    parser.add_argument("--warn-after-days", metavar="N", type=int, default=WARN_AFTER_DAYS,
                        help="warn about reports that waited N days or more on the server "
                             f"(default {WARN_AFTER_DAYS})")
    parser.set_defaults(func=run)


@dataclass
class FetchSummary:
    """What one fetch did: envelopes downloaded, ones already here (just acknowledged), and
    failures (not acknowledged: still on the server for the next run)."""

    inbox: Path
    fetched: list[EnvelopeListing] = field(default_factory=list)
    skipped: list[EnvelopeListing] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Listed with a received day N or more days ago: the server never deletes them unfetched.
    aged: list[EnvelopeListing] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"inbox": str(self.inbox), "ok": self.ok,
                "fetched": [e.id for e in self.fetched],
                "skipped": [e.id for e in self.skipped],
                "errors": [{"envelope_id": i, "error": m} for i, m in self.errors]}


# --- files -----------------------------------------------------------------------------------

def _paths(inbox: Path, envelope_id: str) -> tuple[Path, Path, Path]:
    """(final envelope, sidecar, partial download)."""
    return (inbox / f"{envelope_id}{ENVELOPE_SUFFIX}", inbox / f"{envelope_id}{SIDECAR_SUFFIX}",
            inbox / f".{envelope_id}{ENVELOPE_SUFFIX}.part")


def _file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256) of a regular file, refusing symlinks."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise CliError(f"{path} is not a regular file")
        digest = hashlib.sha256()
        size = 0
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _write_sidecar(path: Path, listing: EnvelopeListing, extra: dict[str, Any]) -> None:
    data = (json.dumps(listing.sidecar() | extra, indent=2) + "\n").encode("ascii")
    with contextlib.suppress(FileNotFoundError):
        if not path.is_symlink() and path.read_bytes() == data:
            return
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _inbox_lock(inbox: Path) -> Iterator[None]:
    """One fetch per inbox at a time (two would race on the same partial files)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(inbox / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"another fetch is already using {inbox}; wait for it to finish") \
                from None
        yield
    finally:
        os.close(fd)


# --- one envelope ----------------------------------------------------------------------------

async def _download(api: StaffClient, listing: EnvelopeListing, part: Path) -> None:
    """Bring ``part`` to the complete, verified envelope (resuming it), fsync'd."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "r+b") as out:
        have = os.fstat(out.fileno()).st_size
        if have > listing.size:  # not this envelope's bytes, whatever it is
            out.truncate(0)
            have = 0
        if have < listing.size:
            out.seek(have)
            with Progress(f"downloading {listing.id}", listing.size) as progress:
                progress(have)
                await api.download(listing, out, offset=have, progress=progress)
        out.flush()
        os.fsync(out.fileno())
    size, sha256 = _file_digest(part)
    if (size, sha256) != (listing.size, listing.sha256):
        part.unlink()
        raise CliError(f"envelope {listing.id}: the downloaded file's SHA-256 does not match "
                       "the server's record (damaged in transit, or the server's copy changed); "
                       "it was not acknowledged and will be downloaded again next time")


@dataclass
class _Custody:
    """What the sidecar records beyond the server's listing (see the module docstring)."""

    fetched_by: str
    source_keys: dict[str, str | None] = field(default_factory=dict)

    async def sidecar_fields(self, api: StaffClient, listing: EnvelopeListing) -> dict[str, Any]:
        extra: dict[str, Any] = {"fetched_day": dt.datetime.now(dt.UTC).date().isoformat(),
                                 "fetched_by": self.fetched_by}
        source_id = listing.source_id
        if source_id is not None:
            if source_id not in self.source_keys:  # one request per source and run
                try:
                    self.source_keys[source_id] = (await api.source(source_id)).public_key.encode()
                except NotFound:  # the source is gone: nothing to reply to
                    self.source_keys[source_id] = None
            if self.source_keys[source_id] is not None:
                extra["source_public_key"] = self.source_keys[source_id]
        return extra


async def _fetch_one(api: StaffClient, listing: EnvelopeListing, inbox: Path,
                     custody: _Custody) -> Literal["fetched", "skipped"]:
    final, sidecar, part = _paths(inbox, listing.id)
    extra = await custody.sidecar_fields(api, listing)
    outcome: Literal["fetched", "skipped"]
    if os.path.lexists(final):
        if _file_digest(final) != (listing.size, listing.sha256):
            raise CliError(f"{final} already exists but differs from the server's envelope "
                           f"{listing.id}; it was not acknowledged. Move the file away and "
                           "fetch again.")
        outcome = "skipped"
        _write_sidecar(sidecar, listing, extra)
        fsync_dir(inbox)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    else:
        outcome = "fetched"
        await _download(api, listing, part)
        _write_sidecar(sidecar, listing, extra)  # before the envelope: decrypt expects it to exist
        os.rename(part, final)  # final does not exist, and the inbox lock is ours
        fsync_dir(inbox)
    await api.ack(listing.id)
    return outcome


# --- the command -----------------------------------------------------------------------------

def _report(kind: str, listing: EnvelopeListing, inbox: Path) -> None:
    source = f", source {listing.source_id}" if listing.source_id else ""
    if kind == "fetched":
        print(f"fetched {listing.id} ({listing.size} bytes{source}) -> "
              f"{one_line(str(inbox / (listing.id + ENVELOPE_SUFFIX)))}", flush=True)
    else:
        print(f"already in the inbox, acknowledged: {listing.id}", flush=True)


async def _fetch_all(api: StaffClient, inbox: Path, *, verbose: bool,
                     fetched_by: str, warn_after_days: int, today: dt.date) -> FetchSummary:
    summary = FetchSummary(inbox)
    custody = _Custody(fetched_by)
    listings = await api.list_envelopes()
    summary.aged = [e for e in listings
                    if (today - dt.date.fromisoformat(e.day)).days >= warn_after_days]
    for listing in listings:
        try:
            outcome = await _fetch_one(api, listing, inbox, custody)
        except (StaffApiError, CliError, OSError) as exc:
            message = describe_error(exc)
            summary.errors.append((listing.id, message))
            if verbose:
                print(f"error: {listing.id}: {message}", file=sys.stderr, flush=True)
            if isinstance(exc, ServerUnreachable | SignatureRejected):
                break  # every other envelope would fail the same way
            continue
        (summary.fetched if outcome == "fetched" else summary.skipped).append(listing)
        if verbose:
            _report(outcome, listing, inbox)
    return summary


def fetch_inbox(server_url: str, key: StaffSecretKey, inbox: Path, *,
                connector: ConnectorFactory | None = None, verbose: bool = False,
                warn_after_days: int = WARN_AFTER_DAYS,
                today: dt.date | None = None) -> FetchSummary:
    """Fetch every new envelope from ``server_url`` into ``inbox``; per-envelope failures are in
    the summary, a failure to list at all (unreachable, signature refused) raises."""
    inbox.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def main() -> FetchSummary:
        async with StaffClient(server_url, key, connector=connector) as api:
            return await _fetch_all(api, inbox, verbose=verbose,
                                    fetched_by=key.public_key.fingerprint,
                                    warn_after_days=warn_after_days,
                                    today=today or dt.datetime.now(dt.UTC).date())

    with _inbox_lock(inbox):
        return asyncio.run(main())


def run(args: argparse.Namespace) -> int:
    connector = tor.connector_from_args(args)
    key = load_staff_identity(args.identity, args.passphrase_file)
    summary = fetch_inbox(args.server, key, args.out, verbose=not args.json,
                          connector=connector, warn_after_days=args.warn_after_days)
    if summary.aged:
        oldest = min(e.day for e in summary.aged)
        print(f"warning: {len(summary.aged)} report(s) had waited {args.warn_after_days} days "
              f"or more on the server (the oldest received {oldest}). The server keeps "
              "reports until they are fetched: fetch more often.", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(summary.to_json()), flush=True)
    elif not summary.fetched and not summary.skipped and summary.ok:
        print("no new envelopes", flush=True)
    else:
        print(f"{len(summary.fetched)} fetched, {len(summary.skipped)} already here, "
              f"{len(summary.errors)} failed; inbox: {one_line(str(summary.inbox))}", flush=True)
    return 0 if summary.ok else 1
