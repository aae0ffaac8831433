#!/usr/bin/env python3
"""Load and abuse against a real ``dropbox-server run --dev`` on loopback, bounded in time and
in requests (not a test: it measures, and says which targets were met).

    .venv/bin/python benchmarks/load.py [--quick] [--duration 60] [--slow-uploads 200]
                                        [--flooders 64] [--code-workers N] [--set KEY=N ...]
                                        [--json-out benchmarks/results/load.json]
                                        [--tmp-dir DIR]

For ``--duration`` seconds, at the same time:

* **slow uploads**: ``--slow-uploads`` clients (200) each send a no-JS report whose attachment
  trickles in at ``--slow-rate`` bytes/s (4 KiB/s), and start another when one ends. The server
  admits ``max_concurrent_uploads`` (64 by default) at once; the others get the 503 "busy" page
  and try again 1-3 s later.
* **normal submissions**: one report every ``--normal-interval`` s (1 s), 50 KiB attachment at
  full speed, from a fresh browser each; a 503 is retried after 1 s, as a person would, until
  ``--grace`` s after the load ends. Target: every one completes.
* **a flood of wrong return codes**: ``--flooders`` clients (64) POST ``/login`` back to back,
  four in five with a well-formed code (valid check digit, so each costs an Argon2id run
  with the production parameters), one in five with a typo (refused before any hashing), at
  most ``--flood-cap`` requests in all. Target: the Argon2 queue stays bounded, overflow gets
  the "busy" page at once instead of waiting.

Measured:

* **landing page during the load**: a separate process GETs ``/`` every 100 ms, timing each
  response from outside the server (p50/p99/max);
* **event-loop lag** inside the server: benchmarks/_loadserver.py runs the real
  ``dropbox-server`` command with a probe task that sleeps 20 ms again and again and reports
  how late it wakes up (numbers only, to stderr; off unless ``SRDB_LAG_PROBE_MS`` is set).
  Target: p99 < 50 ms;
* **server peak RSS** (``VmHWM`` from /proc). Target: < 300 MB;
* what was stored: the database must hold at least as many envelopes as the clients saw
  acknowledged (a few more is normal: uploads whose answer was cut off when the load stopped).

The clients share this machine's CPUs with the server (2 cores here): a busy client inflates
the landing-page times a little, never the in-server lag figure. The load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _machine import write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from dropbox_envelope.codes import generate_code  # noqa: E402
from dropbox_envelope.keys import SecretKey  # noqa: E402
from dropbox_server.config import render_config  # noqa: E402

DEFAULT_JSON = HERE / "results" / "load.json"
BOUNDARY = "----srdbLoadBoundary9a8b7c"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_CODE_GROUP = re.compile(r'<span class="group">(\d{5})</span>')
LAG_PROBE_MS = 20
TARGET_RSS_MB = 300
TARGET_LAG_P99_MS = 50


@dataclass
class Params:
    duration: float = 60.0
    slow_uploads: int = 200
    slow_rate: int = 4096
    slow_size: int = 32 * 1024
    normal_interval: float = 1.0
    normal_size: int = 50 * 1024
    flooders: int = 64
    flood_cap: int = 200_000
    grace: float = 30.0
    code_workers: int | None = None  # None: the default in the configuration
    settings: dict[str, int] = field(default_factory=dict)  # other [server] values to set


@dataclass
class Tally:
    """What the clients saw."""

    normal_sent: int = 0
    normal_completed: int = 0
    normal_attempts: int = 0
    normal_first_try: int = 0
    normal_latency: list[float] = field(default_factory=list)  # first try to receipt, s
    normal_failed: list[str] = field(default_factory=list)
    slow: Counter[str] = field(default_factory=Counter)
    slow_completed: int = 0
    flood: Counter[str] = field(default_factory=Counter)
    flood_latency: list[float] = field(default_factory=list)
    flood_busy_pages: int = 0


# --- request bodies --------------------------------------------------------------------------

def _part(name: str, value: str) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            f"{value}\r\n").encode()


def report_head(csrf: str, recipient: str) -> bytes:
    return (_part("csrf", csrf) + _part("recipient", recipient) +
            _part("what_happening", "not_paid") + _part("message", "load test report") +
            _part("language", "en") +
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachments\"; "
            f"filename=\"scan.pdf\"\r\nContent-Type: application/pdf\r\n\r\n".encode())


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


async def trickle(head: bytes, size: int, rate: int) -> AsyncIterator[bytes]:
    """The report body with its attachment sent at ``rate`` bytes/s, in quarter-second steps."""
    yield head
    step = max(1, rate // 4)
    sent = 0
    while sent < size:
        await asyncio.sleep(0.25)
        piece = min(step, size - sent)
        yield b"p" * piece
        sent += piece
    yield TAIL


# --- clients ---------------------------------------------------------------------------------

class Load:
    def __init__(self, public: str, recipient: str, params: Params, tally: Tally) -> None:
        self.public = public
        self.recipient = recipient
        self.params = params
        self.tally = tally
        self.rng = random.Random(1)
        self.deadline = 0.0
        self.flood_left = params.flood_cap

    @staticmethod
    def browser() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120))

    async def csrf(self, session: aiohttp.ClientSession, path: str) -> str:
        async with session.get(self.public + path) as resp:
            match = _CSRF.search(await resp.text())
        if match is None:
            raise RuntimeError(f"no form token on {path}")
        return match.group(1)

    async def slow_uploader(self) -> None:
        p = self.params
        async with self.browser() as session:
            while time.monotonic() < self.deadline:
                try:
                    token = await self.csrf(session, "/report")
                    body = trickle(report_head(token, self.recipient), p.slow_size, p.slow_rate)
                    async with session.post(self.public + "/report", data=body,
                                            headers={"Content-Type": MULTIPART}) as resp:
                        page = await resp.text()
                        status = resp.status
                except (aiohttp.ClientError, ConnectionError) as exc:
                    self.tally.slow[f"disconnected ({type(exc).__name__})"] += 1
                    await asyncio.sleep(self.rng.uniform(1, 3))
                    continue
                self.tally.slow[f"HTTP {status}"] += 1
                if status == 200 and len(_CODE_GROUP.findall(page)) == 5:
                    self.tally.slow_completed += 1
                elif status == 503:
                    await asyncio.sleep(self.rng.uniform(1, 3))

    async def normal_submission(self) -> None:
        """One person's report, retried on "busy" until it is in or the grace period ends."""
        p = self.params
        self.tally.normal_sent += 1
        started = time.monotonic()
        last = "not tried"
        tries = 0
        async with self.browser() as session:
            while time.monotonic() < self.deadline + p.grace:
                self.tally.normal_attempts += 1
                tries += 1
                try:
                    token = await self.csrf(session, "/report")
                    body = report_head(token, self.recipient) + os.urandom(p.normal_size) + TAIL
                    async with session.post(self.public + "/report", data=body,
                                            headers={"Content-Type": MULTIPART}) as resp:
                        page = await resp.text()
                        status = resp.status
                except (aiohttp.ClientError, ConnectionError) as exc:
                    last = type(exc).__name__
                    await asyncio.sleep(1)
                    continue
                if status == 200 and len(_CODE_GROUP.findall(page)) == 5:
                    self.tally.normal_completed += 1
                    self.tally.normal_first_try += tries == 1
                    self.tally.normal_latency.append(time.monotonic() - started)
                    return
                last = f"HTTP {status}"
                await asyncio.sleep(1)
        self.tally.normal_failed.append(last)

    async def normal_submissions(self) -> None:
        tasks = []
        while time.monotonic() < self.deadline:
            tasks.append(asyncio.create_task(self.normal_submission()))
            await asyncio.sleep(self.params.normal_interval)
        await asyncio.gather(*tasks)

    async def flooder(self) -> None:
        async with self.browser() as session:
            token = await self.csrf(session, "/login")
            while time.monotonic() < self.deadline and self.flood_left > 0:
                self.flood_left -= 1
                code = generate_code().display()
                if self.rng.random() < 0.2:  # a typo: the check digit refuses it
                    code = code[:-1] + str((int(code[-1]) + 1) % 10)
                started = time.monotonic()
                try:
                    async with session.post(self.public + "/login",
                                            data={"csrf": token, "code": code},
                                            allow_redirects=False) as resp:
                        page = await resp.text()
                        status = resp.status
                except (aiohttp.ClientError, ConnectionError) as exc:
                    self.tally.flood[f"disconnected ({type(exc).__name__})"] += 1
                    continue
                self.tally.flood_latency.append(time.monotonic() - started)
                self.tally.flood[f"HTTP {status}"] += 1
                if status == 503 and "try again in a minute" in page:
                    self.tally.flood_busy_pages += 1
                new = _CSRF.search(page)
                if new:
                    token = new.group(1)

    async def run(self) -> None:
        self.deadline = time.monotonic() + self.params.duration
        slow = [asyncio.create_task(self.slow_uploader())
                for _ in range(self.params.slow_uploads)]
        flood = [asyncio.create_task(self.flooder()) for _ in range(self.params.flooders)]
        normal = asyncio.create_task(self.normal_submissions())
        await asyncio.sleep(self.params.duration)
        for task in slow + flood:  # uploads still trickling are cut off here
            task.cancel()
        await asyncio.gather(*slow, *flood, return_exceptions=True)
        await normal


