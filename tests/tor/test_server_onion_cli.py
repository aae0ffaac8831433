"""`dropbox-server staff add/remove/list`, `onion rotate` and the `run --tor` failure messages;
none of these needs the private Tor network."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox_envelope.onion import ClientAuthKey, OnionServiceKey, parse_client_auth_secret
from dropbox_server.config import OnionDefenses
from dropbox_server.errors import OnionKeyError, TorError
from dropbox_server.onion_store import OnionKeyStore, write_hidden_service_dir
from dropbox_server.tor import add_onion_command, find_tor_binary, hidden_service_options
from tests.support import require_binary
from tests.tor.onion_server import ROOT, init_data_dir, server_cli, staff_add
from tests.tor.testnet import free_ports


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return init_data_dir(tmp_path)[0]


def test_staff_add_prints_the_secret_once_in_both_forms(data: Path) -> None:
    proc = server_cli("staff", "add", "alice", "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    staff = OnionKeyStore(data).load("staff")
    assert staff is not None
    assert f"Staff onion service: {staff.address}" in proc.stdout
    lines = [line.strip() for line in proc.stdout.splitlines()]
    auth_private = next(line for line in lines if ":descriptor:x25519:" in line)
    control = next(line for line in lines if line.startswith("x25519:"))
    service_id, key = parse_client_auth_secret(auth_private)
    assert service_id == staff.service_id
    assert parse_client_auth_secret(control) == (None, key)
    # Only the public half stays on the server, in tor's authorized_clients format.
    stored = data / "onion" / "staff-clients" / "alice.pub"
    assert stored.read_text() == key.service_line() + "\n"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert key.secret.hex() not in stored.read_text()
    assert "SIGHUP" in proc.stdout


def test_staff_add_twice_and_unknown_names(data: Path) -> None:
    staff_add(data, "alice")
    again = server_cli("staff", "add", "alice", "--data-dir", str(data))
    assert again.returncode == 1 and "already has a key" in again.stderr
    stranger = server_cli("staff", "add", "mallory", "--data-dir", str(data))
    assert stranger.returncode == 0
    assert "not a [[staff]] name" in stranger.stdout
    bad = server_cli("staff", "add", "../etc", "--data-dir", str(data))
    assert bad.returncode == 1 and "staff name" in bad.stderr


def test_staff_remove_only_that_key(data: Path) -> None:
    staff_add(data, "alice")
    staff_add(data, "bob")
    removed = server_cli("staff", "remove", "alice", "--data-dir", str(data))
    assert removed.returncode == 0, removed.stderr
    assert list(OnionKeyStore(data).clients()) == ["bob"]
    listed = server_cli("staff", "list", "--data-dir", str(data))
    assert listed.stdout.split() == ["bob"]
    missing = server_cli("staff", "remove", "alice", "--data-dir", str(data))
    assert missing.returncode == 1 and "no onion key" in missing.stderr


def test_staff_commands_need_an_initialised_folder(tmp_path: Path) -> None:
    proc = server_cli("staff", "add", "alice", "--data-dir", str(tmp_path))
    assert proc.returncode == 1 and "dropbox-server init" in proc.stderr
    assert not (tmp_path / "onion").exists()


def test_onion_rotate_asks_for_confirmation(data: Path) -> None:
    first = server_cli("onion", "rotate", "--which", "public", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr  # no address yet: nothing to lose
    old = OnionKeyStore(data).load("public")
    assert old is not None
    refused = server_cli("onion", "rotate", "--which", "public", "--data-dir", str(data))
    assert refused.returncode == 2 and old.address in refused.stderr
    assert OnionKeyStore(data).load("public") == old
    (data / "tor").mkdir(mode=0o700)
    copy = data / "tor" / "onion-public"  # what the server's own tor published from
    write_hidden_service_dir(copy, old, {})
    done = server_cli("onion", "rotate", "--which", "public", "--data-dir", str(data), "--yes")
    assert done.returncode == 0
    assert not (copy / "hs_ed25519_secret_key").exists()  # the replaced key is not kept there
    new = OnionKeyStore(data).load("public")
    assert new is not None and new != old
    assert f"{old.address} -> {new.address}" in done.stdout


def test_add_onion_command() -> None:
    key = OnionServiceKey.from_seed(bytes(32))
    alice, bob = ClientAuthKey.generate(), ClientAuthKey.generate()
    line = add_onion_command("staff", key, 8081, {"alice": alice.public, "bob": bob.public},
                             OnionDefenses())
    assert line.startswith("ADD_ONION " + key.add_onion_key() + " ")
    assert "PoWDefensesEnabled=1" in line and "Port=80,127.0.0.1:8081" in line
    assert "PoWQueueRate=250 PoWQueueBurst=2500" in line
    assert re.findall(r"ClientAuthV3=(\S+)", line) == [alice.public_b32(), bob.public_b32()]
    assert "V3Auth" in line
    public = add_onion_command("public", key, 8080, {}, OnionDefenses(pow_queue_rate=9))
    assert "ClientAuthV3" not in public and "V3Auth" not in public
    assert "PoWQueueRate=9 " in public and "MaxStreams=32 " in public
    assert "MaxStreams=5 " in add_onion_command("public", key, 8080, {},
                                                OnionDefenses(public_max_streams=5))
    without = add_onion_command("public", key, 8080, {}, OnionDefenses(pow_defenses=False))
    assert "PoW" not in without


def test_hidden_service_options_carry_every_defence(tmp_path: Path) -> None:
    options = hidden_service_options("public", tmp_path / "onion-public", 8080,
                                     OnionDefenses(intro_dos_rate_per_sec=7,
                                                   intro_dos_burst_per_sec=70))
    assert options[0] == ("HiddenServiceDir", str(tmp_path / "onion-public"))
    assert dict(options) == {
        "HiddenServiceDir": str(tmp_path / "onion-public"),
        "HiddenServiceVersion": "3",
        "HiddenServicePort": "80 127.0.0.1:8080",
        "HiddenServiceMaxStreams": "32",
        "HiddenServiceMaxStreamsCloseCircuit": "1",
        "HiddenServicePoWDefensesEnabled": "1",
        "HiddenServicePoWQueueRate": "250",
        "HiddenServicePoWQueueBurst": "2500",
        "HiddenServiceEnableIntroDoSDefense": "1",
        "HiddenServiceEnableIntroDoSRatePerSec": "7",
        "HiddenServiceEnableIntroDoSBurstPerSec": "70",
    }
    off = dict(hidden_service_options("staff", tmp_path, 8081, OnionDefenses(
        pow_defenses=False, intro_dos_defense=False)))
    assert dict(hidden_service_options("staff", tmp_path, 8081, OnionDefenses(
        staff_max_streams=3)))["HiddenServiceMaxStreams"] == "3"
    assert off["HiddenServicePoWDefensesEnabled"] == "0"
    assert off["HiddenServiceEnableIntroDoSDefense"] == "0"
    assert off["HiddenServiceMaxStreams"] == "8"
    assert not [k for k in off if "Rate" in k or "Burst" in k]


def test_hidden_service_dir_mirrors_the_store(tmp_path: Path) -> None:
    key = OnionServiceKey.from_seed(bytes(32))
    alice, bob = ClientAuthKey.generate(), ClientAuthKey.generate()
    folder = tmp_path / "onion-staff"
    write_hidden_service_dir(folder, key, {"alice": alice.public, "bob": bob.public})
    assert (folder / "hs_ed25519_secret_key").read_bytes() == key.to_tor_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "hs_ed25519_secret_key").stat().st_mode) == 0o600
    auth = folder / "authorized_clients"
    assert (auth / "alice.auth").read_text() == alice.service_line() + "\n"
    (folder / "hostname").write_text("stale\n")
    write_hidden_service_dir(folder, key, {"bob": bob.public})  # alice revoked
    assert sorted(p.name for p in auth.iterdir()) == ["bob.auth"]
    assert not (folder / "hostname").exists()  # tor writes it again from the key it loads
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path)
    with pytest.raises(OnionKeyError, match="not a folder"):
        write_hidden_service_dir(planted, key, {})


def test_missing_tor_binary_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    with pytest.raises(TorError, match="apt install tor"):
        find_tor_binary()


def _run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dropbox_server", "run", "--data-dir",
                           str(data), "--port", "0", "--staff-port", "0", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=90, check=False)


def test_run_option_conflicts(data: Path) -> None:
    proc = _run(data, "--dev", "--tor")
    assert proc.returncode == 1 and "--dev serves without Tor" in proc.stderr
    proc = _run(data, "--no-tor", "--tor-control", "9051")
    assert proc.returncode == 1 and "need --tor" in proc.stderr
    proc = _run(data, "--tor-control", "9051", "--tor-extra-config", "x.torrc")
    assert proc.returncode == 1 and "only applies to a tor the server launches" in proc.stderr


def test_run_with_an_unreachable_control_port_fails_clearly(data: Path) -> None:
    [port] = free_ports(1)
    proc = _run(data, "--tor-control", f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert "cannot reach tor's control port" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.tor
def test_run_shows_tor_log_when_tor_fails_to_start(data: Path, tmp_path: Path) -> None:
    require_binary("tor", "the server launches tor")
    extra = tmp_path / "bad.torrc"
    extra.write_text("NoSuchOption 1\n", encoding="utf-8")
    proc = _run(data, "--tor-extra-config", str(extra))
    assert proc.returncode == 1
    assert "tor stopped right after start" in proc.stderr
    assert "NoSuchOption" in proc.stderr  # the end of tor's own output
    assert "Traceback" not in proc.stderr
    assert stat.S_IMODE((data / "tor").stat().st_mode) == 0o700
