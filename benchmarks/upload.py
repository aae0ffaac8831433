#!/usr/bin/env python3
"""Upload throughput and server memory of a real ``dropbox-server run --dev`` over loopback.

    .venv/bin/python benchmarks/upload.py [--sizes-mib 200,2048] [--reps 3,2] [--quick]
                                          [--json-out benchmarks/results/upload.json]
                                          [--tmp-dir DIR]
    .venv/bin/python benchmarks/upload.py --profile form --profile-mib 1024 --py-spy PATH

Ways of receiving the same attachment, measured in the same run (see
benchmarks/README.md, "upload.py", for how to read the output):

* **envelope** (a): an envelope sealed beforehand (untimed, with
  :func:`dropbox_envelope.streams.encrypt`) is POSTed to ``/submit/envelope?recipient=ID``
  (``X-CSRF-Token`` header + ``srdb_csrf`` cookie, ``application/octet-stream``), as the
  JavaScript page does. The server checks its structure, hashes it and writes it to disk.
* **form** (b): the plaintext attachment through the no-JS form, ``POST /report``
  (``multipart/form-data``: csrf, recipient, answers, message, language, then the file), which
  the server seals as it arrives.
* **baseline** (c): a bare aiohttp handler (its own tiny app in a subprocess, this file with
  ``--baseline-server``) that streams the request body to a file in the same filesystem, each
  piece as it arrives (as the server's envelope path reads), and fsyncs it at the end; and
  **c64**, the same handler reading 64 KiB at a time (the baseline before the server read
  whatever had arrived), for comparison with earlier results.

The server under test is a separate process (the real ``python -m dropbox_server run --dev``),
started fresh with a fresh data folder for every upload and stopped (its folder deleted)
afterwards, so the disk does not fill and each upload's peak RSS (``VmHWM``) is its own. The
baseline server is also a fresh process for each upload.

The client is this process: a hand-rolled HTTP/1.1 client on a blocking socket that sends the
request head with ``sendall`` and the file with ``socket.sendfile`` (zero-copy from the page
cache, no Python loop over the bytes), so that it takes as little CPU as possible from the
server on a small machine. Its CPU use is measured and printed anyway. The plaintext and the
envelope are written (and fsync'd) once per size, before the timed runs, and read from the page
cache by every run.

Runs are interleaved (baseline, baseline64, envelope, form, baseline, ...); medians are
reported. MB/s = attachment bytes (10**6 bytes per MB) / wall time from the first byte sent to
the last byte of the response, which the server sends only after its fsync (and, for ours, the
database commit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _machine import busy_cpu_seconds, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmark the working tree, whatever the venv's install says
    sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024
GiB = 1024 * MiB
PATTERN_BYTES = MiB + 4093  # the plaintext is a random pattern repeated (not a multiple of 1 MiB)
MAX_REPORT_BYTES = 3 * GiB  # the server's limit for this benchmark (default 2 GiB is too small)
KINDS = ("baseline", "baseline64", "envelope", "form")
LABELS = {"baseline": "c baseline", "baseline64": "c64 64 KiB", "envelope": "a envelope",
          "form": "b form"}
BASELINES = {"baseline": None, "baseline64": 65536}  # kind -> read size (None: iter_any)
TARGETS = {"envelope": 0.8, "form": 0.5}  # ratio to the baseline
RSS_TARGET_MIB = 80.0
BUSY_WARNING = 0.5  # CPUs used by other processes above which the table gets a warning
RSS_INTERVAL = 0.02  # seconds between VmRSS samples
FAST_KDF = True  # Argon2id of the return code with 8 MiB (False: the built-in 64 MiB default)
CODE_ROOT = ROOT  # where dropbox_server / dropbox_envelope come from (--from-git: a snapshot)
QUIET_CPUS = 0.3  # before each upload, wait (up to --quiet-wait s) until others use less
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "upload.json"
RECIPIENT = "city-police"
ANSWERS = {"what_happening": ["not_paid", "threats"]}
BOUNDARY = "----srdbBenchBoundary4d9c2e7f1a"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_CODE_GROUP = re.compile(r'<span class="group">(\d{5})</span>')


# -- the baseline server (a subprocess: this file with --baseline-server DIR) ------------------

def baseline_server(out_dir: Path, read_size: int | None = None) -> int:
    """A bare aiohttp app: POST /upload streams the body into a new file in ``out_dir``, each
    piece as it arrives (``iter_any``, as the server's envelope path reads) or in
    ``read_size`` reads, with os.write, fsyncs it (on a thread, as the server does) and answers
    with JSON. Prints its URL, then serves until SIGTERM."""
    import asyncio

    from aiohttp import web

    async def upload(request: web.Request) -> web.Response:
        path = out_dir / f"upload-{time.monotonic_ns()}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        size = 0
        try:
            chunks = request.content.iter_any() if read_size is None else \
                request.content.iter_chunked(read_size)
            async for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                size += len(chunk)
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return web.json_response({"size": size})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        app = web.Application()
        app.router.add_post("/upload", upload)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"public site: http://127.0.0.1:{port}/", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())
    return 0


# -- a cheap HTTP/1.1 client ----------------------------------------------------------------------

Body = Sequence["bytes | Path"]


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    send_seconds: float  # until the whole body was handed to the kernel
    seconds: float  # until the last byte of the response


def _body_length(parts: Body) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in parts)


def http(port: int, method: str, target: str, headers: dict[str, str],
         body: Body = (), timeout: float = 1800.0) -> Reply:
    """One request on a fresh connection (``Connection: close``). Files in ``body`` are sent
    with sendfile; the response is read whole (Content-Length, chunked, or until EOF)."""
    head = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if body or method == "POST":
        head.append(f"Content-Length: {_body_length(body)}")
    head += [f"{k}: {v}" for k, v in headers.items()]
    raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.perf_counter()
        send_error: OSError | None = None
        try:
            sock.sendall(raw_head)
            for part in body:
                if isinstance(part, bytes):
                    sock.sendall(part)
                else:
                    with part.open("rb") as handle:
                        sock.sendfile(handle)
        except (BrokenPipeError, ConnectionResetError) as exc:
            send_error = exc  # the server answered early (an error page): read it below
        sent = time.perf_counter()
        data = bytearray()
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"no response (send error: {send_error!r})")
            data += chunk
        head_bytes, _, rest = bytes(data).partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        parsed: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            parsed.setdefault(name.strip().lower(), []).append(value.strip())
        body_bytes = bytearray(rest)
        length = parsed.get("content-length")
        if length is not None:
            want = int(length[0])
            while len(body_bytes) < want:
                chunk = sock.recv(max(65536, want - len(body_bytes)))
                if not chunk:
                    break
                body_bytes += chunk
        else:
            while chunk := sock.recv(65536):
                body_bytes += chunk
            if "chunked" in ",".join(parsed.get("transfer-encoding", [])).lower():
                body_bytes = bytearray(_unchunk(bytes(body_bytes)))
        done = time.perf_counter()
    return Reply(status, parsed, bytes(body_bytes), sent - started, done - started)


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


# -- processes: the server under test and the baseline ----------------------------------------

def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of ``pid`` in MiB ({} if gone)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return out


def _proc_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of ``pid`` (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def _cpu_breakdown() -> dict[str, float]:
    """/proc/stat CPU seconds by kind (softirq: e.g. loopback TCP; steal: the hypervisor)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: value / tick for name, value in zip(names, fields, strict=False)}


