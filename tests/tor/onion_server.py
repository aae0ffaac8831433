"""Helpers for end-to-end tests: a `dropbox-server run --tor` subprocess joining the private
network, and fetches through a tor client's SOCKS port."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp_socks import ProxyConnector, ProxyError, ProxyTimeoutError
from python_socks import ProxyError as SocksProxyError

from dropbox_envelope.keys import SecretKey, StaffSecretKey
from dropbox_server.cli import main as server_main

ROOT = Path(__file__).resolve().parents[2]
PUBLISH_TIMEOUT = 150.0  # measured ~5 s (bootstrap + publication); generous for a busy CI box
STOP_TIMEOUT = 30.0

# Tor's extended SOCKS5 errors (SocksPort ... ExtendedErrors; tor's socks-extensions.txt).
SOCKS_DESCRIPTOR_NOT_FOUND = 0xF0
SOCKS_MISSING_CLIENT_AUTH = 0xF4
SOCKS_BAD_CLIENT_AUTH = 0xF5


@dataclass
class Keys:
    agency: SecretKey
    staff: StaffSecretKey


def init_data_dir(base: Path) -> tuple[Path, Keys]:
    """A data folder with one recipient and one staff signing key (``dropbox-server init``)."""
    base.mkdir(parents=True, exist_ok=True)
    keys = Keys(SecretKey.generate(), StaffSecretKey.generate())
    (base / "agency.pub").write_text(keys.agency.public_key.encode() + "\n", encoding="utf-8")
    (base / "alice.pub").write_text(keys.staff.public_key.encode() + "\n", encoding="utf-8")
    data = base / "data"
    assert server_main(["init", "--data-dir", str(data),
                        "--recipient", f"City Police={base / 'agency.pub'}",
                        "--staff", f"alice={base / 'alice.pub'}"]) == 0
    return data, keys


@dataclass(frozen=True)
class StaffOnionKey:
    auth_private: str  # <service id>:descriptor:x25519:<base32>
    control_key: str  # x25519:<base64>

    @property
    def service_id(self) -> str:
        return self.auth_private.split(":", 1)[0]


def server_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dropbox_server", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def staff_add(data: Path, name: str) -> StaffOnionKey:
    proc = server_cli("staff", "add", name, "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    auth = re.search(r"^\s+([a-z2-7]{56}:descriptor:x25519:[A-Z2-7]{52})$", proc.stdout, re.M)
    control = re.search(r"^\s+(x25519:[A-Za-z0-9+/]{43}=)$", proc.stdout, re.M)
    assert auth and control, proc.stdout
    return StaffOnionKey(auth.group(1), control.group(1))


class ServerProcess:
    """``dropbox-server run --tor`` as a subprocess; stdout goes to a file we poll."""

    def __init__(self, data: Path, join_config: Path | None, *extra: str) -> None:
        self.data = data
        self.log = data.parent / f"server-{time.monotonic_ns()}.log"
        join = ["--tor-extra-config", str(join_config)] if join_config else []
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dropbox_server", "run", "--data-dir", str(data),
                 "--port", "0", "--staff-port", "0", *join, *extra],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.public = ""
        self.staff: str | None = None
        self.publish_seconds = 0.0

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_published(self, timeout: float = PUBLISH_TIMEOUT) -> ServerProcess:
        t0 = time.monotonic()
        while "onion services published" not in (text := self.output()):
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}:\n{text}"
            assert time.monotonic() - t0 < timeout, f"not published in {timeout} s:\n{text}"
            time.sleep(0.1)
        self.publish_seconds = time.monotonic() - t0
        public = re.search(r"^public onion: http://([a-z2-7]{56}\.onion)/$", text, re.M)
        staff = re.search(r"^staff onion:  http://([a-z2-7]{56}\.onion)/", text, re.M)
        assert public, text
        self.public = public.group(1)
        self.staff = staff.group(1) if staff else None
        return self

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes


async def _fetch_once(socks_port: int, url: str, timeout: float) -> Fetched:
    # rdns=True: the .onion name goes to tor unresolved (tor resolves nothing locally).
    connector = ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as resp:
        return Fetched(resp.status, dict(resp.headers), await resp.read())


def fetch(socks_port: int, url: str, *, attempts: int = 3, timeout: float = 60.0) -> Fetched:
    """GET through tor; a few tries, since a fresh onion circuit can fail once."""
    for attempt in range(attempts):
        try:
            return asyncio.run(_fetch_once(socks_port, url, timeout))
        # aiohttp_socks's ProxyTimeoutError is none of the others: a circuit that timed out
        # must be tried again too, as one that failed is.
        except (ProxyError, ProxyTimeoutError, SocksProxyError, aiohttp.ClientError,
                TimeoutError):
            if attempt == attempts - 1:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def socks_error(socks_port: int, url: str, *, timeout: float = 60.0) -> int | None:
    """The SOCKS reply code tor gave for ``url`` (None if the fetch succeeded)."""
    try:
        asyncio.run(_fetch_once(socks_port, url, timeout))
    except (ProxyError, SocksProxyError) as exc:
        if exc.error_code is not None:
            return int(exc.error_code)
        # python-socks rejects tor's extended codes (0xF0-0xF7) as "Invalid reply code: 0XF4".
        match = re.search(r"0X([0-9A-F]{2})", str(exc), re.I)
        return int(match.group(1), 16) if match else -1
    return None


def stop_quietly(server: ServerProcess) -> None:
    with contextlib.suppress(Exception):
        server.stop()
