"""Fixtures for the staff workflow after decryption (inbox, related, export, offline replies).

Example reports are made the way staff would make test material: ``dropbox-client encrypt``
with ``--answers-file`` (run in-process), plus a fetch-style sidecar written next to the
envelope. Reports that carry the server's own ``questionnaire`` and ``triage`` manifest fields
are sealed with the envelope package's Encryptor, exactly as the public site seals them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dropbox_envelope.envelope import Encryptor
from dropbox_envelope.keys import TEST_KDF, SecretKey, lock_secret_key

# The CLI runner's types, for the tests here that take the ``run`` fixture (tests/conftest.py).
from tests.support import Result as Result
from tests.support import Run as Run

PASSPHRASE = "staffwork test passphrase"


@dataclass(frozen=True)
class Agency:
    key: SecretKey
    key_file: Path
    pub_file: Path
    passphrase_file: Path


@pytest.fixture
def agency(tmp_path: Path) -> Agency:
    machine = tmp_path / "offline"
    machine.mkdir()
    key = SecretKey.generate()
    key_file, pub_file = machine / "agency.key", machine / "agency.pub"
    key_file.write_text(lock_secret_key(key, PASSPHRASE, name="agency", params=TEST_KDF))
    pub_file.write_text(key.public_key.encode() + "\n")
    passphrase_file = machine / "passphrase.txt"
    passphrase_file.write_text(PASSPHRASE + "\n")
    return Agency(key, key_file, pub_file, passphrase_file)


def write_sidecar(envelope: Path, *, received_day: str, source_id: str | None = None,
                  recipient: str = "city-police", **extra: Any) -> None:
    """What ``fetch`` writes next to an envelope."""
    data = envelope.read_bytes()
    stem = envelope.name.removesuffix(".srdb")
    doc = {"envelope_id": stem if len(stem) == 32 else "0" * 32, "source_id": source_id,
           "received_day": received_day, "recipient": recipient,
           "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **extra}
    envelope.with_name(stem + ".meta.json").write_text(json.dumps(doc, indent=2))


@dataclass
class Inbox:
    """A fetch inbox being filled with example envelopes."""

    folder: Path
    agency: Agency
    run: Run
    scratch: Path
    count: int = 0

    def add(self, *, answers: Mapping[str, Any] | None = None, message: str = "",
            language: str = "en", files: Sequence[tuple[str, bytes]] = (),
            received_day: str = "2025-03-01", source_id: str | None = None,
            name: str | None = None, **sidecar: Any) -> Path:
        """``dropbox-client encrypt`` an example report into the inbox, with a sidecar."""
        self.count += 1
        envelope_id = name or f"{self.count:032x}"
        work = self.scratch / envelope_id
        work.mkdir(parents=True)
        argv: list[str | Path] = ["encrypt", "--to", self.agency.pub_file, "--language",
                                  language, "--out", self.folder / f"{envelope_id}.srdb"]
        if answers is not None:
            (work / "answers.json").write_text(json.dumps(answers), encoding="utf-8")
            argv += ["--answers-file", work / "answers.json"]
        if message:
            (work / "message.txt").write_text(message, encoding="utf-8")
            argv += ["--message-file", work / "message.txt"]
        for filename, data in files:
            (work / filename).write_bytes(data)
            argv.append(work / filename)
        result = self.run(*argv)
        assert result.code == 0, result.err
        envelope = self.folder / f"{envelope_id}.srdb"
        write_sidecar(envelope, received_day=received_day, source_id=source_id, **sidecar)
        return envelope

    def add_sealed(self, manifest_extra: Mapping[str, Any], *, answers: Mapping[str, Any],
                   message: str = "", received_day: str = "2025-03-01",
                   name: str | None = None) -> Path:
        """A report sealed as the public site seals it, with extra manifest fields."""
        self.count += 1
        envelope_id = name or f"{self.count:032x}"
        encryptor = Encryptor([self.agency.key.public_key])
        out = io.BytesIO()
        for piece in encryptor.finish(kind="report", language="en", message=message,
                                      answers=answers, extra=manifest_extra):
            out.write(piece)
        envelope = self.folder / f"{envelope_id}.srdb"
        envelope.write_bytes(out.getvalue())
        write_sidecar(envelope, received_day=received_day)
        return envelope


@pytest.fixture
def inbox(tmp_path: Path, agency: Agency, run: Run) -> Inbox:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return Inbox(folder, agency, run, tmp_path / "scratch")


def decrypt_all(inbox: Inbox) -> Result:
    """``inbox --key-file``: decrypt everything new into inbox/reports (and list it as JSON)."""
    return inbox.run("inbox", "--key-file", inbox.agency.key_file, "--passphrase-file",
                     inbox.agency.passphrase_file, "--json", inbox.folder)