def _reset_peak_rss(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS (Linux >= 4.0; our own child), so that VmHWM
    read afterwards is the peak of what came after. False if the kernel refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def wait_for_quiet(max_wait: float) -> tuple[float | None, float]:
    """Wait until other processes use less than QUIET_CPUS (over 0.5 s windows), at most
    ``max_wait`` seconds. Returns (their CPUs in the last window, seconds waited)."""
    started = time.monotonic()
    while True:
        busy0, own0, t0 = busy_cpu_seconds(), _own_cpu_seconds(), time.monotonic()
        time.sleep(0.5)
        busy1, own1, t1 = busy_cpu_seconds(), _own_cpu_seconds(), time.monotonic()
        if busy0 is None or busy1 is None:
            return None, t1 - started
        others = max(0.0, (busy1 - busy0 - (own1 - own0)) / (t1 - t0))
        if others < QUIET_CPUS or t1 - started >= max_wait:
            return others, t1 - started


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this client, sampler thread included
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Samples a process's VmRSS every RSS_INTERVAL seconds on a thread; keeps the maximum,
    and the maximum over the second half of the sampling (:meth:`late_peak_mib`)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak_mib = 0.0
        self.samples = 0
        self._series: list[tuple[float, float]] = []  # (monotonic seconds, VmRSS MiB)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            rss = _proc_status(self._pid).get("VmRSS")
            if rss is not None:
                self.peak_mib = max(self.peak_mib, rss)
                self.samples += 1
                self._series.append((time.monotonic(), rss))
            if self._stop.wait(RSS_INTERVAL):
                return

    def late_peak_mib(self) -> float | None:
        """The largest VmRSS sampled in the second half of the time sampled: the streaming
        part of a long upload, after the return code's Argon2id, which both paths run at the
        start of the request (its memory is mmap'd by libsodium and unmapped when done)."""
        if len(self._series) < 2:
            return None
        middle = (self._series[0][0] + self._series[-1][0]) / 2
        return max(rss for t, rss in self._series if t >= middle)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class ServerProcess:
    """A server subprocess that prints ``public site: URL`` on stdout when it is listening."""

    def __init__(self, cmd: list[str], workdir: Path) -> None:
        self.workdir = workdir
        self._stdout = workdir / "stdout.log"
        self._stderr = workdir / "stderr.log"
        env = dict(os.environ, PYTHONPATH=str(CODE_ROOT))
        with open(self._stdout, "w") as out, open(self._stderr, "w") as err:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=CODE_ROOT, env=env)
        self.pid = self.process.pid
        deadline = time.monotonic() + 60
        while True:
            match = re.search(r"^public site:\s*http://127\.0\.0\.1:(\d+)/?\s*$",
                              self._stdout.read_text(), re.MULTILINE)
            if match:
                self.port = int(match.group(1))
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {' '.join(cmd)}\n"
                                   f"{self._stderr.read_text()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stderr_tail(self) -> str:
        try:
            return self._stderr.read_text()[-4000:]
        except OSError:
            return ""


@dataclass
class Keys:
    agency_pub: str
    staff_pub: str
    agency_public_key: Any


def make_keys() -> Keys:
    from dropbox_envelope.keys import SecretKey, StaffSecretKey

    agency, staff = SecretKey.generate(), StaffSecretKey.generate()
    return Keys(agency.public_key.encode(), staff.public_key.encode(), agency.public_key)


def start_dropbox_server(data: Path, keys: Keys) -> ServerProcess:
    """A fresh data folder (one recipient with one key, one staff member, fast code KDF unless
    --production-kdf, 3 GiB report limit) and ``python -m dropbox_server run --dev`` on it."""
    from dropbox_server.config import Limits, render_config

    (data / "keys").mkdir(parents=True)
    (data / "keys" / "agency.pub").write_text(keys.agency_pub + "\n")
    (data / "keys" / "alice.pub").write_text(keys.staff_pub + "\n")
    config = render_config([("City Police", "Crimes at work and at home", ["keys/agency.pub"])],
                           [("alice", "keys/alice.pub")])
    default_limit = f"max_report_bytes = {Limits().max_report_bytes}"
    if default_limit not in config:
        raise RuntimeError("render_config changed: update start_dropbox_server")
    config = config.replace(default_limit, f"max_report_bytes = {MAX_REPORT_BYTES}")
    if FAST_KDF:
        config = config.replace('questionnaire = ""', 'questionnaire = ""\ncode_kdf_opslimit = '
                                f"1\ncode_kdf_memlimit = {8 * MiB}")
    (data / "dropbox.toml").write_text(config)
    return ServerProcess([sys.executable, "-m", "dropbox_server", "run", "--dev", "--data-dir",
                          str(data), "--port", "0", "--staff-port", "0"], data)


