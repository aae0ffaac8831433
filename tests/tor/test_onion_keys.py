"""Onion service and client-authorisation keys: our formats are tor's formats.

The known answers come from tor itself (0.4.9.11): tor is started with ``DisableNetwork 1`` and a
``HiddenServiceDir``; it writes ``hostname`` at start-up without touching any network.
"""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from dropbox_envelope.errors import OnionKeyError
from dropbox_envelope.onion import (
    HS_SECRET_KEY_HEADER,
    ClientAuthKey,
    OnionServiceKey,
    onion_address,
    parse_client_auth_public,
    parse_client_auth_secret,
    parse_onion_address,
)
from dropbox_server.onion_store import OnionKeyStore
from tests.support import require_binary

SEED = bytes(range(32))
# Address tor 0.4.9.11 wrote to `hostname` for OnionServiceKey.from_seed(bytes(range(32)))
# (test_tor_reads_our_key_file below recomputes it with tor on every run).
SEED_ADDRESS = "aoqqpp7tzyil4hlq3umoos6atft6jvrqtosq2xy53sdgiesvgg4bqead.onion"


def _tor_hostname(tmp_path: Path, key_file: bytes | None) -> tuple[str, bytes]:
    """Start tor offline with one HiddenServiceDir (holding ``key_file`` if given); return the
    hostname tor computed and the secret key file tor used."""
    tor = require_binary("tor", "known answers for onion keys come from tor itself")
    hs = tmp_path / "hs"
    hs.mkdir(mode=0o700)
    if key_file is not None:
        (hs / "hs_ed25519_secret_key").write_bytes(key_file)
        os.chmod(hs / "hs_ed25519_secret_key", 0o600)
    torrc = tmp_path / "torrc"
    torrc.write_text(f"DataDirectory {tmp_path / 'data'}\nDisableNetwork 1\nSocksPort 0\n"
                     f"HiddenServiceDir {hs}\nHiddenServicePort 80 127.0.0.1:9\n"
                     "Log notice stdout\n", encoding="utf-8")
    log = tmp_path / "tor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([tor, "-f", str(torrc), "--defaults-torrc", "/dev/null"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (hs / "hostname").exists():
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "tor wrote no hostname within 30 s"
            time.sleep(0.1)
        time.sleep(0.2)  # hostname is written in one go, but be sure it is complete
        return ((hs / "hostname").read_text("ascii").strip(),
                (hs / "hs_ed25519_secret_key").read_bytes())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.tor
def test_we_read_a_key_tor_generated(tmp_path: Path) -> None:
    hostname, key_file = _tor_hostname(tmp_path, None)
    key = OnionServiceKey.from_tor_file(key_file)
    assert key.address == hostname
    public_file = (tmp_path / "hs" / "hs_ed25519_public_key").read_bytes()
    assert public_file[32:] == key.public_key
    assert key.to_tor_file() == key_file


@pytest.mark.tor
def test_tor_reads_our_key_file(tmp_path: Path) -> None:
    key = OnionServiceKey.from_seed(SEED)
    hostname, _ = _tor_hostname(tmp_path, key.to_tor_file())
    assert hostname == key.address == SEED_ADDRESS


def test_expanded_key_matches_rfc8032_public_key() -> None:
    from nacl.signing import SigningKey

    key = OnionServiceKey.from_seed(SEED)
    assert key.public_key == bytes(SigningKey(SEED).verify_key)
    assert key.to_tor_file()[:32] == HS_SECRET_KEY_HEADER
    assert key.add_onion_key() == "ED25519-V3:" + base64.b64encode(key.expanded).decode()
    assert key.expanded.hex() not in repr(key)


def test_generate_uses_the_random_source() -> None:
    assert OnionServiceKey.generate(lambda n: SEED[:n]).address == SEED_ADDRESS
    assert OnionServiceKey.generate().address != OnionServiceKey.generate().address


