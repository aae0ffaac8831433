"""Tor Browser's path, as closely as we can without Tor Browser: Debian's Firefox ESR (its engine)
at the "Safest" security level (JavaScript off), every connection through the private network's
SOCKS port with remote DNS, sends a report to the public onion with the no-JS form."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_binary, skip_or_fail
from tests.tor.onion_server import ServerProcess, init_data_dir, stop_quietly
from tests.tor.testnet import TorNetwork, free_ports

pytestmark = [pytest.mark.tor, pytest.mark.browser,
              # marionette-driver and its dependencies use telnetlib and
              # distro.linux_distribution(), both deprecated.
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# A Tor-Browser-like profile: all traffic to tor's SOCKS port, names resolved by tor,
# JavaScript off ("Safest"), and nothing fetched on the side.
PREFS: dict[str, Any] = {
    "network.proxy.type": 1,
    "network.proxy.socks": "127.0.0.1",
    "network.proxy.socks_version": 5,
    "network.proxy.socks_remote_dns": True,
    "network.proxy.no_proxies_on": "",
    "network.proxy.allow_hijacking_localhost": True,
    "network.dns.blockDotOnion": False,
    "javascript.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
}


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def firefox(profile: Path, socks_port: int) -> Iterator[Any]:
    executable = require_binary("firefox-esr", "the browser test over Tor drives Firefox ESR")
    try:
        from marionette_driver.marionette import Marionette  # type: ignore[import-untyped]
    except ImportError:
        skip_or_fail("marionette-driver is not installed (pip install -e '.[test]')")
    [port] = free_ports(1)
    profile.mkdir(parents=True)
    prefs = {**PREFS, "network.proxy.socks_port": socks_port, "marionette.port": port}
    (profile / "user.js").write_text("".join(f"user_pref({_literal(k)}, {_literal(v)});\n"
                                             for k, v in prefs.items()))
    with (profile / "firefox.log").open("wb") as log:
        process = subprocess.Popen(
            [executable, "--headless", "--marionette", "-remote-allow-system-access",
             "--no-remote", "--profile", str(profile), "about:blank"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"})
    client = None
    try:
        deadline = time.monotonic() + 60
        while True:  # wait for Marionette's port rather than relying on its own retries
            assert process.poll() is None, (profile / "firefox.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "Firefox opened no Marionette port in 60 s"
            time.sleep(0.2)
        client = Marionette(host="127.0.0.1", port=port)
        client.start_session()
        client.timeout.page_load = 120
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.delete_session()
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def public_onion(tmp_path_factory: pytest.TempPathFactory,
                 tor_network: TorNetwork) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser")
    data, _keys = init_data_dir(base)
    join = base / "testnet.torrc"
    join.write_text(tor_network.join_config(), encoding="utf-8")
    server = ServerProcess(data, join)
    try:
        server.wait_published()
        yield server.public
    finally:
        stop_quietly(server)


def test_firefox_safest_sends_a_report_to_the_onion(public_onion: str, tmp_path: Path,
                                                     tor_network: TorNetwork) -> None:
    from marionette_driver.by import By  # type: ignore[import-untyped]

    assert tor_network.client is not None and tor_network.client.socks_port
    with firefox(tmp_path / "profile", tor_network.client.socks_port) as browser:
        t0 = time.monotonic()
        browser.navigate(f"http://{public_onion}/")
        print(f"\nFirefox (Safest) loaded the onion landing page in "
              f"{time.monotonic() - t0:.2f} s")
        assert browser.get_url() == f"http://{public_onion}/"
        browser.navigate(f"http://{public_onion}/report")
        browser.find_element(By.CSS_SELECTOR, "#recipient-city-police").click()
        for box in browser.find_elements(By.CSS_SELECTOR, 'input[type="checkbox"]')[:1]:
            box.click()
        message = browser.find_element(By.CSS_SELECTOR, "#message")
        message.send_keys("Sent from Firefox with JavaScript off, over Tor.")
        browser.find_element(By.CSS_SELECTOR, 'form#envelope-form button[type="submit"]').click()
        deadline = time.monotonic() + 120
        while not (groups := browser.find_elements(By.CSS_SELECTOR, "span.group")):
            assert time.monotonic() < deadline, browser.page_source[:2000]
            time.sleep(0.2)
        code = " ".join(g.text for g in groups)
        assert re.fullmatch(r"(\d{5} ){4}\d{5}", code), code
