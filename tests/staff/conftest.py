"""Fixtures for the staff API and the online client commands (fetch, reply).

Everything is real: a data folder with its ``dropbox.toml`` (written by ``render_config``),
keys made with the test KDF, envelopes sealed by ``dropbox_envelope`` and committed through
``Storage`` exactly as the public site would, the staff app from ``create_app`` for the API
tests, and ``python -m dropbox_server run --dev`` in a subprocess for the command tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from dropbox_envelope.codes import generate_code, new_credentials
from dropbox_envelope.keys import TEST_KDF, PublicKey, SecretKey, StaffSecretKey, lock_secret_key
from dropbox_envelope.staffauth import sign_request
from dropbox_envelope.streams import AttachmentSource, encrypt
from dropbox_server.app import create_app
from dropbox_server.appkeys import BACKEND, STAFF_APP
from dropbox_server.backend import Backend
from dropbox_server.config import Config, load_config, render_config
from dropbox_server.staff import HEADER_BODY_SHA256
from dropbox_server.storage import Storage

# The CLI runner's types, for the tests here that take the ``run`` fixture (tests/conftest.py).
from tests.support import Result as Result
from tests.support import Run as Run

PASSPHRASE = "staff test passphrase"
RECIPIENT = "city-police"
SERVER_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class World:
    """A configured server data folder, and the staff machine's key files."""

    data_dir: Path
    config: Config
    staff: StaffSecretKey  # listed under [[staff]] as "alice"
    stranger: StaffSecretKey  # a valid key the server has never heard of
    agency: SecretKey  # the recipient's encryption key
    staff_key_file: Path
    agency_key_file: Path
    passphrase_file: Path

    @property
    def envelopes_dir(self) -> Path:
        return self.data_dir / "store" / "envelopes"

    @property
    def replies_dir(self) -> Path:
        return self.data_dir / "store" / "replies"


@pytest.fixture
def world(tmp_path: Path) -> World:
    data_dir = tmp_path / "server"
    (data_dir / "keys").mkdir(parents=True)
    agency, staff, stranger = (SecretKey.generate(), StaffSecretKey.generate(),
                               StaffSecretKey.generate())
    (data_dir / "keys" / "agency.pub").write_text(agency.public_key.encode() + "\n")
    (data_dir / "keys" / "alice.pub").write_text(staff.public_key.encode() + "\n")
    (data_dir / "dropbox.toml").write_text(render_config(
        [("City Police", "", ["keys/agency.pub"])], [("alice", "keys/alice.pub")]))
    config = load_config(data_dir)
    assert config.recipients[0].id == RECIPIENT

    machine = tmp_path / "staff-machine"
    machine.mkdir()
    passphrase_file = machine / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE + "\n")
    staff_key_file, agency_key_file = machine / "alice.key", machine / "agency.key"
    staff_key_file.write_text(lock_secret_key(staff, PASSPHRASE, name="alice", params=TEST_KDF))
    agency_key_file.write_text(lock_secret_key(agency, PASSPHRASE, name="agency",
                                               params=TEST_KDF))
    return World(data_dir, config, staff, stranger, agency, staff_key_file, agency_key_file,
                 passphrase_file)


# --- envelopes and sources -------------------------------------------------------------------

def seal(recipients: Sequence[PublicKey], message: str,
         attachments: Sequence[tuple[str, bytes]] = (), *, kind: str = "report") -> bytes:
    """A whole envelope in memory, made by the real sealing code."""
    out = io.BytesIO()
    encrypt(out, list(recipients), kind="reply" if kind == "reply" else "report",
            message=message,
            attachments=[AttachmentSource(name, "application/octet-stream", io.BytesIO(data))
                         for name, data in attachments])
    return out.getvalue()


async def commit_envelope(storage: Storage, data: bytes, *,
                          source_id: str | None = None) -> str:
    """Store an envelope the way the public site does (upload, then commit)."""
    upload = storage.new_upload()
    upload.write(data)
    envelope_id, _source = await storage.commit_envelope(upload, recipient=RECIPIENT,
                                                         source_id=source_id)
    return envelope_id


