#!/usr/bin/env python3
"""Onion services on a private Tor network (loopback): publication time, first request, and
envelope upload throughput through Tor against the same upload over plain loopback.

    .venv/bin/python benchmarks/tor.py [--size-mib 50] [--reps 3] [--quick]
                                       [--json-out benchmarks/results/tor.json]

Brings up the test suite's private network (tests/tor/testnet.py: 3 authorities, 3 relays, a
client with a SocksPort), then a real ``dropbox-server run --tor`` whose own tor joins it, and
measures:

* **network ready**: key generation to a bootstrapped client (the pytest fixture's cost);
* **publish**: server process start to "onion services published" (its tor's bootstrap, both
  ``ADD_ONION`` and every HSDir upload answered);
* **first request**: GET / on the public onion from the client (descriptor fetch,
  introduction, rendezvous, then HTTP), and a second GET on the warm circuit;
* **upload**: an envelope of ``--size-mib`` (sealed beforehand, untimed) POSTed to
  ``/submit/envelope`` through the client's SOCKS port (a 4-hop client side + 4-hop service
  side onion circuit, every relay on this machine) vs straight to the server's 127.0.0.1 port.
  Runs alternate (loopback, tor, loopback, tor, ...); medians are reported. MB/s = envelope
  bytes (10**6 per MB) / time from the first byte sent to the server's answer, which it sends
  after fsync and commit.

All tor processes share this machine's cores with the server and the client, so the Tor figure
is a lower bound for what a real network's relays would allow, and a CPU-cost indicator.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from _machine import write_json  # noqa: E402
from aiohttp_socks import ProxyConnector  # noqa: E402

from dropbox_envelope.streams import AttachmentSource, encrypt  # noqa: E402
from tests.support import make_server_folder, require_binary  # noqa: E402
from tests.tor.onion_server import ServerProcess, staff_add  # noqa: E402
from tests.tor.testnet import TorNetwork  # noqa: E402

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def _session(socks_port: int | None) -> aiohttp.ClientSession:
    connector = (ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
                 if socks_port else None)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 timeout=aiohttp.ClientTimeout(total=1800))


async def _get(socks_port: int, url: str) -> tuple[float, float]:
    """Seconds for a first GET (new circuit) and a second one (same session)."""
    async with _session(socks_port) as session:
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
        return first, time.perf_counter() - t0


async def _upload(base: str, envelope: Path, socks_port: int | None) -> float:
    """Seconds to POST the envelope (page fetch for the CSRF token not timed)."""
    async with _session(socks_port) as session:
        async with session.get(f"{base}/report") as resp:
            match = _CSRF.search(await resp.text())
        assert match, "no CSRF token on /report"
        with envelope.open("rb") as body:
            t0 = time.perf_counter()
            async with session.post(f"{base}/submit/envelope?recipient=city-police", data=body,
                                    headers={"Content-Type": "application/octet-stream",
                                             "X-CSRF-Token": match.group(1)}) as resp:
                text = await resp.text()
            elapsed = time.perf_counter() - t0
        assert resp.status == 200, text
        return elapsed


def _data_dir(base: Path) -> Path:
    folder = make_server_folder(base / "server")
    (base / "agency.pub").write_text(folder.agency.public_key.encode())
    return folder.data


def _seal(path: Path, size: int, agency_pub: Path) -> int:
    from dropbox_envelope.keys import PublicKey

    key = PublicKey.decode(agency_pub.read_text())
    pattern = os.urandom(1024 * 1024 + 4093)
    data = (pattern * (size // len(pattern) + 1))[:size]
    with path.open("wb") as out:
        written = encrypt(out, [key], attachments=[AttachmentSource(
            "photo.bin", "application/octet-stream", io.BytesIO(data))], message="benchmark")
        out.flush()
        os.fsync(out.fileno())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 MiB, 2 repetitions")
    parser.add_argument("--json-out", type=Path, default=HERE / "results" / "tor.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib, args.reps = 8, 2
    tor = require_binary("tor", "the benchmark runs a private Tor network")
    gencert = require_binary("tor-gencert", "the benchmark runs a private Tor network")
    base = Path(tempfile.mkdtemp(prefix="srdb-torbench-"))
    network = TorNetwork(base / "net", tor=tor, tor_gencert=gencert)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python":
                                           platform.python_version(),
                                           "load_before": os.getloadavg()}}
    server: ServerProcess | None = None
    try:
        t0 = time.monotonic()
        network.start()
        results["network_ready_s"] = round(time.monotonic() - t0, 2)
        results["network_phases_s"] = {k: round(v, 2) for k, v in network.timings.items()}
        assert network.client is not None and network.client.socks_port
        socks = network.client.socks_port
        data = _data_dir(base)
        staff_add(data, "alice")
        join = base / "testnet.torrc"
        join.write_text(network.join_config())
        server = ServerProcess(data, join).wait_published()
        results["publish_s"] = round(server.publish_seconds, 2)
        local = re.search(r"^public site: (http://127\.0\.0\.1:\d+)/$", server.output(), re.M)
        assert local, server.output()
        onion = f"http://{server.public}"
        first, warm = asyncio.run(_get(socks, f"{onion}/"))
        results["first_request_s"] = round(first, 3)
        results["warm_request_s"] = round(warm, 3)
        envelope = base / "bench.srdb"
        size = _seal(envelope, args.size_mib * 1024 * 1024, base / "agency.pub")
        runs: dict[str, list[float]] = {"loopback": [], "tor": []}
        for _ in range(args.reps):
            runs["loopback"].append(asyncio.run(_upload(local.group(1), envelope, None)))
            runs["tor"].append(asyncio.run(_upload(onion, envelope, socks)))
        results["upload"] = {
            "envelope_bytes": size,
            **{name: {"median_s": round(statistics.median(t), 3),
                      "median_MBps": round(size / 1e6 / statistics.median(t), 2),
                      "runs_s": [round(x, 3) for x in t]} for name, t in runs.items()}}
    finally:
        if server is not None:
            server.stop()
        network.stop()
        results["machine"]["load_after"] = os.getloadavg()
        shutil.rmtree(base, ignore_errors=True)
    up = results["upload"]
    print(f"private Tor network ready:  {results['network_ready_s']:.1f} s "
          f"({results['network_phases_s']})")
    print(f"publish (server start -> both onions uploaded): {results['publish_s']:.1f} s")
    print(f"first GET / over Tor: {results['first_request_s']:.2f} s; "
          f"warm: {results['warm_request_s']:.3f} s")
    print(f"upload {up['envelope_bytes'] / 1e6:.1f} MB envelope, median of {args.reps}:")
    for name in ("loopback", "tor"):
        print(f"  {name:8} {up[name]['median_MBps']:8.2f} MB/s  "
              f"({up[name]['median_s']:.2f} s; runs {up[name]['runs_s']})")
    print(f"  Tor / loopback: {up['tor']['median_MBps'] / up['loopback']['median_MBps']:.2f}")
    print(f"load average before/after: {results['machine']['load_before']} / "
          f"{results['machine']['load_after']}")
    write_json(args.json_out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
