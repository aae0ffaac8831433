"""Crash-safety harness: the real server as a subprocess on a real data folder, real clients
driving it, SIGKILL at random moments, and a ledger of what each client was told.

What the clients were told is the contract: a report counts as *acknowledged* once its receipt
page (no-JS form) or JSON answer (browser envelope) carrying the return code has been read in
full, and a reply once the staff API answered 201 with its id. Everything acknowledged must
survive any kill; anything else may or may not exist, but never half.

Each report carries a unique token in its message, so whatever the server lists or staff fetch
can be matched to what was sent by decrypting it with the agency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import random
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from client_cli.staffapi import StaffApiError, StaffClient
from dropbox_envelope import Decryptor, Encryptor, EnvelopeError
from dropbox_envelope.keys import SecretKey, StaffSecretKey
from dropbox_server.wrapping import StoredFile
from tests.server.forms import MULTIPART, File, code_from_receipt, multipart, report_parts
from tests.support import make_server_folder

PASSPHRASE = "crash test passphrase"
RECIPIENT = "city-police"
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_TOKEN = re.compile(r"crash-token-([0-9a-f]{16})")
_CODE = re.compile(r"\d{5}( \d{5}){4}")
# What a client sees when the server dies under it.
CONNECTION_ERRORS = (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError, OSError)


def new_token(rng: random.Random) -> str:
    return f"crash-token-{rng.getrandbits(64):016x}"


def token_of(text: str) -> str:
    match = _TOKEN.search(text)
    assert match, "a stored item without a crash token"
    return match.group(0)


# --- the world -------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    data_dir: Path
    staff_dir: Path
    inbox: Path
    agency: SecretKey
    staff: StaffSecretKey

    @property
    def db_path(self) -> Path:
        return self.data_dir / "db" / "dropbox.sqlite"


def make_world(root: Path) -> World:
    folder = make_server_folder(root / "server")
    staff_dir = root / "staff"
    folder.keep_keys(staff_dir, PASSPHRASE, agency=False)
    return World(folder.data, staff_dir, staff_dir / "inbox", folder.agency, folder.staff)


# --- the server process ----------------------------------------------------------------------

class ServerProcess:
    """``dropbox-server run --dev`` on free ports; SIGKILL or SIGTERM it."""

    def __init__(self, world: World, log: IO[bytes]) -> None:
        self.world = world
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.public = ""
        self.staff = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dropbox_server", "run", "--dev", "--data-dir",
            str(self.world.data_dir), "--port", "0", "--staff-port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        urls: dict[str, str] = {}

        async def read_urls() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            while line := (await self.proc.stdout.readline()).decode():
                key, _, value = line.partition(":")
                if key in ("public site", "staff API"):
                    urls[key] = value.strip().rstrip("/")
                if len(urls) == 2:
                    return
        await asyncio.wait_for(read_urls(), START_TIMEOUT)
        assert len(urls) == 2, f"the server did not start (exit {self.proc.returncode})"
        self.public, self.staff = urls["public site"], urls["staff API"]

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)


# --- the ledger ------------------------------------------------------------------------------

@dataclass
class Sent:
    token: str
    kind: str
    code: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.code is not None


@dataclass
class SentReply:
    token: str
    source_id: str
    sha256: str
    reply_id: str


@dataclass
class Ledger:
    """What clients sent and were told, and what the checks have seen of it."""

    reports: dict[str, Sent] = field(default_factory=dict)
    replies: list[SentReply] = field(default_factory=list)
    # Envelope id -> (token, source id) for every envelope downloaded and decrypted.
    envelopes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    inbox: dict[str, str] = field(default_factory=dict)  # inbox file name -> token
    unwrapped_replies: set[str] = field(default_factory=set)  # stored file checked once
    unexpected: list[str] = field(default_factory=list)  # responses that must never happen
    busy: int = 0
    interrupted_fetches: int = 0
    completed_fetches: int = 0

    @property
    def acknowledged(self) -> dict[str, Sent]:
        return {t: s for t, s in self.reports.items() if s.acknowledged}

    def sources(self) -> dict[str, str]:
        """Source id -> return code, for acknowledged reports whose envelope was seen."""
        by_token = {token: source for token, source in self.envelopes.values() if source}
        return {by_token[t]: s.code for t, s in self.acknowledged.items()
                if t in by_token and s.code is not None}


# --- clients ---------------------------------------------------------------------------------

@dataclass
class Clients:
    """The traffic of one server life: browsers, staff, and a background fetch."""

    world: World
    server: ServerProcess
    ledger: Ledger
    rng: random.Random
    large_share: float = 0.08

    def _attachment(self) -> bytes:
        if self.rng.random() < self.large_share:
            return self.rng.randbytes(self.rng.randint(2, 4) * 1024 * 1024)
        return self.rng.randbytes(self.rng.randint(0, 20_000))

    async def _csrf(self, browser: aiohttp.ClientSession) -> str:
        async with browser.get(f"{self.server.public}/report") as resp:
            match = _CSRF.search(await resp.text())
        assert match, "no csrf token on the report page"
        return match.group(1)

    def _record_status(self, what: str, status: int) -> None:
        if status == 503:
            self.ledger.busy += 1
        else:
            self.ledger.unexpected.append(f"{what}: HTTP {status}")

    async def form_report(self, browser: aiohttp.ClientSession) -> None:
        sent = Sent(new_token(self.rng), "form")
        self.ledger.reports[sent.token] = sent
        data = self._attachment()
        files = [File("attachments", "evidence.bin", data)] if data else []
        body = multipart(report_parts(await self._csrf(browser), recipient=RECIPIENT,
                                      answers={"what_happening": ["threats"]},
                                      message=f"report {sent.token}", files=files))
        async with browser.post(f"{self.server.public}/report", data=io.BytesIO(body),
                                headers={"Content-Type": MULTIPART}) as resp:
            page = await resp.text()
            if resp.status != 200:
                self._record_status("form report", resp.status)
                return
        sent.code = code_from_receipt(page)  # the receipt reached the person: acknowledged

    async def envelope_report(self, browser: aiohttp.ClientSession) -> None:
        sent = Sent(new_token(self.rng), "envelope")
        self.ledger.reports[sent.token] = sent
        encryptor = Encryptor([self.world.agency.public_key])
        pieces = encryptor.add_attachment("scan.pdf", "application/pdf", self._attachment())
        pieces += list(encryptor.finish(kind="report", language="en",
                                        message=f"envelope {sent.token}"))
        token = await self._csrf(browser)
        async with browser.post(f"{self.server.public}/submit/envelope?recipient={RECIPIENT}",
                                data=io.BytesIO(b"".join(pieces)),
                                headers={"Content-Type": "application/octet-stream",
                                         "X-CSRF-Token": token}) as resp:
            if resp.status != 200:
                await resp.read()
                self._record_status("envelope upload", resp.status)
                return
            doc = await resp.json()
        assert doc.get("status") == "received" and _CODE.fullmatch(doc.get("code", "")), doc
        sent.code = doc["code"]

    async def staff_reply(self, api: StaffClient) -> None:
        sources = sorted(self.ledger.sources())
        if not sources:
            await asyncio.sleep(0.05)
            return
        source_id = self.rng.choice(sources)
        info = await api.source(source_id)
        token = new_token(self.rng)
        encryptor = Encryptor([info.public_key])
        envelope = b"".join(encryptor.finish(kind="reply", language="en",
                                             message=f"reply {token}"))
        reply_id = await api.send_reply(source_id, envelope)
        self.ledger.replies.append(SentReply(token, source_id,
                                             hashlib.sha256(envelope).hexdigest(), reply_id))

    async def loop(self, step: Callable[[Any], Awaitable[None]], session: Any,
                   pause: float) -> None:
        """Repeat ``step``, pausing up to ``pause`` seconds in between (people, not a
        benchmark: the kills matter, not the volume), until the server dies or the task is
        cancelled."""
        try:
            while True:
                await step(session)
                await asyncio.sleep(self.rng.uniform(0, pause))
        except (*CONNECTION_ERRORS, StaffApiError):
            return

    async def traffic(self) -> None:
        """Browsers and a staff member at once, until cancelled or the server is gone."""
        async with contextlib.AsyncExitStack() as stack:
            browsers = [await stack.enter_async_context(aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=REQUEST_TIMEOUT))
                for _ in range(2)]
            api = await stack.enter_async_context(StaffClient(self.server.staff,
                                                              self.world.staff))
            await asyncio.gather(self.loop(self.form_report, browsers[0], 0.1),
                                 self.loop(self.envelope_report, browsers[1], 0.1),
                                 self.loop(self.staff_reply, api, 0.5))


async def start_fetch(world: World, server: ServerProcess) -> asyncio.subprocess.Process:
    """`dropbox-client fetch` (verbose: one line per envelope fetched and acknowledged)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client_cli", "fetch", "--server", server.staff,
        "--identity", str(world.staff_dir / "alice.key"),
        "--passphrase-file", str(world.staff_dir / "pass.txt"), "--out", str(world.inbox),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def wait_for_lines(proc: asyncio.subprocess.Process, prefix: str, count: int) -> None:
    """Return once ``proc`` printed ``count`` lines starting with ``prefix`` (or ended)."""
    assert proc.stdout is not None
    seen = 0
    while seen < count and (line := await proc.stdout.readline()):
        seen += line.decode().startswith(prefix)


