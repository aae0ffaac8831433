"""End to end over the private Tor network: `dropbox-server run --tor` launches its own tor,
which joins the network and publishes both sites; a tor client fetches them by SOCKS."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbox_envelope.onion import parse_onion_address
from dropbox_server.middlewares import SECURITY_HEADERS
from dropbox_server.onion_store import OnionKeyStore
from tests.tor.onion_server import (
    SOCKS_BAD_CLIENT_AUTH,
    SOCKS_MISSING_CLIENT_AUTH,
    ServerProcess,
    StaffOnionKey,
    fetch,
    init_data_dir,
    server_cli,
    socks_error,
    staff_add,
    stop_quietly,
)
from tests.tor.testnet import ControlConnection, Node, TorNetwork

pytestmark = pytest.mark.tor


@pytest.fixture(scope="module")
def join_config(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("join") / "testnet.torrc"
    path.write_text(tor_network.join_config(), encoding="utf-8")
    return path


class Site:
    """A running server with two staff onion keys issued."""

    def __init__(self, data: Path, server: ServerProcess, alice: StaffOnionKey,
                 bob: StaffOnionKey) -> None:
        self.data, self.server, self.alice, self.bob = data, server, alice, bob


#: Not the defaults, so that the test sees dropbox.toml's values reach tor.
INTRO_RATE, INTRO_BURST = 30, 300


def _set_tor_setting(data: Path, key: str, value: str) -> None:
    path = data / "dropbox.toml"
    text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}",
                          path.read_text(encoding="utf-8"), flags=re.M)
    assert count == 1, key
    path.write_text(text, encoding="utf-8")


def _services_in_effect(data: Path) -> list[dict[str, str]]:
    """Tor's own answer (GETCONF) for the onion services of the server's tor, one dict each."""
    with ControlConnection.open(data / "tor" / "control.sock",
                                data / "tor" / "control_auth_cookie") as conn:
        lines = conn.request("GETCONF HiddenServiceOptions")
    services: list[dict[str, str]] = []
    for line in lines:
        key, _, value = line.partition("=")
        if key == "HiddenServiceDir":
            services.append({})
        if key.startswith("HiddenService") and services:
            services[-1][key] = value
    return services


def _assert_defences(service: dict[str, str]) -> None:
    assert service["HiddenServiceEnableIntroDoSDefense"] == "1"
    assert service["HiddenServiceEnableIntroDoSRatePerSec"] == str(INTRO_RATE)
    assert service["HiddenServiceEnableIntroDoSBurstPerSec"] == str(INTRO_BURST)
    assert service["HiddenServicePoWDefensesEnabled"] == "1"
    assert service["HiddenServicePoWQueueRate"] == "250"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, join_config: Path) -> Iterator[Site]:
    data, _keys = init_data_dir(tmp_path_factory.mktemp("site"))
    _set_tor_setting(data, "intro_dos_rate_per_sec", str(INTRO_RATE))
    _set_tor_setting(data, "intro_dos_burst_per_sec", str(INTRO_BURST))
    alice, bob = staff_add(data, "alice"), staff_add(data, "bob")
    server = ServerProcess(data, join_config)
    try:
        server.wait_published()
        print(f"\nserver published both onion services {server.publish_seconds:.1f} s "
              "after start (own tor bootstrap included)")
        yield Site(data, server, alice, bob)
    finally:
        stop_quietly(server)


def _client(tor_network: TorNetwork, name: str) -> Node:
    """A fresh tor client: no cached descriptors, no client-auth keys."""
    return tor_network.start_client(name)


def test_public_site_over_tor(site: Site, tor_network: TorNetwork) -> None:
    assert tor_network.client is not None and tor_network.client.socks_port
    t0 = time.monotonic()
    page = fetch(tor_network.client.socks_port, f"http://{site.server.public}/")
    print(f"\nfirst fetch of the public onion: {time.monotonic() - t0:.2f} s")
    assert page.status == 200
    for name, value in SECURITY_HEADERS.items():
        assert page.headers.get(name) == value, name
    assert b"<html" in page.body.lower()


def test_addresses_are_the_stored_keys(site: Site) -> None:
    text = site.server.output()
    assert site.server.staff is not None
    assert "client authorisation: alice, bob" in text
    assert site.alice.service_id + ".onion" == site.server.staff
    assert parse_onion_address(site.server.public)  # checksum valid
    assert site.server.public != site.server.staff
    stored = OnionKeyStore(site.data).load("public")
    assert stored is not None and stored.address == site.server.public


def test_own_tor_applies_the_configured_intro_point_rate_limits(site: Site) -> None:
    """The launched tor runs both services from HiddenServiceDir folders with every defence of
    dropbox.toml's [tor], including what ADD_ONION cannot set."""
    services = _services_in_effect(site.data)
    folders = [s["HiddenServiceDir"] for s in services]
    assert folders == [str(site.data / "tor" / "onion-public"),
                       str(site.data / "tor" / "onion-staff")]
    for service in services:
        _assert_defences(service)
    assert services[1]["HiddenServiceMaxStreams"] == "8"
    # The same lines are in the torrc, so a reload of that tor keeps them.
    torrc = (site.data / "tor" / "torrc").read_text(encoding="utf-8")
    assert torrc.count(f"HiddenServiceEnableIntroDoSBurstPerSec {INTRO_BURST}\n") == 2
    # Tor loaded our keys (it rewrote hostname) and sees one .auth file per staff member.
    tor_dir = site.data / "tor"
    assert (tor_dir / "onion-public" / "hostname").read_text().strip() == site.server.public
    assert (tor_dir / "onion-staff" / "hostname").read_text().strip() == site.server.staff
    assert sorted(p.name for p in (tor_dir / "onion-staff" / "authorized_clients").iterdir()) \
        == ["alice.auth", "bob.auth"]
    # A reload of that tor itself (SIGHUP to it, not to the server) keeps both services.
    [tor_pid] = _tor_pids_using(tor_dir)
    os.kill(tor_pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "Received reload signal" not in (tor_dir / "notice.log").read_text():
        assert time.monotonic() < deadline, "tor did not reload"
        time.sleep(0.1)
    assert _services_in_effect(site.data) == services


def test_published_descriptor_offers_proof_of_work(site: Site) -> None:
    import stem.descriptor.hidden_service as hs

    control = site.data / "tor" / "control.sock"
    with ControlConnection.open(control, site.data / "tor" / "control_auth_cookie") as conn:
        service_id = site.server.public.removesuffix(".onion")
        text = conn.getinfo(f"hs/service/desc/id/{service_id}")
    descriptor = hs.HiddenServiceDescriptorV3.from_str(text.split("\n", 1)[-1])
    inner = descriptor.decrypt(site.server.public)
    assert "pow-params v1 " in str(inner)


def test_staff_service_needs_a_client_key(site: Site, tor_network: TorNetwork) -> None:
    assert site.server.staff is not None
    client = _client(tor_network, "staffclient")
    assert client.socks_port
    url = f"http://{site.server.staff}/"
    assert socks_error(client.socks_port, url) == SOCKS_MISSING_CLIENT_AUTH
    with client.control() as conn:
        reply = conn.request(f"ONION_CLIENT_AUTH_ADD {site.alice.service_id} "
                             f"{site.alice.control_key}")
    assert reply[-1] == "Registered client and decrypted desc"
    answer = fetch(client.socks_port, url)
    assert answer.status < 500  # any HTTP answer: the staff API itself was reached
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"


def test_staff_remove_revokes_only_that_key_and_addresses_survive_restart(
        tmp_path: Path, join_config: Path, tor_network: TorNetwork) -> None:
    data, _keys = init_data_dir(tmp_path)
    alice, bob = staff_add(data, "alice"), staff_add(data, "bob")
    with ServerProcess(data, join_config) as first:
        first.wait_published()
    assert first.proc.returncode == 0, first.output()
    removed = server_cli("staff", "remove", "alice", "--data-dir", str(data))
    assert removed.returncode == 0, removed.stderr
    assert "revoked" in removed.stdout
    alice_client, bob_client = (_client(tor_network, "alicetor"),
                                _client(tor_network, "bobtor"))
    for client, key in ((alice_client, alice), (bob_client, bob)):
        with client.control() as conn:
            conn.request(f"ONION_CLIENT_AUTH_ADD {key.service_id} {key.control_key}")
    with ServerProcess(data, join_config) as second:
        second.wait_published()
        assert (second.public, second.staff) == (first.public, first.staff)
        assert "client authorisation: bob" in second.output()
        assert alice_client.socks_port and bob_client.socks_port
        staff_url = f"http://{second.staff}/"
        assert fetch(bob_client.socks_port, staff_url).status < 500
        assert socks_error(alice_client.socks_port, staff_url) == SOCKS_BAD_CLIENT_AUTH
        assert fetch(alice_client.socks_port, f"http://{second.public}/").status == 200
        # Defaults of [tor] (this data folder's dropbox.toml was not edited).
        staff_dir = data / "tor" / "onion-staff" / "authorized_clients"
        assert [p.name for p in staff_dir.iterdir()] == ["bob.auth"]
        for service in _services_in_effect(data):
            assert service["HiddenServiceEnableIntroDoSDefense"] == "1"
            assert service["HiddenServiceEnableIntroDoSRatePerSec"] == "25"
            assert service["HiddenServiceEnableIntroDoSBurstPerSec"] == "200"


def _tor_pids_using(folder: Path) -> list[int]:
    """PIDs of tor processes whose command line names a file in ``folder`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().split(") ", 1)[1][0]
            except OSError:
                continue
            if state != "Z" and any(str(folder).encode() in arg for arg in argv[1:]) and \
                    argv[0].endswith(b"tor"):
                pids.append(int(entry.name))
    return pids


def test_server_uses_a_running_tor_through_its_control_port(
        tmp_path: Path, tor_network: TorNetwork) -> None:
    host = _client(tor_network, "exthost")  # a tor the operator runs, not ours
    assert tor_network.client is not None and tor_network.client.socks_port
    data, _keys = init_data_dir(tmp_path)
    with ServerProcess(data, None, "--tor-control", f"127.0.0.1:{host.control_port}") as server:
        server.wait_published()
        assert "started its own tor" not in server.output()
        # ADD_ONION cannot carry intro-point rate limits: said once, with where they go.
        assert server.output().count("introduction-point rate limits") == 1
        assert "torrc.example" in server.output()
        assert server.staff is None  # no staff onion keys issued: the staff API stays offline
        assert "staff onion:  not published" in server.output()
        assert fetch(tor_network.client.socks_port, f"http://{server.public}/").status == 200
    assert server.proc.returncode == 0, server.output()
    assert host.alive(), "the server must not stop a tor it did not start"
    assert not (data / "tor").exists()


def test_killed_server_takes_its_tor_down(tmp_path: Path, join_config: Path) -> None:
    data, _keys = init_data_dir(tmp_path)
    server = ServerProcess(data, join_config)
    try:
        server.wait_published()
        tors = _tor_pids_using(data / "tor")
        assert len(tors) == 1
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _tor_pids_using(data / "tor") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _tor_pids_using(data / "tor"), "tor outlived its killed server"
    finally:
        stop_quietly(server)
        for pid in _tor_pids_using(data / "tor"):
            os.kill(pid, signal.SIGKILL)


def test_sighup_publishes_a_new_staff_key_without_restart(site: Site,
                                                          tor_network: TorNetwork) -> None:
    # Last in this module: it changes the shared server's staff keys.
    carol = staff_add(site.data, "carol")
    before = site.server.output().count("onion services published")
    site.server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 120
    while "client authorisation: alice, bob, carol" not in site.server.output():
        assert site.server.proc.poll() is None, site.server.output()
        assert time.monotonic() < deadline, site.server.output()
        time.sleep(0.2)
    assert site.server.output().count("onion services published") == before
    client = _client(tor_network, "carolstor")
    assert client.socks_port
    with client.control() as conn:
        conn.request(f"ONION_CLIENT_AUTH_ADD {carol.service_id} {carol.control_key}")
    assert fetch(client.socks_port, f"http://{site.server.staff}/").status < 500
    # Revoking one key with SIGHUP: tor uploads a descriptor bob cannot decrypt any more,
    # and the staff service keeps every defence.
    removed = server_cli("staff", "remove", "bob", "--data-dir", str(site.data))
    assert removed.returncode == 0, removed.stderr
    site.server.proc.send_signal(signal.SIGHUP)
    while "client authorisation: alice, carol)" not in site.server.output():
        assert site.server.proc.poll() is None, site.server.output()
        assert time.monotonic() < deadline + 120, site.server.output()
        time.sleep(0.2)
    bob_client = _client(tor_network, "bobrevoked")
    assert bob_client.socks_port
    with bob_client.control() as conn:
        conn.request(f"ONION_CLIENT_AUTH_ADD {site.bob.service_id} {site.bob.control_key}")
    assert socks_error(bob_client.socks_port, f"http://{site.server.staff}/") == \
        SOCKS_BAD_CLIENT_AUTH
    assert fetch(client.socks_port, f"http://{site.server.public}/").status == 200
    services = _services_in_effect(site.data)
    assert len(services) == 2
    _assert_defences(services[1])
    auth = site.data / "tor" / "onion-staff" / "authorized_clients"
    assert sorted(p.name for p in auth.iterdir()) == ["alice.auth", "carol.auth"]


def test_removing_the_last_staff_key_stops_the_server_cleanly(site: Site) -> None:
    # After the SIGHUP test (alice and carol hold keys). With no key left, the staff service
    # must go, and our tor cannot drop a service while running without crashing: the server
    # says so and stops (with its tor), instead of leaving a removed key authorised.
    for name in ("alice", "carol"):
        removed = server_cli("staff", "remove", name, "--data-dir", str(site.data))
        assert removed.returncode == 0, removed.stderr
    site.server.proc.send_signal(signal.SIGHUP)
    site.server.proc.wait(timeout=120)
    assert site.server.proc.returncode != 0
    output = site.server.output()
    assert "every staff key was removed" in output and "start it again" in output
    assert "Traceback" not in output
    assert _tor_pids_using(site.data) == []


def test_server_stops_when_its_tor_dies(tmp_path: Path, join_config: Path) -> None:
    data, _keys = init_data_dir(tmp_path)
    with ServerProcess(data, join_config) as server:
        server.wait_published()
        [tor_pid] = _tor_pids_using(data / "tor")
        os.kill(tor_pid, signal.SIGKILL)  # the server's own child
        server.proc.wait(timeout=30)
    assert server.proc.returncode == 1
    output = server.output()
    assert "lost the connection to tor; the onion services are offline" in output
    assert "Traceback" not in output
