"""A live drop box for the browser tests: the real app from ``create_app`` served on loopback in
a background thread, behind a recording relay, plus the staff tools run as separate processes.

The relay is a plain TCP forwarder that keeps every byte browsers send to the public site. It is
test-only (production code is unchanged) and sees exactly what a network observer or the server
would: the tests look for the report's plaintext markers in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from dropbox_server.app import create_app
from dropbox_server.appkeys import STAFF_APP
from dropbox_server.config import load_config
from tests.support import make_server_folder

T = TypeVar("T")
PASSPHRASE = "browser tests only"
RECIPIENT_ID = "city-police"
RECIPIENT_NAME = "City Police"


class RecordingRelay:
    """Forwards TCP connections to ``target_port`` and records what clients send."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent: list[bytearray] = []  # one per connection, client -> server
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        self.sent.append(record)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       keep: bytearray | None) -> None:
            try:
                while data := await src.read(256 * 1024):
                    if keep is not None:
                        keep.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, record), pipe(up_reader, writer, None))


@dataclass
class Report:
    """A report (or more information) as the staff tools decrypted it."""

    folder: Path
    doc: dict[str, Any]

    def attachment(self, name: str) -> bytes:
        entry = next(a for a in self.doc["attachments"] if a["name"] == name)
        return (self.folder / entry["file"]).read_bytes()

    @property
    def source_id(self) -> str:
        return str(self.doc["server"]["source_id"])


class LiveSite:
    """The public site (through the relay) and the staff API, on loopback, in one thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "server"
        self.staff = root / "staff"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []
        self.relay: RecordingRelay | None = None
        self.url = ""
        self.staff_url = ""
        self._seen: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> LiveSite:
        folder = make_server_folder(self.data, recipient=RECIPIENT_NAME,
                                    description="Crimes at work and at home")
        folder.keep_keys(self.staff, PASSPHRASE)
        self._thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        app = create_app(load_config(self.data))
        ports = []
        for application in (app, app[STAFF_APP]):
            runner = web.AppRunner(application, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            ports.append(runner.addresses[0][1])
        self.relay = RecordingRelay(ports[0])
        await self.relay.start()
        self.url = f"http://127.0.0.1:{self.relay.port}"
        self.staff_url = f"http://127.0.0.1:{ports[1]}"

    def stop(self) -> None:
        async def stop() -> None:
            if self.relay is not None:
                await self.relay.stop()
            for runner in reversed(self._runners):
                await runner.cleanup()
        try:
            self._run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    # -- what browsers sent -----------------------------------------------------------------

    def mark(self) -> list[int]:
        """A position in the recording; :meth:`sent_since` returns what came after it.
        Browsers keep connections open and reuse any of them, so every one is marked."""
        assert self.relay is not None
        return [len(record) for record in list(self.relay.sent)]

    def sent_since(self, mark: list[int]) -> bytes:
        assert self.relay is not None
        sent = list(self.relay.sent)
        starts = mark + [0] * (len(sent) - len(mark))
        return b"".join(bytes(record[start:]) for record, start in zip(sent, starts, strict=True))

    # -- the staff side -------------------------------------------------------------------

    def client(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "client_cli", *map(str, args)],
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        return result

    def fetch_new(self) -> list[Report]:
        """Fetch every new envelope and decrypt it with the agency key."""
        inbox, reports = self.staff / "inbox", self.staff / "reports"
        self.client("fetch", "--server", self.staff_url, "--identity", self.staff / "alice.key",
                    "--passphrase-file", self.staff / "pass.txt", "--out", inbox)
        new = sorted(p for p in inbox.glob("*.srdb") if p.name not in self._seen)
        out = []
        for envelope in new:
            self._seen.add(envelope.name)
            self.client("decrypt", "--key-file", self.staff / "agency.key", "--passphrase-file",
                        self.staff / "pass.txt", "--out", reports, envelope)
            folder = reports / envelope.stem
            out.append(Report(folder, json.loads((folder / "report.json").read_text("utf-8"))))
        return out

    def reply(self, source_id: str, text: str) -> None:
        message = self.staff / "reply.txt"
        message.write_text(text, encoding="utf-8")
        self.client("reply", "--server", self.staff_url, "--identity", self.staff / "alice.key",
                    "--passphrase-file", self.staff / "pass.txt", "--source", source_id,
                    "--message-file", message)