async def create_source(storage: Storage) -> tuple[str, SecretKey]:
    """A source row made from a fresh return code; returns its id and reply secret key."""
    code = generate_code()
    credentials = new_credentials(code, TEST_KDF)
    source_id = await storage.create_source(code.locator, credentials, RECIPIENT)
    return source_id, credentials.secret_key


@contextlib.contextmanager
def open_storage(data_dir: Path) -> Iterator[tuple[Storage, asyncio.AbstractEventLoop]]:
    """The data folder's storage, opened from synchronous test code (no server running)."""
    loop = asyncio.new_event_loop()
    storage = Storage(data_dir)
    try:
        loop.run_until_complete(storage.open())
        try:
            yield storage, loop
        finally:
            loop.run_until_complete(storage.close())
    finally:
        loop.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemorySink:
    """An ``AttachmentSink`` keeping decrypted attachments in memory."""

    def __init__(self) -> None:
        self.files: dict[int, io.BytesIO] = {}

    def open(self, index: int) -> io.BytesIO:
        return self.files.setdefault(index, io.BytesIO())

    def done(self, index: int, size: int, sha256: str) -> None:
        pass


# --- the staff API in-process ----------------------------------------------------------------

def signed_headers(key: StaffSecretKey, method: str, path_qs: str, body: bytes = b"", *,
                   now: int | None = None) -> dict[str, str]:
    """The headers of a staff API request signed with ``key`` (and its body's, if any)."""
    digest = sha256(body)
    signed = sign_request(key, method, path_qs, digest,
                          now=int(time.time()) if now is None else now)
    headers = signed.as_dict()
    if body:
        headers[HEADER_BODY_SHA256] = digest
        headers["Content-Type"] = "application/octet-stream"
    return headers


@dataclass
class Api:
    """The real staff app under ``aiohttp_client``, with a helper that signs requests."""

    client: TestClient
    world: World

    @property
    def backend(self) -> Backend:
        return self.client.app[BACKEND]

    @property
    def storage(self) -> Storage:
        return self.backend.storage

    def headers(self, method: str, path_qs: str, body: bytes = b"", *,
                key: StaffSecretKey | None = None, now: int | None = None) -> dict[str, str]:
        return signed_headers(key or self.world.staff, method, path_qs, body, now=now)

    async def request(self, method: str, path_qs: str, body: bytes = b"", *,
                      headers: dict[str, str] | None = None,
                      key: StaffSecretKey | None = None,
                      now: int | None = None) -> ClientResponse:
        all_headers = self.headers(method, path_qs, body, key=key, now=now)
        all_headers.update(headers or {})
        return await self.client.request(method, path_qs, data=io.BytesIO(body) if body else None,
                                         headers=all_headers)


@pytest_asyncio.fixture
async def api(aiohttp_client: Any, world: World) -> AsyncIterator[Api]:
    app = create_app(world.config)[STAFF_APP]
    client = await aiohttp_client(app)
    yield Api(client, world)


# --- the real server, and the command line ---------------------------------------------------

@pytest.fixture
def start_server(world: World, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """``start_server()`` runs ``dropbox-server run --dev`` on free ports; returns the staff
    API URL. Populate the data folder before starting it."""
    processes: list[subprocess.Popen[str]] = []

    def start() -> str:
        log = open(tmp_path / f"server-{len(processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "dropbox_server", "run", "--dev", "--data-dir",
             str(world.data_dir), "--port", "0", "--staff-port", "0"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        processes.append(process)
        watchdog = threading.Timer(SERVER_START_TIMEOUT, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("staff API:"):
                    return line.split(":", 1)[1].strip()
        finally:
            watchdog.cancel()
        pytest.fail("the server did not start:\n" + (tmp_path / "server-0.log").read_text())

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