def start_baseline_server(workdir: Path, read_size: int | None = None) -> ServerProcess:
    out = workdir / "received"
    out.mkdir(parents=True)
    extra = [] if read_size is None else ["--baseline-read", str(read_size)]
    return ServerProcess([sys.executable, str(Path(__file__).resolve()), "--baseline-server",
                          str(out), *extra], workdir)


# -- preparing the bodies -------------------------------------------------------------------

@dataclass
class Inputs:
    size: int
    plaintext: Path
    envelope: Path
    envelope_bytes: int
    prepare: dict[str, float]


def write_plaintext(path: Path, size: int) -> None:
    pattern = os.urandom(PATTERN_BYTES)
    doubled = pattern + pattern
    with open(path, "wb") as f:
        pos = 0
        while pos < size:
            start = pos % PATTERN_BYTES
            n = min(MiB, size - pos)
            f.write(doubled[start:start + n])
            pos += n
        f.flush()
        os.fsync(f.fileno())  # no writeback of it during the timed runs


def seal_envelope(plaintext: Path, out: Path, keys: Keys) -> int:
    from dropbox_envelope import streams

    with open(plaintext, "rb") as src, open(out, "wb") as dst:
        written = streams.encrypt(
            dst, [keys.agency_public_key],
            attachments=[streams.AttachmentSource("benchmark.bin", "application/octet-stream",
                                                  src)],
            kind="report", language="en", message="benchmark upload", answers=ANSWERS)
        dst.flush()
        os.fsync(dst.fileno())
    return written


def prepare_inputs(size: int, tmp: Path, keys: Keys, log: Callable[[str], None]) -> Inputs:
    plaintext = tmp / f"plaintext-{size // MiB}MiB.bin"
    envelope = tmp / f"envelope-{size // MiB}MiB.srdb"
    t0 = time.perf_counter()
    write_plaintext(plaintext, size)
    t1 = time.perf_counter()
    envelope_bytes = seal_envelope(plaintext, envelope, keys)
    t2 = time.perf_counter()
    log(f"  prepared: plaintext {size:,} bytes ({size / (t1 - t0) / 1e6:.0f} MB/s), envelope "
        f"{envelope_bytes:,} bytes (sealed at {size / (t2 - t1) / 1e6:.0f} MB/s); both fsync'd")
    return Inputs(size, plaintext, envelope, envelope_bytes,
                  {"plaintext_mb_per_s": size / (t1 - t0) / 1e6,
                   "seal_mb_per_s": size / (t2 - t1) / 1e6})


def form_parts(csrf: str, plaintext: Path) -> list[bytes | Path]:
    """The report form in document order (csrf, recipient, answers, message, language, file),
    as tests/server/forms.py builds it; the file's bytes are sent with sendfile."""
    fields: list[tuple[str, str]] = [("csrf", csrf), ("recipient", RECIPIENT)]
    for name, values in ANSWERS.items():
        fields += [(name, v) for v in values]
    fields += [("message", "benchmark upload"), ("language", "en")]
    head = bytearray()
    for name, value in fields:
        head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    head += (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"attachments\"; "
             f"filename=\"benchmark.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
             ).encode()
    return [bytes(head), plaintext, f"\r\n--{BOUNDARY}--\r\n".encode()]


# -- one measurement ------------------------------------------------------------------------

def _csrf(port: int) -> tuple[str, str]:
    """GET /report: (cookie value, form token)."""
    reply = http(port, "GET", "/report", {}, timeout=60)
    if reply.status != 200:
        raise RuntimeError(f"GET /report: {reply.status}")
    cookie = next((c.split(";", 1)[0].split("=", 1)[1] for c in reply.headers.get("set-cookie", [])
                   if c.startswith("srdb_csrf=")), None)
    match = _CSRF.search(reply.body.decode())
    if cookie is None or match is None:
        raise RuntimeError("GET /report: no srdb_csrf cookie or csrf field")
    return cookie, match.group(1)


def _stored_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() \
        else 0