# --- checks ----------------------------------------------------------------------------------

def open_envelope(data: bytes, key: SecretKey) -> str:
    """The message of an envelope (every chunk authenticated); raises EnvelopeError."""
    decryptor = Decryptor([key])
    decryptor.feed(data)
    return decryptor.close().message


def integrity_ok(db_path: Path) -> str:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def reply_rows(db_path: Path) -> dict[str, tuple[str, str, bytes]]:
    """Reply id -> (source id, SHA-256 of the envelope, at-rest key)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {r[0]: (r[1], r[2], bytes(r[3])) for r in db.execute(
            "SELECT id, source_id, sha256, wrap_key FROM replies")}
    finally:
        db.close()


def stored_ids(folder: Path) -> set[str]:
    return {p.name.removesuffix(".srdb") for p in folder.iterdir()}


class Checker:
    """The assertions made after every restart, and at the end."""

    def __init__(self, world: World, server: ServerProcess, ledger: Ledger, where: str) -> None:
        self.world = world
        self.server = server
        self.ledger = ledger
        self.where = where  # for messages: the cycle and the seed

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.where}: {message}")

    def after_start(self) -> None:
        """Before any request: start-up removed interrupted uploads, the database is sound."""
        leftovers = sorted(p.name for p in (self.world.data_dir / "tmp").iterdir())
        if leftovers:
            raise self.fail(f"tmp/ not empty after start-up: {leftovers}")
        integrity = integrity_ok(self.world.db_path)
        if integrity != "ok":
            raise self.fail(f"PRAGMA integrity_check: {integrity}")

    async def listed_envelopes(self) -> set[str]:
        """Every listed envelope downloads whole, matches its listing and decrypts; the store
        holds exactly the listed files. Returns the listed ids."""
        async with StaffClient(self.server.staff, self.world.staff) as api:
            listings = await api.list_envelopes()
            for listing in listings:
                if listing.id in self.ledger.envelopes:
                    continue
                out = io.BytesIO()
                await api.download(listing, out)
                data = out.getvalue()
                if (len(data), hashlib.sha256(data).hexdigest()) != (listing.size,
                                                                      listing.sha256):
                    raise self.fail(f"envelope {listing.id} is served differently than listed")
                try:
                    message = open_envelope(data, self.world.agency)
                except EnvelopeError as exc:
                    raise self.fail(f"listed envelope {listing.id} does not decrypt: "
                                    f"{exc}") from None
                self.ledger.envelopes[listing.id] = (token_of(message), listing.source_id)
        listed = {e.id for e in listings}
        on_disk = stored_ids(self.world.data_dir / "store" / "envelopes")
        if on_disk != listed:
            raise self.fail(f"store/envelopes and the listing differ: files not listed "
                            f"{sorted(on_disk - listed)}, listed without file "
                            f"{sorted(listed - on_disk)}")
        return listed

    def read_inbox(self) -> None:
        if not self.world.inbox.exists():
            return
        for path in sorted(self.world.inbox.glob("*.srdb")):
            if path.name not in self.ledger.inbox:
                try:
                    message = open_envelope(path.read_bytes(), self.world.agency)
                except EnvelopeError as exc:
                    raise self.fail(f"fetched envelope {path.name} does not decrypt: "
                                    f"{exc}") from None
                self.ledger.inbox[path.name] = token_of(message)

    def each_report_once(self, listed: set[str]) -> None:
        """Every acknowledged report is listed or in the inbox; no report is there twice."""
        holders: dict[str, set[str]] = {}
        for envelope_id in listed:
            holders.setdefault(self.ledger.envelopes[envelope_id][0], set()).add(envelope_id)
        for name, token in self.ledger.inbox.items():
            holders.setdefault(token, set()).add(name.removesuffix(".srdb"))
        twice = {t: ids for t, ids in holders.items() if len(ids) > 1}
        if twice:
            raise self.fail(f"reports stored more than once: {twice}")
        lost = [s for t, s in self.ledger.acknowledged.items() if t not in holders]
        if lost:
            raise self.fail(f"{len(lost)} acknowledged report(s) lost: {lost[:5]}")

    def replies_stored(self) -> None:
        rows = reply_rows(self.world.db_path)
        on_disk = stored_ids(self.world.data_dir / "store" / "replies")
        if on_disk != set(rows):
            raise self.fail(f"store/replies and the database differ: "
                            f"{sorted(on_disk ^ set(rows))}")
        for reply in self.ledger.replies:
            row = rows.get(reply.reply_id)
            if row is None or row[:2] != (reply.source_id, reply.sha256):
                raise self.fail(f"acknowledged reply {reply.reply_id} is missing or changed")
            if reply.reply_id in self.ledger.unwrapped_replies:
                continue  # a committed file never changes; its row was just checked
            path = self.world.data_dir / "store" / "replies" / f"{reply.reply_id}.srdb"
            try:
                with StoredFile.open(path, row[2]) as stored:
                    data = stored.read_all()
            except EnvelopeError as exc:
                raise self.fail(f"reply {reply.reply_id}: the stored file does not unwrap: "
                                f"{exc}") from None
            if hashlib.sha256(data).hexdigest() != reply.sha256:
                raise self.fail(f"reply {reply.reply_id}: the stored file is not what was sent")
            self.ledger.unwrapped_replies.add(reply.reply_id)

    async def replies_served(self, replies: list[SentReply]) -> None:
        """The source logs in with its code and reads each reply (decrypted by the server)."""
        codes = self.ledger.sources()
        by_source: dict[str, list[SentReply]] = {}
        for reply in replies:
            by_source.setdefault(reply.source_id, []).append(reply)
        for source_id, items in by_source.items():
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=REQUEST_TIMEOUT) as browser:
                async with browser.get(f"{self.server.public}/login") as resp:
                    match = _CSRF.search(await resp.text())
                assert match
                async with browser.post(f"{self.server.public}/login",
                                        data={"csrf": match.group(1),
                                              "code": codes[source_id]}) as resp:
                    page = await resp.text()
                    if resp.url.path != "/conversation":
                        raise self.fail(f"source {source_id} cannot log in (HTTP "
                                        f"{resp.status})")
            for reply in items:
                if reply.token not in page:
                    raise self.fail(f"reply {reply.reply_id} is not shown to its source")

    async def all(self, *, sample: int | None) -> set[str]:
        listed = await self.listed_envelopes()
        self.read_inbox()
        self.each_report_once(listed)
        self.replies_stored()
        replies = self.ledger.replies
        if sample is not None and len(replies) > sample:
            replies = random.Random(len(replies)).sample(replies, sample)
        await self.replies_served(replies)
        if self.ledger.unexpected:
            raise self.fail(f"unexpected responses: {self.ledger.unexpected[:5]}")
        return listed


def dump_state(world: World) -> str:
    """A short description of the data folder, for failure messages."""
    lines = []
    for folder in ("store/envelopes", "store/replies", "tmp"):
        path = world.data_dir / folder
        lines.append(f"{folder}: {len(os.listdir(path)) if path.exists() else '-'} files")
    return "; ".join(lines)
