"""Fixtures for tests over a real Tor network on 127.0.0.1 (see tests/tor/testnet.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support import require_binary
from tests.tor.testnet import TorNetwork, TorNetworkError

WHY = "tests over a private Tor network need Debian's `tor` package (apt install tor)"


@pytest.fixture(scope="session")
def tor_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorNetwork]:
    """A private Tor network (3 authorities, 3 relays, client0 with SocksPort), session-wide."""
    tor = require_binary("tor", WHY)
    gencert = require_binary("tor-gencert", WHY)
    network = TorNetwork(tmp_path_factory.mktemp("tornet"), tor=tor, tor_gencert=gencert)
    t0 = time.monotonic()
    try:
        try:
            network.start()
        except TorNetworkError as exc:
            pytest.fail(str(exc), pytrace=False)
        print(f"\nprivate Tor network ready in {time.monotonic() - t0:.1f} s "
              f"({', '.join(f'{k} {v:.1f} s' for k, v in network.timings.items())})")
        yield network
    finally:
        network.stop()