def measure(kind: str, inputs: Inputs, workdir: Path, keys: Keys,
            quiet_wait: float = 0.0) -> dict[str, Any]:
    """Start a fresh server, upload once, check the answer, stop it, delete its data."""
    server = start_dropbox_server(workdir / "data", keys) if kind not in BASELINES \
        else start_baseline_server(workdir, BASELINES[kind])
    try:
        body: list[bytes | Path]
        if kind in BASELINES:
            target, headers = "/upload", {"Content-Type": "application/octet-stream"}
            body = [inputs.plaintext]
        else:
            cookie, token = _csrf(server.port)
            if kind == "envelope":
                target = f"/submit/envelope?recipient={RECIPIENT}"
                headers = {"Content-Type": "application/octet-stream", "X-CSRF-Token": token,
                           "Cookie": f"srdb_csrf={cookie}"}
                body = [inputs.envelope]
            else:
                target = "/report"
                headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                           "Cookie": f"srdb_csrf={cookie}"}
                body = form_parts(token, inputs.plaintext)
        wire = _body_length(body)
        others_before, waited = wait_for_quiet(quiet_wait) if quiet_wait > 0 else (None, 0.0)
        idle = _proc_status(server.pid)  # VmHWM here: the peak of start-up and GET /report
        hwm_reset = _reset_peak_rss(server.pid)
        server_cpu0 = _proc_cpu_seconds(server.pid)
        kinds0 = _cpu_breakdown()
        busy0, client_cpu0 = busy_cpu_seconds(), _own_cpu_seconds()
        with RssSampler(server.pid) as sampler:
            reply = http(server.port, "POST", target, headers, body)
        busy1, client_cpu1 = busy_cpu_seconds(), _own_cpu_seconds()
        kinds1 = _cpu_breakdown()
        server_cpu1 = _proc_cpu_seconds(server.pid)
        after = _proc_status(server.pid)
        if reply.status != 200:
            raise RuntimeError(f"{kind}: HTTP {reply.status}: {reply.body[:2000]!r}\n"
                               f"{server.stderr_tail()}")
        if kind in BASELINES:
            if json.loads(reply.body)["size"] != wire:
                raise RuntimeError(f"baseline stored the wrong size: {reply.body!r}")
            stored = _stored_bytes(workdir / "received")
        elif kind == "envelope":
            if json.loads(reply.body).get("status") != "received":
                raise RuntimeError(f"envelope: unexpected answer {reply.body!r}")
            stored = _stored_bytes(workdir / "data" / "store" / "envelopes")
        else:
            if len(_CODE_GROUP.findall(reply.body.decode())) != 5:
                raise RuntimeError(f"form: no receipt page: {reply.body[:2000]!r}")
            stored = _stored_bytes(workdir / "data" / "store" / "envelopes")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        os.sync()  # the deletion's journal commit (and discards) before the next upload, untimed
    seconds = reply.seconds
    server_user = server_system = server_cpu = None
    if server_cpu0 is not None and server_cpu1 is not None:
        server_user = server_cpu1[0] - server_cpu0[0]
        server_system = server_cpu1[1] - server_cpu0[1]
        server_cpu = server_user + server_system
    client_cpu = client_cpu1 - client_cpu0
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0 - client_cpu - (server_cpu or 0.0)) / seconds)
    return {
        "kind": kind,
        "size": inputs.size,
        "wire_bytes": wire,
        "stored_bytes": stored,
        "seconds": seconds,
        "send_seconds": reply.send_seconds,
        "tail_seconds": seconds - reply.send_seconds,  # after the last byte was handed over
        "mb_per_s": inputs.size / seconds / 1e6,
        "wire_mb_per_s": wire / seconds / 1e6,
        "server_cpu_seconds": server_cpu,
        "server_user_seconds": server_user,
        "server_system_seconds": server_system,
        "client_cpu_seconds": client_cpu,
        "others_cpus": others,
        "others_cpus_before": others_before,  # in the 0.5 s before the upload
        "quiet_wait_seconds": waited,
        # machine-wide CPUs by kind during the upload (all processes, ours included)
        "machine_cpus": {k: (kinds1[k] - kinds0[k]) / seconds for k in kinds1 if k in kinds0},
        "rss_idle_mib": idle.get("VmRSS"),
        "vmhwm_before_mib": idle.get("VmHWM"),
        "rss_peak_sampled_mib": sampler.peak_mib,
        "rss_late_peak_sampled_mib": sampler.late_peak_mib(),
        "rss_samples": sampler.samples,
        # the peak RSS during the upload (VmHWM reset just before it) or, if the reset failed,
        # since the process started (start-up and GET /report included)
        "vmhwm_mib": after.get("VmHWM"),
        "vmhwm_reset": hwm_reset,
        "loadavg_1m": os.getloadavg()[0],
    }


# -- orchestration ---------------------------------------------------------------------------

def bench_size(size: int, reps: int, tmp: Path, keys: Keys, log: Callable[[str], None],
               quiet_wait: float = 0.0) -> dict[str, Any]:
    inputs = prepare_inputs(size, tmp, keys, log)
    runs: list[dict[str, Any]] = []
    try:
        # Untimed: the first upload after writing the inputs pays for the kernel making room in
        # the page cache (seen as twice the server CPU time at 2 GiB, whichever path ran first).
        warmup = measure("baseline", inputs, tmp / "warmup", keys)
        log(f"  warm-up (untimed) {LABELS['baseline']} {warmup['mb_per_s']:7.1f} MB/s")
        for rep in range(reps):
            for kind in KINDS:
                run = measure(kind, inputs, tmp / f"run-{rep}-{kind}", keys, quiet_wait)
                run["rep"] = rep
                runs.append(run)
                log(f"  rep {rep + 1}/{reps} {LABELS[kind]:10} {run['mb_per_s']:7.1f} MB/s  "
                    f"{run['seconds']:6.2f} s (tail {run['tail_seconds']:5.2f} s)  server cpu "
                    f"{_fmt(run['server_cpu_seconds'], 6.2)} s  client cpu "
                    f"{run['client_cpu_seconds']:5.2f} s  others {_fmt(run['others_cpus'])}  "
                    f"RSS idle {_fmt(run['rss_idle_mib'], 5.1)} peak "
                    f"{_fmt(run['vmhwm_mib'], 5.1)} MiB")
    finally:
        inputs.plaintext.unlink(missing_ok=True)
        inputs.envelope.unlink(missing_ok=True)
    return {"size_bytes": size, "size_mib": size / MiB, "envelope_bytes": inputs.envelope_bytes,
            "prepare": inputs.prepare, "warmup": warmup, "reps": reps, "runs": runs,
            "summary": summarise(runs)}