# --- the server and the probes ---------------------------------------------------------------

def make_data(root: Path, params: Params) -> tuple[Path, str]:
    data = root / "data"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "agency.pub").write_text(SecretKey.generate().public_key.encode() + "\n")
    # Production limits and return-code KDF: the defaults render_config writes.
    text = render_config([("City Police", "", ["keys/agency.pub"])], [])
    settings = dict(params.settings)
    if params.code_workers is not None:
        settings["code_workers"] = params.code_workers
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not found:
            raise SystemExit(f"--set {key}: no such setting in dropbox.toml")
    (data / "dropbox.toml").write_text(text)
    return data, "city-police"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, SRDB_LAG_PROBE_MS=str(LAG_PROBE_MS), PYTHONPATH=str(ROOT))
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_loadserver.py"), "run", "--dev", "--data-dir",
             str(data), "--port", "0", "--staff-port", "0"],
            stdout=subprocess.PIPE, stderr=handle, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("public site:"):
            return proc, line.split(":", 1)[1].strip().rstrip("/")
    proc.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text()}")


def proc_status(pid: int, key: str) -> int:
    """A /proc/PID/status value in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


async def sample_rss(pid: int, stop: asyncio.Event, samples: list[int]) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            samples.append(proc_status(pid, "VmRSS"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


def landing_probe(url: str, seconds: float) -> None:
    """(The ``--landing-probe`` process.) GET / every 100 ms; print each time in ms."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            conn.close()
            status = response.status
        except OSError:
            status = 0
        took = (time.monotonic() - started) * 1000
        print(f"{status} {took:.3f}", flush=True)
        time.sleep(max(0.0, 0.1 - took / 1000))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"n": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def stored_envelopes(data: Path) -> int:
    db = sqlite3.connect(f"file:{data / 'db' / 'dropbox.sqlite'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0])
    finally:
        db.close()


# --- the run ---------------------------------------------------------------------------------

async def measure(params: Params, tmp: Path) -> dict[str, Any]:
    data, recipient = make_data(tmp, params)
    log = tmp / "server.log"
    proc, public = start_server(data, log)
    tally = Tally()
    rss: list[int] = []
    stop = asyncio.Event()
    try:
        lag_lines_before = log.read_text().count("lag_ms=")
        sampler = asyncio.create_task(sample_rss(proc.pid, stop, rss))
        probe = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--landing-probe", public, str(params.duration),
            stdout=asyncio.subprocess.PIPE)
        load = Load(public, recipient, params, tally)
        started = time.monotonic()
        server_cpu = cpu_seconds(proc.pid)
        client_cpu = time.process_time()
        await load.run()
        load_seconds = time.monotonic() - started
        server_cpu = cpu_seconds(proc.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        probe_out, _ = await probe.communicate()
        peak_kb = proc_status(proc.pid, "VmHWM")
        stop.set()
        await sampler
        stored = stored_envelopes(data)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    probes = [line.removeprefix("lag_ms=").split(" at=") for line in log.read_text().splitlines()
              if line.startswith("lag_ms=")][lag_lines_before:]
    lags = [float(lag) for lag, _at in probes]
    first = float(probes[0][1]) if probes else 0.0
    worst = sorted(((float(lag), float(at) - first) for lag, at in probes), reverse=True)[:5]
    landing = [line.split() for line in probe_out.decode().splitlines()]
    landing_ok = [float(ms) for status, ms in landing if status == "200"]
    return {
        "params": asdict(params),
        "load_seconds": load_seconds,
        "cpu_cores_used": {"server": server_cpu / load_seconds,
                           "load_generator": client_cpu / load_seconds},
        "normal": {"sent": tally.normal_sent, "completed": tally.normal_completed,
                   "attempts": tally.normal_attempts, "first_try": tally.normal_first_try,
                   "failed": tally.normal_failed,
                   "latency_s": percentiles(tally.normal_latency)},
        "slow_uploads": {"outcomes": dict(tally.slow), "completed": tally.slow_completed},
        "wrong_codes": {"outcomes": dict(tally.flood), "busy_pages": tally.flood_busy_pages,
                        "requests": sum(tally.flood.values()),
                        "per_second": sum(tally.flood.values()) / params.duration,
                        "latency_ms": percentiles([x * 1000 for x in tally.flood_latency])},
        "landing_ms": percentiles(landing_ok) | {"errors": len(landing) - len(landing_ok)},
        "loop_lag_ms": percentiles(lags) | {
            "worst": [{"ms": ms, "at_s": at} for ms, at in worst]},
        "rss_mb": {"peak_vmhwm": peak_kb / 1024, "max_sampled": max(rss, default=0) / 1024},
        "stored_envelopes": stored,
        "acknowledged": tally.normal_completed + tally.slow_completed,
    }


def targets(result: dict[str, Any]) -> dict[str, bool]:
    normal = result["normal"]
    flood = result["wrong_codes"]
    return {
        f"server peak RSS < {TARGET_RSS_MB} MB": result["rss_mb"]["peak_vmhwm"] < TARGET_RSS_MB,
        f"event-loop lag p99 < {TARGET_LAG_P99_MS} ms":
            result["loop_lag_ms"].get("p99", 1e9) < TARGET_LAG_P99_MS,
        "every normal submission completed (retrying 'busy' each second)":
            normal["completed"] == normal["sent"],
        "overflow gets the busy page, no hang (login p99 < 5 s)":
            flood["busy_pages"] > 0 and flood["latency_ms"].get("p99", 1e9) < 5000,
        # More may be stored: uploads whose answer was cut off when the load stopped.
        "every acknowledged submission stored":
            result["stored_envelopes"] >= result["acknowledged"],
    }


def show(result: dict[str, Any], met: dict[str, bool]) -> None:
    p = result["params"]
    n, s, f = result["normal"], result["slow_uploads"], result["wrong_codes"]
    lag, landing, rss = result["loop_lag_ms"], result["landing_ms"], result["rss_mb"]

    def ms(d: dict[str, float]) -> str:
        if not d.get("n"):
            return "no data"
        return (f"p50 {d['p50']:.1f} ms, p99 {d['p99']:.1f} ms, max {d['max']:.1f} ms "
                f"(n={d['n']})")
    print(f"\nload.py: {p['duration']:.0f} s on loopback; {p['slow_uploads']} slow uploads at "
          f"{p['slow_rate']} B/s, a report every {p['normal_interval']} s, {p['flooders']} "
          f"wrong-code flooders; code_workers {p['code_workers'] or 'default (2)'}" +
          "".join(f", {k} = {v}" for k, v in p["settings"].items()))
    print(f"  normal submissions : {n['completed']}/{n['sent']} completed in {n['attempts']} "
          f"attempts ({n['first_try']} on the first try); time to receipt p50 "
          f"{n['latency_s'].get('p50', 0):.2f} s, max {n['latency_s'].get('max', 0):.2f} s" +
          (f"; failed: {Counter(n['failed'])}" if n["failed"] else ""))
    print(f"  slow uploads       : {s['completed']} completed; " +
          ", ".join(f"{k}: {v}" for k, v in sorted(s["outcomes"].items())))
    print(f"  wrong return codes : {f['requests']} ({f['per_second']:.0f}/s); " +
          ", ".join(f"{k}: {v}" for k, v in sorted(f["outcomes"].items())) +
          f"; busy pages {f['busy_pages']}; answer {ms(f['latency_ms'])}")
    print(f"  landing page       : {ms(landing)}, errors {landing['errors']}")
    print(f"  event-loop lag     : {ms(lag)} ({LAG_PROBE_MS} ms probe in the server); worst: " +
          ", ".join(f"{w['ms']:.0f} ms at {w['at_s']:.1f} s" for w in lag.get("worst", [])))
    print(f"  server RSS         : peak {rss['peak_vmhwm']:.0f} MB (VmHWM), "
          f"max sampled {rss['max_sampled']:.0f} MB")
    print(f"  stored envelopes   : {result['stored_envelopes']} "
          f"(acknowledged to clients: {result['acknowledged']})")
    cores = result["cpu_cores_used"]
    print(f"  CPU                : server {cores['server']:.2f} cores, this load generator "
          f"{cores['load_generator']:.2f} cores (landing probe not counted)")
    print(f"  load average       : {result['loadavg_at_start'][0]:.2f} -> "
          f"{result['loadavg_at_end'][0]:.2f} on {os.cpu_count()} CPUs")
    print("targets:")
    for name, ok in met.items():
        print(f"  {'ok  ' if ok else 'MISS'} {name}")


def _setting(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise SystemExit(f"--set {text}: expected KEY=N")
    return key.strip(), int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s, for a smoke run")
    parser.add_argument("--duration", type=float, help="seconds of load (default 60)")
    parser.add_argument("--slow-uploads", type=int, default=200)
    parser.add_argument("--slow-rate", type=int, default=4096, help="bytes/s per slow upload")
    parser.add_argument("--normal-interval", type=float, default=1.0)
    parser.add_argument("--flooders", type=int, default=64)
    parser.add_argument("--flood-cap", type=int, default=200_000)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--code-workers", type=int, default=None,
                        help="Argon2id threads in the server (default: the configuration's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=N",
                        help="a [server] value of dropbox.toml, e.g. max_concurrent_uploads=256 "
                             "(repeatable; default: the values `dropbox-server init` writes)")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--tmp-dir", type=Path, default=None)
    parser.add_argument("--landing-probe", nargs=2, metavar=("URL", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.landing_probe:
        landing_probe(args.landing_probe[0], float(args.landing_probe[1]))
        return 0
    params = Params(duration=args.duration or (20.0 if args.quick else 60.0),
                    slow_uploads=args.slow_uploads, slow_rate=args.slow_rate,
                    normal_interval=args.normal_interval, flooders=args.flooders,
                    flood_cap=args.flood_cap, grace=args.grace,
                    code_workers=args.code_workers,
                    settings=dict(_setting(text) for text in args.set))
    loadavg_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="srdb-load-", dir=args.tmp_dir) as tmp:
        result = asyncio.run(measure(params, Path(tmp)))
    result["loadavg_at_start"] = loadavg_start
    result["loadavg_at_end"] = list(os.getloadavg())
    met = targets(result)
    result["targets"] = met
    show(result, met)
    write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
