"""Fixtures for the dropbox-client tests: fast test KDF, key pairs, envelope helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dropbox_envelope.envelope import Encryptor
from dropbox_envelope.keys import PublicKey
from dropbox_envelope.manifest import Manifest

# The CLI runner's types, for the tests here that take the ``run`` fixture (tests/conftest.py).
from tests.support import Result as Result
from tests.support import Run as Run

PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class KeyPair:
    key: Path
    pub: Path


@pytest.fixture(autouse=True)
def _fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key made in these tests uses the weak test KDF parameters."""
    monkeypatch.setenv("SRDB_TEST_KDF", "1")


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase.txt"
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    return path


@pytest.fixture
def make_keys(tmp_path: Path, passphrase_file: Path, run: Run) -> Callable[..., KeyPair]:
    def _make(name: str = "agency", kind: str = "agency") -> KeyPair:
        result = run("keygen", "--out", tmp_path / "keys", "--name", name, "--kind", kind,
                     "--passphrase-file", passphrase_file)
        assert result.code == 0, result.err
        return KeyPair(tmp_path / "keys" / f"{name}.key", tmp_path / "keys" / f"{name}.pub")

    return _make


@pytest.fixture
def agency(make_keys: Callable[..., KeyPair]) -> KeyPair:
    return make_keys()


def seal(path: Path, recipients: list[Path],
         attachments: Sequence[tuple[str, bytes]] = (), **finish: Any) -> Path:
    """Write an envelope with the Encryptor directly (any names, any manifest extras)."""
    encryptor = Encryptor([PublicKey.decode(p.read_text()) for p in recipients])
    pieces: list[bytes] = []
    for name, data in attachments:
        pieces += encryptor.add_attachment(name, "application/octet-stream", data)
    pieces += encryptor.finish(**finish)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(pieces))
    return path


def tree(folder: Path) -> list[str]:
    """Every path under ``folder``, relative, sorted (hidden entries included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def seal_ascii_manifest(path: Path, recipients: list[Path],
                        attachments: Sequence[tuple[str, bytes]] = (), *, lenient: bool = False,
                        **finish: Any) -> Path:
    """:func:`seal`, but the manifest is written as ASCII JSON, as a browser's JSON.stringify
    may: then it can carry lone UTF-16 surrogates ("\\ud83d") that UTF-8 cannot encode, in
    the message, the answers, or attachment names (which the Encryptor itself refuses, so they
    go in as placeholders and are swapped in the manifest). ``lenient`` switches off the
    Encryptor's own check that a reader would accept the manifest, to craft refused ones."""
    real_names = {f"placeholder-{i}": name for i, (name, _data) in enumerate(attachments)}

    def ascii_json(self: Manifest) -> bytes:
        doc = self.to_dict()
        for entry in doc["attachments"]:
            entry["name"] = real_names.get(entry["name"], entry["name"])
        return json.dumps(doc, ensure_ascii=True, sort_keys=True,
                          separators=(",", ":")).encode("ascii")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Manifest, "to_json", ascii_json)
        if lenient:
            patch.setattr(Manifest, "from_json", classmethod(lambda cls, _raw: cls("report")))
        return seal(path, recipients,
                    [(f"placeholder-{i}", data) for i, (_name, data) in enumerate(attachments)],
                    **finish)
