"""The whole product loop against a real `dropbox-server run --dev` process, with the commands
staff use, as separate processes:

report through the no-JS form (two attachments) -> `fetch` -> `decrypt` -> identical bytes and
answers -> `reply` -> the source logs in with the code, reads it, answers -> `fetch` again ->
the answer arrives linked to the same source.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.server.forms import MULTIPART, File, code_from_receipt, multipart, report_parts
from tests.support import make_server_folder

pytestmark = pytest.mark.asyncio
PASSPHRASE = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


class Server:
    def __init__(self, data_dir: Path, log: Path) -> None:
        with open(log, "w") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dropbox_server", "run", "--dev", "--data-dir",
                 str(data_dir), "--port", "0", "--staff-port", "0"],
                stdout=subprocess.PIPE, stderr=handle, text=True)
        urls: dict[str, str] = {}
        watchdog = threading.Timer(60, self.process.kill)
        watchdog.start()
        try:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith("public site:"):
                    urls["public"] = line.split(":", 1)[1].strip()
                if line.startswith("staff API:"):
                    urls["staff"] = line.split(":", 1)[1].strip()
                    break
        finally:
            watchdog.cancel()
        assert set(urls) == {"public", "staff"}, log.read_text()
        self.public, self.staff = urls["public"].rstrip("/"), urls["staff"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    folder = make_server_folder(tmp_path / "server", description="Crimes at work and at home")
    staff_machine = tmp_path / "staff"
    folder.keep_keys(staff_machine, PASSPHRASE)
    server = Server(folder.data, tmp_path / "server.log")
    try:
        yield server, staff_machine
    finally:
        server.stop()


def client(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client_cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


async def csrf(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        assert resp.status == 200
        match = _CSRF.search(await resp.text())
    assert match
    return match.group(1)


async def test_report_fetch_decrypt_reply_answer(setup: tuple[Server, Path]) -> None:
    server, staff = setup
    photo = bytes(range(256)) * 1000 + b"\xff\xd8 not really a jpeg"
    payslip = "Payslip: £0.00 for 70 hours\n".encode() * 50
    message = "They keep my passport and say they will call immigration if I complain."
    answers = {"what_happening": ["not_paid", "documents_taken", "threats"]}
    inbox, reports = staff / "inbox", staff / "reports"

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        token = await csrf(browser, f"{server.public}/report")
        parts = report_parts(token, recipient="city-police", answers=answers, message=message,
                             files=[File("attachments", "photo.jpg", photo, "image/jpeg"),
                                    File("attachments", "payslip.txt", payslip, "text/plain")])
        async with browser.post(f"{server.public}/report", data=multipart(parts),
                                headers={"Content-Type": MULTIPART}) as resp:
            assert resp.status == 200
            code = code_from_receipt(await resp.text())

        # Staff fetch over HTTP and decrypt offline.
        fetched = client("fetch", "--server", server.staff, "--identity", staff / "alice.key",
                         "--passphrase-file", staff / "pass.txt", "--out", inbox, "--json")
        assert fetched.returncode == 0, fetched.stderr
        [envelope] = sorted(inbox.glob("*.srdb"))
        decrypted = client("decrypt", "--key-file", staff / "agency.key", "--passphrase-file",
                           staff / "pass.txt", "--out", reports, "--json", inbox)
        assert decrypted.returncode == 0, decrypted.stderr
        folder = reports / envelope.stem
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        assert report["message"] == message
        assert report["answers"]["what_happening"] == answers["what_happening"]
        by_name = {a["name"]: a for a in report["attachments"]}
        assert (folder / by_name["photo.jpg"]["file"]).read_bytes() == photo
        assert (folder / by_name["payslip.txt"]["file"]).read_bytes() == payslip
        assert by_name["photo.jpg"]["sha256"] == hashlib.sha256(photo).hexdigest()
        source_id = report["server"]["source_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", source_id)
        assert source_id in (folder / "report.txt").read_text(encoding="utf-8")

        # Staff reply; the source comes back with the code and reads it.
        (staff / "reply.txt").write_text("Thank you. Are you safe now? Which town is it in?")
        replied = client("reply", "--server", server.staff, "--identity", staff / "alice.key",
                         "--passphrase-file", staff / "pass.txt", "--source", source_id,
                         "--message-file", staff / "reply.txt")
        assert replied.returncode == 0, replied.stderr

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        token = await csrf(browser, f"{server.public}/login")
        async with browser.post(f"{server.public}/login",
                                data={"csrf": token, "code": code.replace(" ", "-")}) as resp:
            assert resp.status == 200 and resp.url.path == "/conversation"
            page = await resp.text()
        assert "Are you safe now? Which town is it in?" in page
        token = _CSRF.search(page)
        assert token
        answer = "I am safe. It is a car wash in Northtown."
        body = multipart([*report_parts(token.group(1), recipient=None, answers={},
                                        message=answer)])
        async with browser.post(f"{server.public}/conversation/send", data=body,
                                headers={"Content-Type": MULTIPART}) as resp:
            assert resp.status == 200, await resp.text()

    fetched = client("fetch", "--server", server.staff, "--identity", staff / "alice.key",
                     "--passphrase-file", staff / "pass.txt", "--out", inbox)
    assert fetched.returncode == 0, fetched.stderr
    new = [p for p in inbox.glob("*.srdb") if p != envelope]
    assert len(new) == 1
    decrypted = client("decrypt", "--key-file", staff / "agency.key", "--passphrase-file",
                       staff / "pass.txt", "--out", reports, new[0])
    assert decrypted.returncode == 0, decrypted.stderr
    second = json.loads((reports / new[0].stem / "report.json").read_text(encoding="utf-8"))
    assert second["message"] == answer
    assert second["server"]["source_id"] == source_id  # the same conversation