def _fmt(value: float | None, spec: float = 5.2) -> str:
    width, prec = str(spec).split(".")
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.{prec}f}"


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in runs if r["kind"] == kind]
        speeds = [r["mb_per_s"] for r in mine]
        out[kind] = {
            "mb_per_s": speeds,
            "median_mb_per_s": statistics.median(speeds),
            "min_mb_per_s": min(speeds),
            "max_mb_per_s": max(speeds),
            "median_wire_mb_per_s": statistics.median(r["wire_mb_per_s"] for r in mine),
            "median_seconds": statistics.median(r["seconds"] for r in mine),
            "median_tail_seconds": statistics.median(r["tail_seconds"] for r in mine),
            "median_server_cpu_per_wall": _median(
                [None if r["server_cpu_seconds"] is None else r["server_cpu_seconds"] /
                 r["seconds"] for r in mine]),
            # server CPU seconds per GB of attachment: much less sensitive to other processes
            # than MB/s (they take wall time, not the server's CPU time)
            "median_server_cpu_s_per_gb": _median(
                [None if r["server_cpu_seconds"] is None else r["server_cpu_seconds"] /
                 (r["size"] / 1e9) for r in mine]),
            "median_client_cpu_per_wall": statistics.median(
                r["client_cpu_seconds"] / r["seconds"] for r in mine),
            "median_others_cpus": _median([r["others_cpus"] for r in mine]),
            "rss_idle_mib": _median([r["rss_idle_mib"] for r in mine]),
            "peak_rss_mib": max((r["vmhwm_mib"] or 0.0) for r in mine),
            "peak_rss_sampled_mib": max(r["rss_peak_sampled_mib"] for r in mine),
            "late_rss_sampled_mib": _max([r.get("rss_late_peak_sampled_mib") for r in mine]),
            "wire_bytes": mine[0]["wire_bytes"],
        }
    base = out["baseline"]
    for kind in ("envelope", "form"):
        entry = out[kind]
        entry["ratio"] = entry["median_mb_per_s"] / base["median_mb_per_s"]
        entry["wire_ratio"] = entry["median_wire_mb_per_s"] / base["median_wire_mb_per_s"]
        # Each run against the baseline run of the same repetition (just before it).
        pairs = [o["mb_per_s"] / b["mb_per_s"] for b, o in zip(
            (r for r in runs if r["kind"] == "baseline"), (r for r in runs if r["kind"] == kind),
            strict=True)]
        entry["paired_ratios"] = pairs
        entry["paired_ratio_median"] = statistics.median(pairs)
        # Only the repetitions where other processes used < BUSY_WARNING CPU during both runs.
        quiet = [o["mb_per_s"] / b["mb_per_s"] for b, o in zip(
            (r for r in runs if r["kind"] == "baseline"), (r for r in runs if r["kind"] == kind),
            strict=True)
            if b["others_cpus"] is not None and o["others_cpus"] is not None
            and max(b["others_cpus"], o["others_cpus"]) < BUSY_WARNING]
        entry["quiet_paired_ratios"] = quiet
        entry["quiet_paired_ratio_median"] = statistics.median(quiet) if quiet else None
        entry["target_ratio"] = TARGETS[kind]
        entry["meets_target"] = entry["ratio"] >= TARGETS[kind]
        # Against the 64 KiB-read baseline (the only one before 57dccf7), for comparison.
        entry["ratio_to_baseline64"] = entry["median_mb_per_s"] / \
            out["baseline64"]["median_mb_per_s"]
        entry["meets_rss_target"] = entry["peak_rss_mib"] < RSS_TARGET_MIB
    return out


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print()
    print(f"Upload benchmark: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
          f"aiohttp {m['aiohttp']}, load avg {m['loadavg_at_start'][0]:.2f} -> "
          f"{report['loadavg_at_end'][0]:.2f}")
    print("a = ready-made envelope to /submit/envelope; b = plaintext through the no-JS form "
          "(sealed by the server);")
    print("c = baseline: bare aiohttp handler writing each piece as it arrives + fsync; c64 = "
          "the same reading 64 KiB at a time.")
    print("Interleaved c, c64, a, b after an untimed c; medians; targets are ratios to c.")
    print("MB/s = attachment bytes / wall time (1 MB = 10^6 B), first byte sent to last byte of "
          "the response (after fsync);")
    print("tail = time after the client had handed over the whole body; cpu columns are CPU "
          "per wall second: server = the")
    print("process under test (s/GB: its CPU seconds per GB of attachment, robust to other "
          "load); client = this process;")
    print("others = everything else on the machine. RSS = server VmHWM during the upload.")
    print()
    header = (f"{'size':>9}  {'path':10}  {'MB/s':>7}  {'min-max':>11}  {'wall s':>6}  "
              f"{'tail s':>6}  {'server':>6}  {'s/GB':>5}  {'client':>6}  {'others':>6}  "
              f"{'idle RSS':>8}  "
              f"{'peak RSS':>9}  {'ratio':>11}")
    print(header)
    print("-" * len(header))
    for result in report["sizes"]:
        label = f"{result['size_mib']:.0f} MiB"
        for kind in KINDS:
            s = result["summary"][kind]
            ratio = ""
            if kind not in BASELINES:
                ratio = f"{s['ratio']:.2f}x {'ok' if s['meets_target'] else 'LOW'}"
            print(f"{label:>9}  {LABELS[kind]:10}  {s['median_mb_per_s']:7.1f}  "
                  f"{s['min_mb_per_s']:5.0f}-{s['max_mb_per_s']:<5.0f}  "
                  f"{s['median_seconds']:6.2f}  {s['median_tail_seconds']:6.2f}  "
                  f"{_fmt(s['median_server_cpu_per_wall'], 6.2)}  "
                  f"{_fmt(s['median_server_cpu_s_per_gb'], 5.2)}  "
                  f"{s['median_client_cpu_per_wall']:6.2f}  "
                  f"{_fmt(s['median_others_cpus'], 6.2)}  "
                  f"{_fmt(s['rss_idle_mib'], 4.1)} MiB  {s['peak_rss_mib']:5.1f} MiB  "
                  f"{ratio:>11}")
            label = ""
    print()
    print(f"ratio = median MB/s / baseline median MB/s (targets: a >= {TARGETS['envelope']}x, "
          f"b >= {TARGETS['form']}x); paired = median of per-repetition ratios; quiet pairs =")
    print(f"the same over repetitions where others used < {BUSY_WARNING} CPU during both runs; "
          "wire = the ratio on bytes sent")
    print("(the envelope is larger than the attachment by its padding and framing; the form by "
          "its multipart framing):")
    for result in report["sizes"]:
        s = result["summary"]
        print(f"  {result['size_mib']:.0f} MiB: " + "; ".join(
            f"{LABELS[k]} {s[k]['ratio']:.2f}x (paired {s[k]['paired_ratio_median']:.2f}x, "
            + ("" if s[k]["quiet_paired_ratio_median"] is None else
               f"quiet pairs {s[k]['quiet_paired_ratio_median']:.2f}x of "
               f"{len(s[k]['quiet_paired_ratios'])}, ")
            + f"wire {s[k]['wire_ratio']:.2f}x)" for k in ("envelope", "form")))
    print("against c64, the same bare handler reading 64 KiB at a time (the only baseline "
          "until 57dccf7, when the server read that way):")
    for result in report["sizes"]:
        s = result["summary"]
        print(f"  {result['size_mib']:.0f} MiB: " + "; ".join(
            f"{LABELS[k]} {s[k]['ratio_to_baseline64']:.2f}x" for k in ("envelope", "form")))
    print()
    print("server CPU cost relative to the baseline (baseline s/GB / s/GB; 1.0 = no more CPU "
          "per byte than the bare handler):")
    for result in report["sizes"]:
        s = result["summary"]
        base_cost = s["baseline"]["median_server_cpu_s_per_gb"]
        if base_cost:
            print(f"  {result['size_mib']:.0f} MiB: " + "; ".join(
                f"{LABELS[k]} {base_cost / s[k]['median_server_cpu_s_per_gb']:.2f}x"
                for k in ("envelope", "form") if s[k]["median_server_cpu_s_per_gb"]))
    big = report["sizes"][-1]
    print()
    kdf = "8 MiB test" if FAST_KDF else "built-in 64 MiB"
    print(f"server RSS during the {big['size_mib']:.0f} MiB uploads, target < "
          f"{RSS_TARGET_MIB:.0f} MiB: peak = VmHWM over the whole request, the return code's "
          f"Argon2id ({kdf}) included;")
    print("streaming = largest VmRSS sampled in the second half of the upload (after the "
          "Argon2id; sampled max over the whole request in brackets):")
    for kind in ("envelope", "form"):
        s = big["summary"][kind]
        late = s["late_rss_sampled_mib"]
        print(f"  {LABELS[kind]:10} peak {s['peak_rss_mib']:6.1f} MiB "
              f"{'ok' if s['meets_rss_target'] else 'HIGH'}  streaming {_fmt(late, 6.1)} MiB "
              f"{'ok' if late is not None and late < RSS_TARGET_MIB else 'HIGH'}  "
              f"({s['peak_rss_sampled_mib']:.1f})")
    s = big["summary"]["baseline"]
    print(f"  {LABELS['baseline']:10} peak {s['peak_rss_mib']:6.1f} MiB     streaming "
          f"{_fmt(s['late_rss_sampled_mib'], 6.1)} MiB     ({s['peak_rss_sampled_mib']:.1f})  "
          "(bare aiohttp, for comparison)")
    if len(report["sizes"]) > 1:
        print("  by size (must be flat): " + "; ".join(
            f"{LABELS[k]} " + " / ".join(f"{r['summary'][k]['peak_rss_mib']:.1f}"
                                         for r in report["sizes"]) for k in KINDS) + " MiB")
    clients = [r["summary"][k]["median_client_cpu_per_wall"] for r in report["sizes"]
               for k in KINDS]
    print()
    print(f"NOTE: the client runs on this same {m['cpu_count']}-CPU machine and used "
          f"{min(clients):.2f}-{max(clients):.2f} CPU per wall second (sendfile from the page "
          "cache; mostly kernel time for")
    print("loopback TCP) while the server ran: on 2 cores that leaves the server (and its "
          "fsync) less than a whole machine; the")
    print("baseline pays the same client cost, so ratios are fairer than MB/s.")
    busy = [r["summary"][k]["median_others_cpus"] for r in report["sizes"] for k in KINDS]
    busiest = max((b for b in busy if b is not None), default=None)
    if busiest is not None and busiest > BUSY_WARNING:
        print()
        print(f"WARNING: other processes kept up to {busiest:.2f} CPUs busy during these runs; "
              f"with {m['cpu_count']} CPUs the figures are pessimistic: run again when quieter.")


