"""`dropbox-client` Tor options without a Tor network: which connector, and what errors say."""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp_socks
import pytest

from client_cli import tor
from client_cli.staffapi import StaffApiError
from dropbox_envelope.onion import ClientAuthKey, OnionServiceKey
from tests.tor.testnet import free_ports

SERVICE = OnionServiceKey.from_seed(bytes(32))
ONION = f"http://{SERVICE.address}/"


def _args(server: str, **options: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server")
    tor.add_arguments(parser)
    args = parser.parse_args(["--server", server])
    for name, value in options.items():
        setattr(args, name, value)
    return args


def test_plain_servers_connect_directly() -> None:
    assert tor.connector_from_args(_args("http://127.0.0.1:8081/")) is None


def test_onion_without_a_running_tor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tor, "DEFAULT_SOCKS", tuple(("127.0.0.1", p) for p in free_ports(2)))
    with pytest.raises(tor.TorUnavailable, match="tor is not running"):
        tor.connector_from_args(_args(ONION))


def test_explicit_socks_port_is_used_without_probing() -> None:
    factory = tor.connector_from_args(_args(ONION, tor_socks="127.0.0.1:1"))
    assert factory is not None


def test_option_mistakes(tmp_path: Path) -> None:
    with pytest.raises(StaffApiError, match="give both"):
        tor.connector_from_args(_args(ONION, tor_control="9051"))
    key = tmp_path / "k"
    key.write_text(ClientAuthKey.generate().control_key())
    with pytest.raises(StaffApiError, match=r"is for a \.onion"):
        tor.connector_from_args(_args("http://127.0.0.1:1/", onion_auth=key))
    with pytest.raises(StaffApiError, match="not a v3 onion address"):
        tor.connector_from_args(_args("http://" + "a" * 56 + ".onion/", tor_socks="x:1"))
    other = OnionServiceKey.from_seed(bytes([1]) * 32)
    key.write_text(ClientAuthKey.generate().auth_private_line(other.address))
    with pytest.raises(StaffApiError, match="not for the --server address"):
        tor.connector_from_args(_args(ONION, onion_auth=key, tor_socks="127.0.0.1:1"))


def test_onion_auth_without_control_port_explains_client_onion_auth_dir(tmp_path: Path) -> None:
    key = tmp_path / "alice.onion-auth"
    secret = ClientAuthKey.generate()
    key.write_text(secret.auth_private_line(SERVICE.address) + "\n")
    said: list[str] = []
    tor.connector_from_args(_args(ONION, onion_auth=key, tor_socks="127.0.0.1:1"), said.append)
    assert "ClientOnionAuthDir" in said[0]
    assert secret.control_key() not in said[0] and secret.auth_private_line(
        SERVICE.address) not in said[0]  # the secret is not echoed


@pytest.mark.parametrize(("error", "expected"), [
    (aiohttp_socks.ProxyConnectionError("refused"), "tor is not running"),
    (aiohttp_socks.ProxyError("Invalid reply code: 0XF4"), "needs client authorisation"),
    (aiohttp_socks.ProxyError("Invalid reply code: 0XF5"), "refused your client-authorisation"),
    (aiohttp_socks.ProxyError("Invalid reply code: 0XF0"), "not published"),
    (aiohttp_socks.ProxyError("General SOCKS server failure", 1), "ExtendedErrors"),
])
def test_socks_failures_become_advice(error: Exception, expected: str) -> None:
    assert expected in tor.socks_failure_message(error, "127.0.0.1:9050")
