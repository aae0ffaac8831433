"""keygen and fingerprint."""

from __future__ import annotations

import getpass
import json
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client_cli import keyfiles
from dropbox_envelope.keys import (
    TEST_KDF,
    PublicKey,
    SecretKey,
    StaffPublicKey,
    StaffSecretKey,
    inspect_secret_key,
    unlock_secret_key,
)
from tests.cli.conftest import PASSPHRASE, KeyPair, Run

_FINGERPRINT = re.compile(r"^fingerprint: ((?:\d{5} ){5}\d{5})$", re.MULTILINE)
_PUBLIC = re.compile(r"^public key:  (srdb1-\S+)$", re.MULTILINE)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("kind", "prefix", "key_type", "secret_type"), [
    ("agency", "srdb1-x25519-", PublicKey, SecretKey),
    ("staff", "srdb1-ed25519-", StaffPublicKey, StaffSecretKey),
])
def test_keygen_writes_a_key_pair(tmp_path: Path, passphrase_file: Path, run: Run, kind: str,
                                  prefix: str, key_type: Any, secret_type: type) -> None:
    out = tmp_path / "keys"
    result = run("keygen", "--out", out, "--kind", kind, "--passphrase-file", passphrase_file)
    assert result.code == 0, result.err
    key_path, pub_path = out / f"{kind}.key", out / f"{kind}.pub"
    assert sorted(p.name for p in out.iterdir()) == sorted([key_path.name, pub_path.name])

    assert _mode(key_path) == 0o600
    pub_text = pub_path.read_text(encoding="ascii")
    assert re.fullmatch(re.escape(prefix) + r"[a-z2-7]+\n", pub_text)
    public = key_type.decode(pub_text)

    key_text = key_path.read_text(encoding="utf-8")
    info = inspect_secret_key(key_text)
    assert (info.kind, info.name, info.public_key) == (kind, kind, pub_text.strip())
    assert info.params == TEST_KDF
    secret = unlock_secret_key(key_text, PASSPHRASE)
    assert isinstance(secret, secret_type)
    assert secret.public_key == public

    # The printed public key and fingerprint are the file's, and match the fingerprint command.
    assert _PUBLIC.findall(result.out) == [pub_text.strip()]
    assert _FINGERPRINT.findall(result.out) == [public.fingerprint]
    assert "offline" in result.out or "private" in result.out  # custody reminder
    for path in (pub_path, key_path):
        shown = run("fingerprint", path)
        assert shown.code == 0, shown.err
        assert _FINGERPRINT.findall(shown.out) == [public.fingerprint]
        assert _PUBLIC.findall(shown.out) == [pub_text.strip()]


def test_keygen_name_option(tmp_path: Path, passphrase_file: Path, run: Run) -> None:
    result = run("keygen", "--out", tmp_path, "--name", "agency-backup-2025",
                 "--passphrase-file", passphrase_file)
    assert result.code == 0, result.err
    assert (tmp_path / "agency-backup-2025.key").exists()
    assert json.loads((tmp_path / "agency-backup-2025.key").read_text())["name"] == \
        "agency-backup-2025"


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "CON", "x\ny"])
def test_keygen_refuses_unsafe_names(tmp_path: Path, passphrase_file: Path, run: Run,
                                     name: str) -> None:
    result = run("keygen", "--out", tmp_path / "k", "--name", name,
                 "--passphrase-file", passphrase_file)
    assert result.code == 1
    assert result.err.startswith("error: --name")
    assert not (tmp_path / "evil.key").exists()
    assert not (tmp_path / "k").exists()


