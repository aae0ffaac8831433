"""The running server for hostile tests: a data folder, `dropbox-server run --dev` in a
subprocess (tests/e2e's Server), and raw loopback requests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from dropbox_envelope.keys import TEST_KDF, SecretKey, StaffSecretKey
from dropbox_server.config import render_config
from tests.e2e.test_product_loop import Server
from tests.server.forms import MULTIPART

MAX_REPORT = 8 * 1024 * 1024  # bytes; small, so bombs hit the limit quickly
TIMEOUT = aiohttp.ClientTimeout(total=30)
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Running:
    server: Server
    data: Path
    log: Path
    agency: SecretKey
    staff: StaffSecretKey

    @property
    def public_port(self) -> int:
        return int(self.server.public.rsplit(":", 1)[1])

    @property
    def staff_url(self) -> str:
        return self.server.staff.rstrip("/")

    def store(self) -> list[str]:
        return sorted(str(p.relative_to(self.data)) for p in (self.data / "store").rglob("*")
                      if p.is_file())


def make_data(root: Path) -> tuple[Path, SecretKey, StaffSecretKey]:
    data = root / "data"
    (data / "keys").mkdir(parents=True)
    agency, staff = SecretKey.generate(), StaffSecretKey.generate()
    (data / "keys" / "agency.pub").write_text(agency.public_key.encode() + "\n")
    (data / "keys" / "alice.pub").write_text(staff.public_key.encode() + "\n")
    text = render_config([("City Police", "", ["keys/agency.pub"])], [("alice", "keys/alice.pub")])
    text = re.sub(r"(?m)^max_report_bytes = .*$", f"max_report_bytes = {MAX_REPORT}", text)
    (data / "dropbox.toml").write_text(text.replace(
        'questionnaire = ""', f'questionnaire = ""\ncode_kdf_opslimit = {TEST_KDF.opslimit}\n'
        f"code_kdf_memlimit = {TEST_KDF.memlimit}"))
    return data, agency, staff


async def raw(port: int, request: bytes, *, timeout: float = 20) -> bytes:
    """Send bytes as they are; return everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert match, response[:200]
    return int(match.group(1))


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT)


async def csrf(session: aiohttp.ClientSession, running: Running, path: str = "/report") -> str:
    async with session.get(running.server.public + path) as resp:
        match = _CSRF.search(await resp.text())
    assert match
    return match.group(1)


async def post_form(session: aiohttp.ClientSession, running: Running, body: bytes,
                    content_type: str = MULTIPART, path: str = "/report",
                    headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with session.post(running.server.public + path, data=io.BytesIO(body),
                            headers={"Content-Type": content_type, **(headers or {})},
                            allow_redirects=False) as resp:
        return resp.status, await resp.text(errors="replace")


async def still_serving(running: Running) -> None:
    async with browser() as session, session.get(running.server.public + "/") as resp:
        assert resp.status == 200
