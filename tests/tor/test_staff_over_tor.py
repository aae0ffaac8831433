"""The product loop through the private Tor network: a report sent to the public onion with the
no-JS form, fetched by `dropbox-client fetch` from the client-authorised staff onion (key
registered over tor's control port), decrypted, answered with `dropbox-client reply`."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp_socks import ProxyConnector

from dropbox_envelope.keys import PublicKey
from dropbox_envelope.streams import encrypt
from tests.server.forms import MULTIPART, code_from_receipt, multipart, report_parts
from tests.support import make_server_folder
from tests.tor.onion_server import ROOT, ServerProcess, staff_add, stop_quietly
from tests.tor.testnet import Node, TorNetwork

pytestmark = pytest.mark.tor
PASSPHRASE = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class Setup:
    server: ServerProcess
    staff: Path  # the staff member's machine: keys, onion key, inbox
    agency: PublicKey


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tor_network: TorNetwork) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("loop")
    folder = make_server_folder(base / "server")
    data, agency, staff = folder.data, folder.agency, base / "staff"
    folder.keep_keys(staff, PASSPHRASE)
    onion_key = staff_add(data, "alice")
    (staff / "alice.onion-auth").write_text(onion_key.control_key + "\n")
    join = base / "testnet.torrc"
    join.write_text(tor_network.join_config(), encoding="utf-8")
    server = ServerProcess(data, join)
    try:
        server.wait_published()
        yield Setup(server, staff, agency.public_key)
    finally:
        stop_quietly(server)


def client(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client_cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


async def _submit(socks_port: int, public: str, message: str, sealed: bytes) -> str:
    """The no-JS form with ``message``, then ``sealed`` as a browser-made envelope upload."""
    connector = ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as browser:
        async with browser.get(f"{public}/report") as resp:
            assert resp.status == 200
            match = _CSRF.search(await resp.text())
        assert match
        parts = report_parts(match.group(1), recipient="city-police",
                             answers={"what_happening": ["not_paid"]}, message=message)
        async with browser.post(f"{public}/report", data=multipart(parts),
                                headers={"Content-Type": MULTIPART}) as resp:
            assert resp.status == 200, await resp.text()
            code = code_from_receipt(await resp.text())
    # Another reporter, on the JavaScript path: an envelope sealed in the browser.
    connector = ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as browser:
        async with browser.get(f"{public}/report") as resp:
            match = _CSRF.search(await resp.text())
        assert match
        async with browser.post(f"{public}/submit/envelope?recipient=city-police",
                                data=io.BytesIO(sealed),
                                headers={"Content-Type": "application/octet-stream",
                                         "X-CSRF-Token": match.group(1)}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"] == "received"
    return code


def test_report_fetch_decrypt_reply_through_tor(setup: Setup, tor_network: TorNetwork) -> None:
    assert tor_network.client is not None and tor_network.client.socks_port
    message = "The owner keeps our passports in the office safe."
    sealed_message = "Sealed in the browser: the night shift is not paid either."
    envelope = io.BytesIO()
    encrypt(envelope, [setup.agency], message=sealed_message, language="en")
    code = asyncio.run(_submit(tor_network.client.socks_port,
                               f"http://{setup.server.public}", message, envelope.getvalue()))
    assert len(code.split()) == 5

    staff_tor: Node = tor_network.start_client("alicedesk")  # knows no onion keys yet
    assert staff_tor.socks_port
    staff, server = setup.staff, setup.server
    tor_args: list[str | Path] = ["--server", f"http://{server.staff}/", "--tor-socks",
                f"127.0.0.1:{staff_tor.socks_port}", "--identity", staff / "alice.key",
                "--passphrase-file", staff / "pass.txt"]

    refused = client("fetch", *tor_args, "--out", staff / "inbox")
    assert refused.returncode == 1
    assert "needs client authorisation" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    t0 = time.monotonic()
    fetched = client("fetch", *tor_args, "--tor-control", f"127.0.0.1:{staff_tor.control_port}",
                     "--onion-auth", staff / "alice.onion-auth", "--out", staff / "inbox",
                     "--json")
    print(f"\ndropbox-client fetch through Tor (process included): "
          f"{time.monotonic() - t0:.2f} s")
    assert fetched.returncode == 0, fetched.stderr
    envelopes = sorted((staff / "inbox").glob("*.srdb"))
    assert len(envelopes) == 2
    decrypted = client("decrypt", "--key-file", staff / "agency.key", "--passphrase-file",
                       staff / "pass.txt", "--out", staff / "reports", "--json",
                       staff / "inbox")
    assert decrypted.returncode == 0, decrypted.stderr
    reports = [json.loads((staff / "reports" / e.stem / "report.json").read_text())
               for e in envelopes]
    assert sorted(r["message"] for r in reports) == sorted([message, sealed_message])
    source_id = next(r for r in reports if r["message"] == message)["server"]["source_id"]

    # The key is registered now (tor keeps it in memory): reply needs no --onion-auth.
    (staff / "reply.txt").write_text("Thank you. Are you safe?")
    replied = client("reply", *tor_args, "--source", source_id, "--message-file",
                     staff / "reply.txt")
    assert replied.returncode == 0, replied.stderr
    assert re.fullmatch(r"[0-9a-f]{32}\n", replied.stdout)


def test_client_errors_without_tor_are_clear(setup: Setup, tmp_path: Path) -> None:
    # Nothing listens on this port (picked free, below the ephemeral range).
    from tests.tor.testnet import free_ports

    [dead] = free_ports(1)
    result = client("fetch", "--server", f"http://{setup.server.staff}/", "--tor-socks",
                    f"127.0.0.1:{dead}", "--identity", setup.staff / "alice.key",
                    "--passphrase-file", setup.staff / "pass.txt", "--out", tmp_path / "in")
    assert result.returncode == 1
    assert "tor is not running" in result.stderr and "Traceback" not in result.stderr
    wrong = tmp_path / "other.onion-auth"
    wrong.write_text("aoqqpp7tzyil4hlq3umoos6atft6jvrqtosq2xy53sdgiesvgg4bqead:descriptor:"
                     "x25519:" + "A" * 52 + "\n")
    result = client("fetch", "--server", f"http://{setup.server.staff}/", "--tor-socks",
                    f"127.0.0.1:{dead}", "--onion-auth", wrong, "--identity",
                    setup.staff / "alice.key", "--passphrase-file", setup.staff / "pass.txt",
                    "--out", tmp_path / "in")
    assert result.returncode == 1
    assert "not for the --server address" in result.stderr
