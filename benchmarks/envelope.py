#!/usr/bin/env python3
"""Envelope throughput and peak memory against bare libsodium secretstream.

    .venv/bin/python benchmarks/envelope.py [--size-mib 1024] [--small-mib 64] [--reps 3]
                                            [--quick] [--json-out benchmarks/results/envelope.json]

What runs (see benchmarks/README.md for how to read the output):

* **ours**: :func:`dropbox_envelope.streams.encrypt` / :func:`~dropbox_envelope.streams.decrypt`
  of a one-attachment envelope (one X25519 recipient), 1 MiB reads like the CLI
  (``streams.BLOCK_SIZE``). Includes everything the format does: record framing, length
  prefixes, the attachment's SHA-256, the manifest and the PADME padding.
* **baseline**: bare PyNaCl ``crypto_secretstream_xchacha20poly1305_push`` / ``_pull`` over
  the same plaintext in 64 KiB chunks (ciphertext laid end to end after the 24-byte stream
  header, no framing, no hashing): the floor any secretstream-based format can reach from
  Python.

Both read their plaintext from the same in-memory reader (a random pattern repeated to the
requested size; each ``read`` returns a fresh ``bytes`` copy, as a read from the page cache
would), with the same 1 MiB read size, and write to the same kind of sink:

* encrypt writes to a counting sink (nothing is kept), so the figure is the CPU cost of
  sealing, not the speed of this machine's disk;
* decrypt reads a real envelope from a temporary file written (untimed) beforehand by the
  same implementation, and writes the plaintext to a counting sink. The file was just
  written, so it is read from the page cache; both sides are treated the same way. The
  temporary files are deleted at the end (or on error).

Every measurement runs in a fresh subprocess that reports its wall time, its CPU time and
its peak RSS (``ru_maxrss``) at the end, so memory can be compared across sizes. Runs are
interleaved (baseline, ours, baseline, ours, ...) so that load from other users of the machine
hits both sides alike; medians are reported. Throughput is *attachment* bytes per second
(1 MB = 10**6 bytes) on both sides, so ours is charged for its padding and framing too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _machine import busy_cpu_seconds, machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmark the working tree, whatever the venv's install says
    sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024
READ_BLOCK = MiB  # dropbox_envelope.streams.BLOCK_SIZE, checked in the worker
CHUNK = 64 * 1024  # dropbox_envelope.chunks.CHUNK_SIZE, checked in the worker
PATTERN_BYTES = MiB + 4093  # not a multiple of the read size: each read starts elsewhere
TARGET_RATIO = 0.7
BUSY_WARNING = 0.5  # median CPUs used by other processes above which the table gets a warning
IMPLS = ("baseline", "ours")
OPS = ("encrypt", "decrypt")
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "envelope.json"


# -- the worker side (runs in a subprocess, one measurement each) ---------------------------------

class RepeatingReader:
    """A binary reader of ``total`` bytes made of a random pattern repeated; no file involved."""

    def __init__(self, total: int, pattern_bytes: int = PATTERN_BYTES) -> None:
        pattern = os.urandom(pattern_bytes)
        self._doubled = pattern + pattern  # any window up to one pattern long is contiguous
        self._period = pattern_bytes
        self._total = total
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        remaining = self._total - self._pos
        if size < 0 or size > remaining:
            size = remaining
        if size > self._period:  # not on the benchmark's path (reads are 1 MiB)
            return b"".join(self.read(min(self._period, size - done))
                            for done in range(0, size, self._period))
        start = self._pos % self._period
        self._pos += size
        return self._doubled[start:start + size]  # a copy, like a read from the page cache


class CountingSink:
    """A writable that keeps nothing but the byte count."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)


class CountingAttachments:
    """A :class:`dropbox_envelope.streams.AttachmentSink` that counts bytes."""

    def __init__(self) -> None:
        self.writer = CountingSink()
        self.done_calls: list[tuple[int, int, str]] = []

    def open(self, index: int) -> CountingSink:
        return self.writer

    def done(self, index: int, size: int, sha256: str) -> None:
        self.done_calls.append((index, size, sha256))


