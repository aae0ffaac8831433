"""Replies without the agency key on a networked machine, against a real
`dropbox-server run --dev` process:

report through the no-JS form -> (online) `fetch`, which records the source's reply key ->
(offline) `inbox --key-file` decrypts -> (offline) `reply --prepare --template` seals the reply
to the recorded key, no server options -> (online) `reply --send` uploads the file -> the
source logs in with the return code and reads the reply in its language.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from dropbox_envelope.keys import PublicKey, SecretKey, StaffSecretKey
from tests.e2e.test_product_loop import Server, csrf
from tests.server.forms import MULTIPART, code_from_receipt, multipart, report_parts
from tests.staffwork.conftest import PASSPHRASE, Run
from tests.support import make_server_folder

ANSWERS: dict[str, str | list[str]] = {
    "what_happening": ["not_paid", "documents_taken"], "danger_now": ["weapons"],
    "contact": "return_code_only"}


@dataclass
class Machines:
    public: str
    staff_api: str
    staff_key: StaffSecretKey
    online: Path  # the networked staff machine: staff key, inbox
    offline: Path  # the offline machine: agency key
    usb: Path  # what is carried between them


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    folder = make_server_folder(tmp_path / "server", description="Crimes at work and at home")
    online, offline, usb = tmp_path / "online", tmp_path / "offline", tmp_path / "usb"
    folder.keep_keys(online, PASSPHRASE, agency=False)
    folder.keep_keys(offline, PASSPHRASE, staff=False)
    usb.mkdir()
    server = Server(folder.data, tmp_path / "server.log")
    try:
        yield Machines(server.public, server.staff, folder.staff, online, offline, usb)
    finally:
        server.stop()


async def _report(public: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        token = await csrf(browser, f"{public}/report")
        parts = report_parts(token, recipient="city-police", answers=ANSWERS, language="es",
                             message="El jefe tiene un arma. Trabajamos en Sunny Farms.")
        async with browser.post(f"{public}/report", data=multipart(parts),
                                headers={"Content-Type": MULTIPART}) as resp:
            assert resp.status == 200
            return code_from_receipt(await resp.text())


async def _conversation(public: str, code: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        token = await csrf(browser, f"{public}/login")
        async with browser.post(f"{public}/login",
                                data={"csrf": token, "code": code.replace(" ", "-")}) as resp:
            assert resp.status == 200 and resp.url.path == "/conversation"
            return await resp.text()


def test_prepare_offline_send_online_and_the_source_reads_it(machines: Machines,
                                                              run: Run) -> None:
    m = machines
    code = asyncio.run(_report(m.public))
    online_auth = ("--server", m.staff_api, "--identity", m.online / "alice.key",
                   "--passphrase-file", m.online / "pass.txt")

    # Online: fetch. The sidecar records the source's reply key, the day and the staff key.
    inbox = m.online / "inbox"
    fetched = run("fetch", *online_auth, "--out", inbox)
    assert fetched.code == 0, fetched.err
    [sidecar_path] = inbox.glob("*.meta.json")
    sidecar = json.loads(sidecar_path.read_text())
    source_id = sidecar["source_id"]
    assert PublicKey.decode(sidecar["source_public_key"])
    assert sidecar["fetched_by"] == m.staff_key.public_key.fingerprint

    # For envelopes fetched before fetch recorded keys: the key on its own, as a .pub file.
    saved = run("source-key", *online_auth, "--source", source_id, "--out",
                m.usb / "source.pub")
    assert saved.code == 0, saved.err
    assert (m.usb / "source.pub").read_text().strip() == sidecar["source_public_key"]

    # Carried to the offline machine (here: the same folder), decrypted there by inbox.
    listed = run("inbox", "--key-file", m.offline / "agency.key", "--passphrase-file",
                 m.offline / "pass.txt", "--json", inbox)
    assert listed.code == 0, listed.err
    [row] = json.loads(listed.out)["reports"]
    assert (row["source_id"], row["urgent"], row["language"]) == (source_id, True, "es")
    assert row["claimed"] == {"urgent": True, "indicators": [
        "ilo:retention_of_identity_documents", "ilo:withholding_of_wages"]}
    assert row["flags"] == []  # the server's triage agrees with the recomputed one

    # Offline: prepare. No server, no staff key, no network.
    reply_file = m.usb / "reply.srdb"
    no_network = run("reply", "--prepare", "--server", m.staff_api, "--source", source_id,
                     "--template", "are_you_safe", "--inbox", inbox, "--out", reply_file)
    assert no_network.code == 2 and "--prepare works offline" in no_network.err
    prepared = run("reply", "--prepare", "--source", source_id, "--template", "are_you_safe",
                   "--language", "es", "--inbox", inbox, "--out", reply_file)
    assert prepared.code == 0, prepared.err
    assert "reply --send" in prepared.out
    carried = json.loads((m.usb / "reply.srdb.json").read_text())
    assert carried["source_id"] == source_id
    assert carried["sealed_to_fingerprint"] == \
        PublicKey.decode(sidecar["source_public_key"]).fingerprint
    assert "salvo" not in (m.usb / "reply.srdb.json").read_text()  # no plaintext carried
    assert sorted(p.name for p in m.usb.iterdir()) == ["reply.srdb", "reply.srdb.json",
                                                       "source.pub"]

    # A changed file is refused before anything is sent.
    tampered = m.usb / "tampered.srdb"
    tampered.write_bytes(reply_file.read_bytes()[:-1] + b"\x00")
    (m.usb / "tampered.srdb.json").write_text((m.usb / "reply.srdb.json").read_text())
    refused = run("reply", "--send", tampered, *online_auth)
    assert refused.code == 1 and "does not match the size and SHA-256" in refused.err

    # Online: send.
    sent = run("reply", "--send", reply_file, *online_auth)
    assert sent.code == 0, sent.err
    reply_id = sent.out.strip()
    assert json.loads((m.usb / "reply.srdb.sent.json").read_text())["reply_id"] == reply_id
    twice = run("reply", "--send", reply_file, *online_auth)
    assert twice.code == 1 and "already sent" in twice.err

    # The online reply command is unchanged, and takes templates too.
    online_reply = run("reply", *online_auth, "--source", source_id, "--template", "received",
                       "--language", "fr")
    assert online_reply.code == 0, online_reply.err

    # The source reads both.
    page = asyncio.run(_conversation(m.public, code))
    assert "¿Está usted a salvo ahora? Si está en peligro, llame al 999 si puede." in page
    assert "Merci, nous avons bien reçu votre signalement." in page


def test_prepare_needs_a_recorded_key_and_refuses_conflicting_records(
        run: Run, tmp_path: Path) -> None:
    source_id = "7" * 32
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    message = tmp_path / "message.txt"
    message.write_text("Thank you.")
    argv = ("reply", "--prepare", "--source", source_id, "--message-file", message,
            "--inbox", inbox, "--out", tmp_path / "r.srdb")
    missing = run(*argv)
    assert missing.code == 1 and f"no reply key for source {source_id}" in missing.err

    first, second = SecretKey.generate().public_key, SecretKey.generate().public_key
    for name, key in (("a", first), ("b", second)):
        (inbox / f"{name}.meta.json").write_text(json.dumps(
            {"source_id": source_id, "source_public_key": key.encode(), "sha256": "0" * 64}))
    conflict = run(*argv)
    assert conflict.code == 1 and "different reply keys" in conflict.err
    assert not (tmp_path / "r.srdb").exists()

    (inbox / "b.meta.json").unlink()
    pub = tmp_path / "source.pub"
    pub.write_text(second.encode() + "\n")
    disagree = run(*argv, "--source-key", pub)
    assert disagree.code == 1 and "differ" in disagree.err
    ok = run(*argv)
    assert ok.code == 0, ok.err


def test_templates(run: Run, tmp_path: Path) -> None:
    listing = run("reply", "--list-templates")
    assert listing.code == 0
    for name in ("received", "are_you_safe", "address", "passed_on", "photo_or_document"):
        assert name in listing.out
    assert "ar*, bg*, en, es*, fr*, pl*, pt*, ro*" in listing.out
    assert "not yet reviewed" in listing.out

    key = tmp_path / "source.pub"
    key.write_text(SecretKey.generate().public_key.encode() + "\n")
    base = ("reply", "--prepare", "--source", "7" * 32, "--source-key", key)
    needs_value = run(*base, "--template", "passed_on", "--out", tmp_path / "a.srdb")
    assert needs_value.code == 1 and "--set organisation=..." in needs_value.err
    unknown_language = run(*base, "--template", "address", "--language", "xx",
                           "--out", tmp_path / "b.srdb")
    assert unknown_language.code == 1 and "has no 'xx' text" in unknown_language.err
    filled = run(*base, "--template", "passed_on", "--language", "pt-BR", "--set",
                 "organisation=GLAA", "--out", tmp_path / "c.srdb")
    assert filled.code == 0, filled.err
    both = run(*base, "--template", "address", "--message-file", key, "--out",
               tmp_path / "d.srdb")
    assert both.code == 2 and "not both" in both.err
    legacy_missing = run("reply", "--source", "7" * 32, "--message-file", key)
    assert legacy_missing.code == 2
    assert "required: --server, --identity" in legacy_missing.err