def test_onion_address_round_trip_and_typos() -> None:
    key = OnionServiceKey.from_seed(SEED)
    assert parse_onion_address(key.address) == key.public_key
    assert parse_onion_address("http://" + key.address.upper() + "/path") == key.public_key
    assert parse_onion_address(key.service_id) == key.public_key
    typo = ("a" if key.address[5] != "a" else "b").join((key.address[:5], key.address[6:]))
    with pytest.raises(OnionKeyError, match="checksum"):
        parse_onion_address(typo)
    with pytest.raises(OnionKeyError, match="v3"):
        parse_onion_address("expyuzz4wqqyqhjn.onion")
    with pytest.raises(OnionKeyError):
        onion_address(b"short")


def test_malformed_key_files_are_refused() -> None:
    good = OnionServiceKey.from_seed(SEED).to_tor_file()
    with pytest.raises(OnionKeyError, match="header"):
        OnionServiceKey.from_tor_file(b"x" + good[1:])
    with pytest.raises(OnionKeyError, match="header"):
        OnionServiceKey.from_tor_file(good[:-1])
    with pytest.raises(OnionKeyError, match="clamped"):
        OnionServiceKey(bytes(64))


def test_client_auth_formats() -> None:
    key = ClientAuthKey.generate(lambda n: bytes([7]) * n)
    service = OnionServiceKey.from_seed(SEED)
    line = key.service_line()
    assert line.startswith("descriptor:x25519:") and len(line.split(":")[2]) == 52
    assert parse_client_auth_public(line) == key.public
    assert key.public_b32() == line.split(":")[2]
    private = key.auth_private_line(service.address)
    assert private.startswith(service.service_id + ":descriptor:x25519:")
    assert parse_client_auth_secret(private) == (service.service_id, key)
    assert key.control_key().startswith("x25519:")
    assert parse_client_auth_secret(key.control_key()) == (None, key)
    assert key.secret.hex() not in repr(key)
    # Clamped as tor clamps curve25519 secrets.
    assert key.secret[0] & 7 == 0 and key.secret[31] & 0xC0 == 0x40
    for bad in ("x25519:@@@", "x25519:" + base64.b64encode(b"short").decode(), "nonsense",
                f"{service.service_id}:descriptor:x25519:AAAA"):
        with pytest.raises(OnionKeyError):
            parse_client_auth_secret(bad)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_keeps_keys_private_and_stable(tmp_path: Path) -> None:
    store = OnionKeyStore(tmp_path)
    assert store.load("public") is None
    first = store.load_or_create("public")
    assert store.load_or_create("public") == first
    assert OnionKeyStore(tmp_path).load("public") == first
    assert _mode(tmp_path / "onion") == 0o700
    assert _mode(tmp_path / "onion" / "public.key") == 0o600
    assert store.load_or_create("staff") != first
    old, new = store.rotate("public")
    assert old == first.address and new != first and store.load("public") == new
    assert _mode(tmp_path / "onion" / "public.key") == 0o600
    assert not list((tmp_path / "onion").glob("*.tmp"))


def test_store_staff_clients(tmp_path: Path) -> None:
    store = OnionKeyStore(tmp_path)
    alice = store.add_client("alice")
    bob = store.add_client("bob.smith-2")
    assert store.clients() == {"alice": alice.public, "bob.smith-2": bob.public}
    assert _mode(tmp_path / "onion" / "staff-clients" / "alice.pub") == 0o600
    assert _mode(tmp_path / "onion" / "staff-clients") == 0o700
    with pytest.raises(OnionKeyError, match="already has a key"):
        store.add_client("alice")
    store.remove_client("alice")
    assert store.clients() == {"bob.smith-2": bob.public}
    with pytest.raises(OnionKeyError, match="no onion key"):
        store.remove_client("alice")
    for bad in ("../x", "", ".hidden", "a/b", "x" * 65, "a..b"):
        with pytest.raises(OnionKeyError, match="staff name"):
            store.add_client(bad)


def test_store_reports_a_corrupted_key_with_its_path(tmp_path: Path) -> None:
    store = OnionKeyStore(tmp_path)
    store.load_or_create("staff")
    (tmp_path / "onion" / "staff.key").write_bytes(b"garbage")
    with pytest.raises(OnionKeyError, match=r"staff\.key"):
        store.load("staff")