def _current_rss_mib() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / MiB


def _baseline_encrypt(key: bytes, reader: RepeatingReader, out: Any) -> None:
    import nacl.bindings as sodium

    push = sodium.crypto_secretstream_xchacha20poly1305_push
    message = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    out.write(sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key))
    block = reader.read(READ_BLOCK)
    while block:
        # Read one block ahead so the last chunk of the last block gets TAG_FINAL.
        following = reader.read(READ_BLOCK)
        last = len(block) - 1 - (len(block) - 1) % CHUNK  # start of this block's last chunk
        for start in range(0, last, CHUNK):
            out.write(push(state, block[start:start + CHUNK], None, message))
        out.write(push(state, block[last:], None, message if following else final))
        block = following


def _baseline_decrypt(key: bytes, src: Any, out: Any) -> None:
    import nacl.bindings as sodium

    pull = sodium.crypto_secretstream_xchacha20poly1305_pull
    frame_bytes = CHUNK + sodium.crypto_secretstream_xchacha20poly1305_ABYTES
    final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(
        state, src.read(sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES), key)
    finished = False
    rest = b""

    def open_frame(frame: bytes) -> None:
        nonlocal finished
        if finished:
            raise RuntimeError("data after the final chunk")
        plaintext, tag = pull(state, frame, None)
        finished = tag == final
        out.write(plaintext)

    while block := src.read(READ_BLOCK):
        pos = 0
        if rest:  # only the frame straddling two reads is joined; the others are sliced once
            need = frame_bytes - len(rest)
            if len(block) < need:
                rest += block
                continue
            open_frame(rest + block[:need])
            pos = need
        while len(block) - pos >= frame_bytes:
            open_frame(block[pos:pos + frame_bytes])
            pos += frame_bytes
        rest = block[pos:]
    if rest:
        open_frame(rest)
    if not finished:
        raise RuntimeError("truncated baseline stream")


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement: ``spec`` says op, impl, size, key seed and envelope path."""
    op, impl, size = spec["op"], spec["impl"], spec["size"]
    seed = bytes.fromhex(spec["seed"])
    path = spec["path"]
    to_file = spec.get("to_file", False)
    if impl == "ours":
        from dropbox_envelope import SecretKey, chunks, streams

        if streams.BLOCK_SIZE != READ_BLOCK or chunks.CHUNK_SIZE != CHUNK:
            raise RuntimeError("dropbox_envelope's block or chunk size changed: update this file")
        secret = SecretKey.from_seed(seed)
    else:
        import nacl.bindings  # noqa: F401 - imported before timing, as on the ours side
    rss_start = _current_rss_mib()
    result: dict[str, Any] = {"op": op, "impl": impl, "size": size}

    if op == "encrypt":
        reader = RepeatingReader(size)
        with open(path, "wb") if to_file else contextlib.nullcontext(CountingSink()) as out:
            counter = out if isinstance(out, CountingSink) else None
            busy0 = busy_cpu_seconds()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if impl == "ours":
                written = streams.encrypt(
                    out, [secret.public_key],
                    attachments=[streams.AttachmentSource(
                        "benchmark.bin", "application/octet-stream", reader)],  # type: ignore[arg-type]
                    message="benchmark")
            else:
                _baseline_encrypt(seed, reader, out)
                written = counter.count if counter else out.tell()
            wall1, cpu1 = time.perf_counter(), time.process_time()
            busy1 = busy_cpu_seconds()
        result["envelope_bytes"] = written
        result["plain_bytes"] = size
    else:
        sink = CountingAttachments()
        with open(path, "rb") as src:
            busy0 = busy_cpu_seconds()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if impl == "ours":
                manifest = streams.decrypt(src, [secret], sink)  # type: ignore[arg-type]
                if manifest.attachments[0].size != size or sink.done_calls[0][1] != size:
                    raise RuntimeError("decrypted attachment has the wrong size")
            else:
                _baseline_decrypt(seed, src, sink.writer)
            wall1, cpu1 = time.perf_counter(), time.process_time()
            busy1 = busy_cpu_seconds()
        if sink.writer.count != size:
            raise RuntimeError(f"decrypted {sink.writer.count} bytes, expected {size}")
        result["envelope_bytes"] = os.path.getsize(path)
        result["plain_bytes"] = sink.writer.count

    result["seconds"] = wall1 - wall0
    result["cpu_seconds"] = cpu1 - cpu0
    result["mb_per_s"] = size / (wall1 - wall0) / 1e6
    # CPUs kept busy by *other* processes meanwhile (0 = idle machine; 1 = one core taken):
    # ours needs a second core for its SHA-256 thread, the baseline does not.
    result["others_cpus"] = (None if busy0 is None or busy1 is None else
                             max(0.0, (busy1 - busy0 - (cpu1 - cpu0)) / (wall1 - wall0)))
    result["rss_start_mib"] = rss_start
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


# -- the orchestrating side ----------------------------------------------------------------------

def _spawn(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['impl']} {spec['op']} failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def bench_size(size: int, reps: int, tmp: Path,
               log: Callable[[str], None]) -> dict[str, Any]:
    """All measurements for one size: prepare the envelopes, then interleaved timed runs."""
    seed = os.urandom(32).hex()  # a throwaway key for this benchmark only
    paths = {impl: tmp / f"{impl}-{size // MiB}MiB.bin" for impl in IMPLS}
    runs: list[dict[str, Any]] = []
    try:
        prepare = {}
        for impl in IMPLS:  # untimed as far as the comparison goes; kept for information
            prepare[impl] = _spawn({"op": "encrypt", "impl": impl, "size": size, "seed": seed,
                                    "path": str(paths[impl]), "to_file": True})
            log(f"  prepared {impl} envelope: {prepare[impl]['envelope_bytes']:,} bytes "
                f"({prepare[impl]['mb_per_s']:.0f} MB/s to a temp file)")
        for rep in range(reps):
            for op in OPS:
                for impl in IMPLS:
                    run = _spawn({"op": op, "impl": impl, "size": size, "seed": seed,
                                  "path": str(paths[impl])})
                    run["rep"] = rep
                    runs.append(run)
                    log(f"  rep {rep + 1}/{reps} {op:7} {impl:8} {run['mb_per_s']:8.1f} MB/s  "
                        f"{run['seconds']:7.3f} s  cpu {run['cpu_seconds']:7.3f} s  "
                        f"peak RSS {run['peak_rss_mib']:6.1f} MiB  others "
                        f"{_fmt(run['others_cpus'])} CPUs")
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)
    return {"size_bytes": size, "size_mib": size / MiB, "prepare": prepare, "runs": runs,
            "summary": summarise(runs)}


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.2f}"


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in OPS:
        entry: dict[str, Any] = {}
        for impl in IMPLS:
            mine = [r for r in runs if r["op"] == op and r["impl"] == impl]
            speeds = [r["mb_per_s"] for r in mine]
            entry[impl] = {
                "mb_per_s": speeds,
                "median_mb_per_s": statistics.median(speeds),
                "min_mb_per_s": min(speeds),
                "max_mb_per_s": max(speeds),
                "median_seconds": statistics.median(r["seconds"] for r in mine),
                "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
                # > 1 when the SHA-256 worker thread really ran alongside the main thread
                "median_cpu_per_wall": statistics.median(r["cpu_seconds"] / r["seconds"]
                                                         for r in mine),
                "median_others_cpus": _median_or_none([r["others_cpus"] for r in mine]),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
                "rss_start_mib": max((r["rss_start_mib"] or 0.0) for r in mine),
                "envelope_bytes": mine[0]["envelope_bytes"],
            }
        base, ours = entry["baseline"], entry["ours"]
        entry["ratio"] = ours["median_mb_per_s"] / base["median_mb_per_s"]
        # Each ours run against the baseline run just before it: less sensitive to slow drift.
        zipped = list(zip((r for r in runs if r["op"] == op and r["impl"] == "baseline"),
                          (r for r in runs if r["op"] == op and r["impl"] == "ours"),
                          strict=True))
        pairs = [o["mb_per_s"] / b["mb_per_s"] for b, o in zipped]
        entry["paired_ratios"] = pairs
        entry["paired_ratio_median"] = statistics.median(pairs)
        # Only the pairs during which other processes left a core free (for both runs).
        quiet = [o["mb_per_s"] / b["mb_per_s"] for b, o in zipped
                 if max(b["others_cpus"] or 0.0, o["others_cpus"] or 0.0) < BUSY_WARNING
                 and b["others_cpus"] is not None and o["others_cpus"] is not None]
        entry["quiet_paired_ratios"] = quiet
        entry["quiet_paired_ratio_median"] = statistics.median(quiet) if quiet else None
        entry["meets_target"] = entry["ratio"] >= TARGET_RATIO
        out[op] = entry
    return out


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print()
    print(f"Envelope benchmark: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
          f"PyNaCl {m['pynacl']}, load avg {m['loadavg_at_start'][0]:.2f} -> "
          f"{report['loadavg_at_end'][0]:.2f}")
    print(f"{report['reps']} interleaved runs per cell, medians; MB/s = attachment bytes / wall "
          "time (1 MB = 10^6 B)")
    print("cpu/wall > 1: a second thread of ours ran in parallel; others: CPUs kept busy by other "
          "processes meanwhile")
    print()
    header = (f"{'size':>9}  {'op':7}  {'impl':8}  {'MB/s':>7}  {'min-max':>13}  {'wall s':>6}  "
              f"{'cpu/wall':>8}  {'others':>6}  {'peak RSS':>9}  {'ratio':>10}")
    print(header)
    print("-" * len(header))
    for result in report["sizes"]:
        label = f"{result['size_mib']:.0f} MiB"
        for op in OPS:
            entry = result["summary"][op]
            for impl in IMPLS:
                s = entry[impl]
                ratio = ""
                if impl == "ours":
                    flag = "ok" if entry["meets_target"] else "LOW"
                    ratio = f"{entry['ratio']:.2f}x {flag}"
                print(f"{label:>9}  {op:7}  {impl:8}  {s['median_mb_per_s']:7.1f}  "
                      f"{s['min_mb_per_s']:6.0f}-{s['max_mb_per_s']:<6.0f}  "
                      f"{s['median_seconds']:6.2f}  {s['median_cpu_per_wall']:8.2f}  "
                      f"{_fmt(s['median_others_cpus']):>6}  "
                      f"{s['peak_rss_mib']:5.1f} MiB  {ratio:>10}")
                label = ""
    print()
    print(f"ratio = ours / baseline median MB/s (target >= {TARGET_RATIO}x); paired = median of "
          "per-repetition ratios;")
    print(f"quiet pairs = the same over repetitions where other processes used < {BUSY_WARNING} "
          "CPU:")
    for result in report["sizes"]:
        summary = result["summary"]
        print(f"  {result['size_mib']:.0f} MiB: " + ", ".join(
            f"{op} {summary[op]['ratio']:.2f}x (paired {summary[op]['paired_ratio_median']:.2f}x"
            + ("" if summary[op]["quiet_paired_ratio_median"] is None else
               f", quiet pairs {summary[op]['quiet_paired_ratio_median']:.2f}x "
               f"of {len(summary[op]['quiet_paired_ratios'])}") + ")"
            for op in OPS))
    if len(report["sizes"]) > 1:
        print()
        print("peak RSS (MiB) by size, to show memory is flat in the size:")
        for op in OPS:
            for impl in IMPLS:
                cells = "  ".join(
                    f"{r['size_mib']:.0f} MiB: {r['summary'][op][impl]['peak_rss_mib']:6.1f}"
                    for r in report["sizes"])
                print(f"  {op:7} {impl:8} {cells}")
    busy = [entry[impl]["median_others_cpus"] for r in report["sizes"]
            for entry in r["summary"].values() for impl in IMPLS]
    busiest = max((b for b in busy if b is not None), default=None)
    if busiest is not None and busiest > BUSY_WARNING:
        print()
        print(f"WARNING: other processes kept up to {busiest:.2f} CPUs busy during these runs; "
              f"with {report['machine']['cpu_count']} CPUs, ours (which hashes on a second "
              "thread) was short of a core: ratios are pessimistic, run again when quieter.")
    big = report["sizes"][-1]
    plain = big["size_bytes"]
    env = big["summary"]["encrypt"]["ours"]["envelope_bytes"]
    print()
    print(f"envelope overhead at {big['size_mib']:.0f} MiB: {env - plain:,} bytes "
          f"({(env - plain) / plain:.2%}, mostly PADME padding) that ours seals and baseline does "
          "not")


def profile(op: str, size: int, tmp_dir: Path | None) -> int:
    """cProfile one in-process run of ours (the envelope for decrypt is prepared untimed)."""
    import cProfile
    import pstats

    seed = os.urandom(32).hex()
    with tempfile.TemporaryDirectory(prefix="srdb-bench-", dir=tmp_dir) as tmp:
        path = str(Path(tmp) / "ours.bin")
        if op == "decrypt":
            run_worker({"op": "encrypt", "impl": "ours", "size": size, "seed": seed,
                        "path": path, "to_file": True})
        profiler = cProfile.Profile()
        profiler.enable()
        result = run_worker({"op": op, "impl": "ours", "size": size, "seed": seed, "path": path})
        profiler.disable()
    print(f"ours {op} of {size // MiB} MiB: {result['mb_per_s']:.1f} MB/s under cProfile "
          f"(cpu/wall {result['cpu_seconds'] / result['seconds']:.2f}); main thread only:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=None,
                        help="attachment size for the headline figures (default 1024; 64 --quick)")
    parser.add_argument("--small-mib", type=int, default=None,
                        help="second, smaller size for the memory comparison "
                             "(default 64; 16 with --quick; 0 to skip)")
    parser.add_argument("--reps", type=int, default=None,
                        help="interleaved repetitions per cell (default 5; 3 with --quick; "
                             "at least 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON,
                        help=f"where to write JSON (default {DEFAULT_JSON.relative_to(ROOT)})")
    parser.add_argument("--tmp-dir", type=Path, default=None,
                        help="where the temporary envelopes go (default: the system temp dir)")
    parser.add_argument("--profile", choices=OPS,
                        help="instead of benchmarking, run ours once in-process under cProfile "
                             "at --size-mib and print where the time goes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0

    size_mib = args.size_mib if args.size_mib is not None else (64 if args.quick else 1024)
    small_mib = args.small_mib if args.small_mib is not None else (16 if args.quick else 64)
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    if args.profile:
        return profile(args.profile, size_mib * MiB, args.tmp_dir)
    if size_mib <= 0 or reps < 3:
        parser.error("--size-mib must be positive and --reps at least 3")
    sizes = sorted({s * MiB for s in (small_mib, size_mib) if s > 0})

    def log(line: str) -> None:
        print(line, flush=True)

    report: dict[str, Any] = {
        "benchmark": "envelope",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info("pynacl"),
        "reps": reps,
        "read_block_bytes": READ_BLOCK,
        "chunk_bytes": CHUNK,
        "target_ratio": TARGET_RATIO,
        "method": {
            "reader": f"in-memory random pattern of {PATTERN_BYTES} bytes repeated; each read "
                      "returns a new bytes object",
            "encrypt_sink": "counting sink (no disk)",
            "decrypt_source": "temporary file written beforehand by the same implementation "
                              "(page cache), read 1 MiB at a time; plaintext to a counting sink",
            "mb": "attachment bytes / 1e6 / wall seconds",
            "isolation": "one subprocess per measurement; peak RSS = ru_maxrss at its end",
        },
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="srdb-bench-", dir=args.tmp_dir) as tmp:
        for size in sizes:
            log(f"{size // MiB} MiB:")
            report["sizes"].append(bench_size(size, reps, Path(tmp), log))
    report["loadavg_at_end"] = list(os.getloadavg())
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")

    print_report(report)
    write_json(args.json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