def test_keygen_refuses_to_overwrite(agency: KeyPair, passphrase_file: Path, run: Run) -> None:
    before = (agency.key.read_bytes(), agency.pub.read_bytes())
    result = run("keygen", "--out", agency.key.parent, "--passphrase-file", passphrase_file)
    assert result.code == 1
    assert result.err.startswith("error: ") and "already exists" in result.err
    assert result.err.count("\n") == 1
    assert (agency.key.read_bytes(), agency.pub.read_bytes()) == before

    # An existing .pub alone also blocks, and no orphan .key is left behind.
    lone = agency.key.parent / "lone.pub"
    lone.write_text("placeholder\n")
    result = run("keygen", "--out", agency.key.parent, "--name", "lone",
                 "--passphrase-file", passphrase_file)
    assert result.code == 1
    assert not (agency.key.parent / "lone.key").exists()
    assert lone.read_text() == "placeholder\n"


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Replace getpass.getpass with answers typed in advance; returns the prompts seen."""

    def _typed(*answers: str) -> list[str]:
        prompts: list[str] = []
        queue: Iterator[str] = iter(answers)

        def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
            prompts.append(prompt)
            return next(queue)

        monkeypatch.setattr(getpass, "getpass", fake_getpass)
        return prompts

    return _typed


def test_keygen_passphrase_mismatch(tmp_path: Path, run: Run,
                                    typed: Callable[..., list[str]]) -> None:
    prompts = typed("one passphrase", "another passphrase")
    result = run("keygen", "--out", tmp_path / "keys")
    assert result.code == 1
    assert result.err == "error: the two passphrases do not match; nothing was written\n"
    assert len(prompts) == 2
    assert list((tmp_path / "keys").iterdir()) == []


def test_keygen_empty_passphrase(tmp_path: Path, run: Run,
                                 typed: Callable[..., list[str]]) -> None:
    typed("")
    result = run("keygen", "--out", tmp_path / "keys")
    assert result.code == 1
    assert "empty passphrase" in result.err
    assert list((tmp_path / "keys").iterdir()) == []


def test_keygen_with_typed_passphrase(tmp_path: Path, run: Run,
                                      typed: Callable[..., list[str]]) -> None:
    typed("typed passphrase here", "typed passphrase here")
    result = run("keygen", "--out", tmp_path / "keys", "--kind", "staff")
    assert result.code == 0, result.err
    secret = unlock_secret_key((tmp_path / "keys" / "staff.key").read_text(),
                               "typed passphrase here")
    assert isinstance(secret, StaffSecretKey)


def test_passphrase_file_first_line_only(tmp_path: Path, run: Run) -> None:
    passphrase = tmp_path / "pp"
    passphrase.write_bytes("  spaces kept ü\r\nsecond line ignored\n".encode())
    assert run("keygen", "--out", tmp_path / "k", "--passphrase-file", passphrase).code == 0
    unlock_secret_key((tmp_path / "k" / "agency.key").read_text(), "  spaces kept ü")

    empty = tmp_path / "empty"
    empty.write_text("\nsecond\n")
    result = run("keygen", "--out", tmp_path / "k2", "--passphrase-file", empty)
    assert result.code == 1 and "empty" in result.err


def test_default_kdf_without_test_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       passphrase_file: Path, run: Run) -> None:
    """Without the hidden flag or SRDB_TEST_KDF the real (slow) parameters are used; the flag
    alone also selects the test ones."""
    monkeypatch.delenv("SRDB_TEST_KDF")
    assert keyfiles.wants_test_kdf(False) is False
    result = run("keygen", "--out", tmp_path, "--kdf-test-params",
                 "--passphrase-file", passphrase_file)
    assert result.code == 0, result.err
    assert inspect_secret_key((tmp_path / "agency.key").read_text()).params == TEST_KDF
    assert "--kdf-test-params" not in run("keygen", "--help").out


def test_fingerprint_errors(tmp_path: Path, run: Run) -> None:
    missing = run("fingerprint", tmp_path / "missing.pub")
    assert missing.code == 1
    assert missing.err.startswith("error: ") and "No such file" in missing.err
    bad = tmp_path / "bad.pub"
    bad.write_text("srdb1-x25519-aaaa\n")
    result = run("fingerprint", bad)
    assert result.code == 1 and result.err.startswith("error: ")
    assert "Traceback" not in result.err
    junk = tmp_path / "junk.key"
    junk.write_text("{\"format\": \"something else\"}")
    result = run("fingerprint", junk)
    assert result.code == 1 and "not a Safe Report Drop Box secret key file" in result.err
    big = tmp_path / "big.pub"
    big.write_bytes(b"x" * 100_000)
    assert "too large" in run("fingerprint", big).err


def test_fingerprint_of_a_typo(agency: KeyPair, run: Run, tmp_path: Path) -> None:
    text = agency.pub.read_text().strip()
    typo = tmp_path / "typo.pub"
    typo.write_text(text[:-3] + ("a" if text[-3] != "a" else "b") + text[-2:] + "\n")
    result = run("fingerprint", typo)
    assert result.code == 1
    assert "checksum" in result.err


def test_usage_errors_exit_2(run: Run) -> None:
    assert run().code == 2
    assert run("keygen").code == 2
    assert run("keygen", "--out", "x", "--kind", "nope").code == 2
    assert run("frobnicate").code == 2
    assert run("--help").code == 0