def _parse_list(text: str | None, default: list[int], what: str,
                parser: argparse.ArgumentParser) -> list[int]:
    if text is None:
        return default
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"{what}: a comma-separated list of integers")
    if not values or any(v <= 0 for v in values):
        parser.error(f"{what}: positive integers")
    return values


def _disk_needed(sizes: list[int]) -> int:
    biggest = max(sizes)
    # plaintext + envelope (<= 4 % padding and framing) + one upload in flight + 1 GiB margin
    return int(biggest * (1 + 1.05 + 1.05)) + GiB


def profile(kind: str, size: int, py_spy: str, tmp_dir: Path | None, seconds_rate: int,
            gil: bool = False) -> int:
    """One upload of ``kind`` under ``py-spy record`` (attached to the server process); prints
    py-spy's summary and writes a flame graph next to the JSON results."""
    keys = make_keys()
    out_dir = DEFAULT_JSON.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    svg = out_dir / f"upload-profile-{kind}.svg"
    raw = out_dir / f"upload-profile-{kind}.txt"
    with tempfile.TemporaryDirectory(prefix="srdb-upload-", dir=tmp_dir) as tmp:
        inputs = prepare_inputs(size, Path(tmp), keys, print)
        workdir = Path(tmp) / "run"
        server = start_dropbox_server(workdir / "data", keys) if kind not in BASELINES \
            else start_baseline_server(workdir, BASELINES[kind])
        try:
            recorders = [subprocess.Popen([py_spy, "record", "--pid", str(server.pid), "--rate",
                                           str(seconds_rate), "--threads", "--format", fmt,
                                           *(["--gil"] if gil else []),
                                           "--output", str(path), "--nonblocking"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True)
                         for fmt, path in (("flamegraph", svg), ("raw", raw))]
            time.sleep(1.0)  # let py-spy attach
            if kind in BASELINES:
                reply = http(server.port, "POST", "/upload",
                             {"Content-Type": "application/octet-stream"}, [inputs.plaintext])
            else:
                cookie, token = _csrf(server.port)
                if kind == "envelope":
                    reply = http(server.port, "POST", f"/submit/envelope?recipient={RECIPIENT}",
                                 {"Content-Type": "application/octet-stream",
                                  "X-CSRF-Token": token, "Cookie": f"srdb_csrf={cookie}"},
                                 [inputs.envelope])
                else:
                    reply = http(server.port, "POST", "/report",
                                 {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                                  "Cookie": f"srdb_csrf={cookie}"},
                                 form_parts(token, inputs.plaintext))
            print(f"{kind}: HTTP {reply.status}, {size / reply.seconds / 1e6:.1f} MB/s under "
                  "py-spy (slower than without)")
        finally:
            server.stop()  # py-spy exits when the process does, and writes its output
            for rec in recorders:
                try:
                    _, err = rec.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    rec.send_signal(signal.SIGINT)
                    _, err = rec.communicate()
                if rec.returncode not in (0, None) and err:
                    print(err[-2000:], file=sys.stderr)
            shutil.rmtree(workdir, ignore_errors=True)
    if raw.exists():
        _print_raw_profile(raw)
    print(f"flame graph: {svg}; collapsed stacks: {raw}")
    return 0


Placement = tuple[set[int] | None, set[int] | None]  # client CPUs, server CPUs (None: any)


def _placements(cpus: set[int]) -> dict[str, Placement]:
    # The first two CPUs this process may use (a cpuset or taskset may exclude CPU 0).
    first, second = sorted(cpus)[:2]
    return {"free": (None, None), "split": ({first}, {second}), "shared": ({first}, {first})}


def baseline_placement(size: int, reps: int, tmp_dir: Path | None, json_out: Path,
                       commit: str | None) -> int:
    """Upload to the baseline (c) ``reps`` times in each CPU placement of client and server:
    where the kernel puts them, on two different CPUs, and on the same CPU (the order rotated
    each repetition, after one untimed upload). Shows whether the baseline's spread between
    runs comes from where the scheduler places the two processes."""
    everywhere = os.sched_getaffinity(0)
    if len(everywhere) < 2:
        print("needs at least two CPUs", file=sys.stderr)
        return 1
    placements = _placements(everywhere)
    names = list(placements)
    results: dict[str, list[dict[str, float | None]]] = {name: [] for name in placements}
    with tempfile.TemporaryDirectory(prefix="srdb-upload-", dir=tmp_dir) as tmp:
        plaintext = Path(tmp) / "plaintext.bin"
        write_plaintext(plaintext, size)
        order = [("free", None)] + [(name, rep) for rep in range(reps)
                                    for name in names[rep % 3:] + names[:rep % 3]]
        for name, rep in order:
            client_cpus, server_cpus = placements[name]
            workdir = Path(tmp) / "run"
            try:
                # The server inherits this process's CPUs, all its threads included.
                os.sched_setaffinity(0, server_cpus or everywhere)
                server = start_baseline_server(workdir)
                try:
                    os.sched_setaffinity(0, client_cpus or everywhere)
                    cpu0 = _proc_cpu_seconds(server.pid)
                    reply = http(server.port, "POST", "/upload",
                                 {"Content-Type": "application/octet-stream"}, [plaintext])
                    cpu1 = _proc_cpu_seconds(server.pid)
                finally:
                    server.stop()
            finally:
                os.sched_setaffinity(0, everywhere)
                shutil.rmtree(workdir, ignore_errors=True)
                os.sync()
            if reply.status != 200:
                raise RuntimeError(f"baseline: HTTP {reply.status}")
            if rep is None:
                continue  # the untimed first upload (the page cache makes room for the file)
            cpu = sum(cpu1) - sum(cpu0) if cpu0 is not None and cpu1 is not None else None
            run = {"mb_per_s": size / reply.seconds / 1e6,
                   "tail_seconds": reply.seconds - reply.send_seconds,
                   "server_cpu_seconds": cpu}
            results[name].append(run)
            print(f"  rep {rep + 1}/{reps} {name:6s} {size / reply.seconds / 1e6:7.1f} MB/s  "
                  f"tail {reply.seconds - reply.send_seconds:.2f} s  server cpu "
                  f"{'-' if cpu is None else f'{cpu:.2f}'} s", flush=True)
    print(f"\nc baseline, {size // MiB} MiB, median MB/s by placement (client CPU / server CPU):")
    for name, (client_cpus, server_cpus) in placements.items():
        rates = [r["mb_per_s"] or 0.0 for r in results[name]]
        print(f"  {name:6s} client {_cpus(client_cpus):4s} server {_cpus(server_cpus):4s} "
              f"median {statistics.median(rates):6.1f}  range {min(rates):.1f}-{max(rates):.1f}")
    write_json(json_out, {"benchmark": "upload --baseline-placement",
                          "started": datetime.now(UTC).isoformat(timespec="seconds"),
                          "machine": machine_info("aiohttp"), "size_bytes": size, "reps": reps,
                          "code": {"commit": commit} if commit else {"working_tree": str(ROOT)},
                          "placements": {k: {"client_cpus": _cpus(v[0]),
                                             "server_cpus": _cpus(v[1])}
                                         for k, v in placements.items()},
                          "runs": results})
    return 0


def _cpus(cpus: set[int] | None) -> str:
    return "any" if cpus is None else ",".join(str(c) for c in sorted(cpus))


def _print_raw_profile(raw: Path, top: int = 25) -> None:
    """Own time and inclusive time per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread (", "process ")):
            frames = frames[1:]
        samples += count
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    print(f"\n{samples} samples (all threads, idle included); top {top} by own samples:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {count / samples:6.1%}  {frame}")
    print(f"\ntop {top} by inclusive samples:")
    for frame, count in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {count / samples:6.1%}  {frame}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", default=None,
                        help="attachment sizes, comma-separated (default 200,2048; 32,200 with "
                             "--quick)")
    parser.add_argument("--reps", default=None,
                        help="interleaved repetitions per size, comma-separated, one per size "
                             "(default 3,2; 2,1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON,
                        help=f"where to write JSON (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--tmp-dir", type=Path, default=None,
                        help="where the inputs and the servers' data folders go (default: the "
                             "system temp dir; the baseline writes into the same place)")
    parser.add_argument("--production-kdf", action="store_true",
                        help="derive return codes with the built-in Argon2id parameters "
                             "(64 MiB) instead of a fast 8 MiB one: shows their memory in the "
                             "peak RSS")
    parser.add_argument("--from-git", metavar="REV",
                        help="run the server (and seal the envelopes) from a snapshot of this "
                             "git revision (git archive) instead of the working tree: immune to "
                             "edits made while the benchmark runs")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="before each upload, wait up to this many seconds for other "
                             f"processes to use less than {QUIET_CPUS} CPU (default 30; 0 with "
                             "--quick; 0 = do not wait)")
    parser.add_argument("--profile", choices=KINDS,
                        help="instead of benchmarking, run one upload of this kind under "
                             "py-spy record (needs --py-spy) and print where the server's time "
                             "goes")
    parser.add_argument("--profile-mib", type=int, default=1024)
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: sample only the thread holding the GIL (py-spy "
                             "--gil): what keeps the other threads waiting")
    parser.add_argument("--baseline-placement", action="store_true",
                        help="instead of benchmarking, upload to the baseline (c) with client "
                             "and server on any CPUs, on different CPUs and on the same CPU "
                             "(--reps times each, first of --sizes-mib; default 200 MiB, 5): "
                             "where the baseline's spread comes from")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"),
                        help="py-spy executable (pip install py-spy)")
    parser.add_argument("--baseline-server", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-read", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.baseline_server:
        return baseline_server(args.baseline_server, args.baseline_read)
    global FAST_KDF
    FAST_KDF = not args.production_kdf
    with contextlib.ExitStack() as stack:
        if args.from_git:
            snapshot = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="srdb-upload-code-", dir=args.tmp_dir)))
            commit = use_snapshot(args.from_git, snapshot)
            print(f"server code: git {args.from_git} ({commit[:12]}), snapshot in {snapshot}")
        else:
            commit = None
        if args.baseline_placement:
            size = _parse_list(args.sizes_mib, [200], "--sizes-mib", parser)[0] * MiB
            reps = _parse_list(args.reps, [5], "--reps", parser)[0]
            out = args.json_out if args.json_out != DEFAULT_JSON else \
                DEFAULT_JSON.with_name("upload-placement.json")
            return baseline_placement(size, reps, args.tmp_dir, out, commit)
        if args.profile:
            if not args.py_spy:
                parser.error("--profile needs py-spy: pip install py-spy, then --py-spy PATH")
            return profile(args.profile, args.profile_mib * MiB, args.py_spy, args.tmp_dir, 200,
                           args.profile_gil)
        return run_benchmark(args, parser, commit)
    return 0  # unreachable (mypy: ExitStack may swallow exceptions)


def use_snapshot(rev: str, where: Path) -> str:
    """Export ``rev``'s server and envelope packages into ``where`` and use them from now on
    (this process imports dropbox_* lazily; the servers get it as cwd and PYTHONPATH)."""
    global CODE_ROOT
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "dropbox_server",
                              "dropbox_envelope"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    if any(name.startswith("dropbox_") for name in sys.modules):
        raise RuntimeError("dropbox_* imported before the snapshot was in place")
    sys.path.insert(0, str(where))
    CODE_ROOT = where
    return commit


def run_benchmark(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  commit: str | None) -> int:

    sizes_mib = _parse_list(args.sizes_mib, [32, 200] if args.quick else [200, 2048],
                            "--sizes-mib", parser)
    reps = _parse_list(args.reps, [2, 1] if args.quick else [3, 2], "--reps", parser)
    if len(reps) == 1:
        reps = reps * len(sizes_mib)
    if len(reps) != len(sizes_mib):
        parser.error("--reps: one count per size (or a single count for all)")
    sizes = [s * MiB for s in sizes_mib]
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 30.0)

    tmp_parent = args.tmp_dir or Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_parent).free
    needed = _disk_needed(sizes)
    if free < needed:
        print(f"not enough free space in {tmp_parent}: {free / GiB:.1f} GiB free, "
              f"{needed / GiB:.1f} GiB needed", file=sys.stderr)
        return 1

    def log(line: str) -> None:
        print(line, flush=True)

    log(f"free space in {tmp_parent}: {free / GiB:.1f} GiB (needs {needed / GiB:.1f} GiB)")
    report: dict[str, Any] = {
        "benchmark": "upload",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info("aiohttp", "pynacl"),
        "code": {"git": args.from_git, "commit": commit} if commit else
                {"working_tree": str(ROOT)},
        "quiet_wait_seconds": quiet_wait,
        "targets": {"envelope_ratio": TARGETS["envelope"], "form_ratio": TARGETS["form"],
                    "peak_rss_mib": RSS_TARGET_MIB},
        "method": {
            "server": "python -m dropbox_server run --dev, a fresh process and data folder per "
                      f"upload; max_report_bytes = {MAX_REPORT_BYTES}; "
                      + ("code KDF opslimit 1, memlimit 8 MiB" if FAST_KDF else
                         "built-in code KDF"),
            "baseline": "bare aiohttp app in a subprocess: iter_any() -> os.write -> "
                        "fsync on a thread, same filesystem",
            "client": "this process: blocking socket, head with sendall, files with "
                      "socket.sendfile from the page cache, Connection: close",
            "order": "per size an untimed baseline upload, then per repetition: baseline, "
                     "baseline64, envelope, form",
            "mb": "attachment bytes / 1e6 / wall seconds (request start to end of response)",
            "rss": "server VmHWM read after the upload, reset (clear_refs 5) just before it: "
                   f"the upload's own peak; VmRSS also sampled every {RSS_INTERVAL} s",
        },
        "sizes": [],
    }
    keys = make_keys()
    with tempfile.TemporaryDirectory(prefix="srdb-upload-", dir=args.tmp_dir) as tmp:
        for size, rep_count in zip(sizes, reps, strict=True):
            log(f"{size // MiB} MiB ({rep_count} repetitions):")
            report["sizes"].append(bench_size(size, rep_count, Path(tmp), keys, log,
                                              quiet_wait))
    report["loadavg_at_end"] = list(os.getloadavg())
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")

    print_report(report)
    write_json(args.json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
