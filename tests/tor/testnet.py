"""A private Tor network on 127.0.0.1 for the test suite.

Follows the measured recipe in the shared notes (tor-testnet.md): 3 directory authorities and
3 relays (none of them exits) vote a first consensus ~10 s after launch; then a client node with
a SocksPort and a ControlPort joins. Any other tor (``dropbox-server run --tor`` launching its
own) joins as a client/onion service with the lines of :meth:`TorNetwork.join_config`.

Every process is ours: started with Popen (and ``PR_SET_PDEATHSIG`` so it dies with pytest even
on ``kill -9``), stopped by PID (SIGTERM, SIGKILL after 10 s). Ports are picked free below 32768
(the kernel's ephemeral range starts there; a port in it may be in TIME_WAIT from an outgoing
connection). Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ControlConnection", "Node", "TorNetwork", "TorNetworkError", "free_ports"]

AUTHORITIES = 3
RELAYS = 3
VOTING_INTERVAL = 10  # seconds; 2 s vote + 2 s distribution delay (notes §5)
VOTE_DELAY = 2
DIST_DELAY = 2
CONSENSUS_TIMEOUT = 75.0  # first consensus measured at ~10 s; a missed relay costs one interval
BOOTSTRAP_TIMEOUT = 60.0  # measured ~2.5 s after the consensus
STOP_GRACE = 10.0
START_ATTEMPTS = 2  # a second try with fresh ports if a tor died at start (port clash)

# Lines every node of the network shares (notes §3).
_COMMON = """\
TestingTorNetwork 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingDirAuthVoteGuard *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
FetchDirInfoEarly 1
FetchDirInfoExtraEarly 1
ClientUseIPv6 0
GeoIPFile /nonexistent
GeoIPv6File /nonexistent
"""

# Onion-service hosts and clients: 4-hop onion circuits through "full vanguards" on loopback,
# so a path never needs to go A-B-A between the few fresh relays (notes §6.6).
_ONION_PATHS = """\
HSLayer2Nodes 127.0.0.1
HSLayer3Nodes 127.0.0.1
"""

_RELAY = """\
SocksPort 0
Address 127.0.0.1
ORPort 127.0.0.1:{or_port}
AddressDisableIPv6 1
ExitRelay 0
ExitPolicy reject *:*
AssumeReachable 1
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ContactInfo {name}@test.invalid
"""

_AUTHORITY = """\
DirPort 127.0.0.1:{dir_port}
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval {interval}
TestingV3AuthInitialVoteDelay {vote_delay}
TestingV3AuthInitialDistDelay {dist_delay}
V3AuthVotingInterval {interval}
V3AuthVoteDelay {vote_delay}
V3AuthDistDelay {dist_delay}
V3BandwidthsFile {bandwidth_file}
AuthDirVoteStableGuaranteeMinUptime 0
AuthDirVoteStableGuaranteeMTBF 0
"""


class TorNetworkError(Exception):
    """The private network did not come up; the message carries the tors' own logs."""


def _set_pdeathsig() -> None:
    # Runs in the child between fork and exec: die with the thread that started us.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, low: int = 10000, high: int = 32000,
               rng: random.Random | None = None) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that were free a moment ago, below 32768."""
    rng = rng or random.Random()  # port choice, not security
    ports: list[int] = []
    for _ in range(count * 50):
        candidate = rng.randrange(low, high)
        if candidate not in ports and _port_is_free(candidate):
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise TorNetworkError(f"could not find {count} free ports in {low}-{high}")


@dataclass
class Node:
    """One tor process of the network."""

    name: str
    datadir: Path
    control_port: int
    or_port: int | None = None
    dir_port: int | None = None
    socks_port: int | None = None
    authority: bool = False
    fingerprint: str = ""
    v3ident: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def torrc(self) -> Path:
        return self.datadir / "torrc"

    @property
    def notice_log(self) -> Path:
        return self.datadir / "notice.log"

    @property
    def cookie(self) -> Path:
        return self.datadir / "control_auth_cookie"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for path in (self.datadir / "stdout.log", self.notice_log):
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()
                if text:
                    parts.append(f"  --- {path.name} (last {lines} lines)\n    " +
                                 "\n    ".join(text[-lines:]))
        status = ("running" if self.alive() else
                  f"exited {self.proc.returncode}" if self.proc else "not started")
        return f"[{self.name}] pid {self.proc.pid if self.proc else '-'} {status}\n" + \
            ("\n".join(parts) or "  (no log)")

    def control(self, timeout: float = 10.0) -> ControlConnection:
        return ControlConnection.open(self.control_port, self.cookie, timeout=timeout)


class ControlConnection:
    """A minimal tor control-port client with socket timeouts (stem has none; notes §6.8)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")

    @classmethod
    def open(cls, where: int | Path, cookie: Path, *,
             timeout: float = 10.0) -> ControlConnection:
        """Connect to a ControlPort on 127.0.0.1 (``int``) or a ControlSocket (``Path``)."""
        if isinstance(where, Path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(str(where))
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(("127.0.0.1", where), timeout=timeout)
        conn = cls(sock)
        try:
            conn.request("AUTHENTICATE " + cookie.read_bytes().hex())
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> ControlConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, line: str) -> list[str]:
        """Send one command; return the reply lines (status code stripped); raise on 4xx/5xx."""
        self._sock.sendall(line.encode("ascii") + b"\r\n")
        replies: list[str] = []
        while True:
            raw = self._file.readline()
            if not raw:
                raise TorNetworkError(f"control connection closed during {line.split()[0]}")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("650"):
                continue  # asynchronous events are not used here
            code, sep, rest = text[:3], text[3:4], text[4:]
            if sep == "+":  # data reply: read until a lone "."
                body = [rest]
                while (data := self._file.readline().decode("utf-8", "replace")
                       .rstrip("\r\n")) != ".":
                    body.append(data)
                replies.append("\n".join(body))
                continue
            replies.append(rest)
            if sep == " ":
                if not code.startswith("2"):
                    raise TorNetworkError(f"{line.split()[0]} failed: {code} {rest}")
                return replies

    def getinfo(self, key: str) -> str:
        reply = self.request(f"GETINFO {key}")[0]
        return reply.split("=", 1)[1] if "=" in reply else reply


class TorNetwork:
    """The network: build keys and configs, start, wait until usable, stop."""

    def __init__(self, base: Path, *, tor: str, tor_gencert: str) -> None:
        self.base = base
        self.tor = tor
        self.tor_gencert = tor_gencert
        self.nodes: list[Node] = []
        self.extra: list[Node] = []
        self.client: Node | None = None
        self.timings: dict[str, float] = {}
        self._attempt = 0

    # --------------------------------------------------------------------------------- build
    @property
    def root(self) -> Path:
        return self.base / f"attempt{self._attempt}"

    def _build(self) -> None:
        root = self.root
        root.mkdir(parents=True, mode=0o700)
        count = AUTHORITIES * 3 + RELAYS * 2 + 2
        ports = iter(free_ports(count))
        self.nodes = []
        for i in range(AUTHORITIES):
            self.nodes.append(Node(f"auth{i}", root / f"auth{i}", next(ports), next(ports),
                                   next(ports), authority=True))
        for i in range(RELAYS):
            self.nodes.append(Node(f"relay{i}", root / f"relay{i}", next(ports), next(ports)))
        self.client = Node("client0", root / "client0", next(ports), socks_port=next(ports))
        for node in (*self.nodes, self.client):
            (node.datadir / "keys").mkdir(parents=True, mode=0o700)
            os.chmod(node.datadir, 0o700)
        self._generate_keys()
        bandwidth = root / "bandwidth.txt"
        bandwidth.write_text(f"{int(time.time())}\n" + "".join(
            f"node_id=${n.fingerprint} bw=1000\n" for n in self.nodes), encoding="ascii")
        for node in self.nodes:
            text = self._common(node) + _RELAY.format(or_port=node.or_port, name=node.name)
            if node.authority:
                text += _AUTHORITY.format(dir_port=node.dir_port, interval=VOTING_INTERVAL,
                                          vote_delay=VOTE_DELAY, dist_delay=DIST_DELAY,
                                          bandwidth_file=bandwidth)
            node.torrc.write_text(text, encoding="utf-8")
        client = self.client
        client.torrc.write_text(
            self._common(client) + _ONION_PATHS +
            f"SocksPort 127.0.0.1:{client.socks_port} ExtendedErrors\n"
            f"ClientOnionAuthDir {client.datadir / 'onion_auth'}\n", encoding="utf-8")
        (client.datadir / "onion_auth").mkdir(mode=0o700)

    def _generate_keys(self) -> None:
        """Authority certificates and relay identities; CPU-bound, so run them in parallel."""
        procs: list[tuple[Node, str, subprocess.Popen[bytes]]] = []
        for node in self.nodes:
            if node.authority:
                keys = node.datadir / "keys"
                procs.append((node, "gencert", subprocess.Popen(
                    [self.tor_gencert, "--create-identity-key", "--passphrase-fd", "0",
                     "-i", str(keys / "authority_identity_key"),
                     "-s", str(keys / "authority_signing_key"),
                     "-c", str(keys / "authority_certificate"),
                     "-m", "12", "-a", f"127.0.0.1:{node.dir_port}"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
            procs.append((node, "fingerprint", subprocess.Popen(
                [self.tor, "--ignore-missing-torrc", "-f", "/dev/null",
                 "--defaults-torrc", "/dev/null", "--DataDirectory", str(node.datadir),
                 "--ORPort", "1", "--list-fingerprint", "--quiet"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for node, kind, proc in procs:
            out, _ = proc.communicate(input=b"\n" if kind == "gencert" else None, timeout=120)
            text = out.decode("utf-8", "replace")
            if proc.returncode != 0:
                raise TorNetworkError(f"{kind} for {node.name} failed:\n{text}")
            if kind == "fingerprint":
                node.fingerprint = "".join(text.strip().splitlines()[-1].split()[1:])
        for node in self.nodes:
            if node.authority:
                cert = (node.datadir / "keys" / "authority_certificate").read_text("ascii")
                node.v3ident = next(line.split()[1] for line in cert.splitlines()
                                    if line.startswith("fingerprint "))

    def dir_authority_lines(self) -> list[str]:
        return [f"DirAuthority {n.name} orport={n.or_port} no-v2 v3ident={n.v3ident} "
                f"127.0.0.1:{n.dir_port} {n.fingerprint}" for n in self.nodes if n.authority]

    def _common(self, node: Node) -> str:
        return (_COMMON +
                f"DataDirectory {node.datadir}\n"
                f"Nickname {node.name}\n"
                "RunAsDaemon 0\n"
                "ShutdownWaitLength 0\n"
                f"ControlPort 127.0.0.1:{node.control_port}\n"
                "CookieAuthentication 1\n"
                f"Log notice file {node.notice_log}\n"
                "SafeLogging 0\n"
                "Sandbox 0\n" +
                "".join(line + "\n" for line in self.dir_authority_lines()))

    def join_config(self) -> str:
        """Torrc lines that make another tor a client / onion-service host of this network.

        Deliberately without SafeLogging, DataDirectory or ports: the joining tor keeps its own.
        """
        return _COMMON + _ONION_PATHS + "".join(line + "\n" for line in
                                                 self.dir_authority_lines())

    # --------------------------------------------------------------------------------- start
    def start(self) -> None:
        """Build and start the network; raise :class:`TorNetworkError` with logs on failure."""
        failures: list[str] = []
        for attempt in range(START_ATTEMPTS):
            self._attempt = attempt
            t0 = time.monotonic()
            try:
                self._build()
                self.timings["keys"] = time.monotonic() - t0
                self._start_once(t0)
                self.timings["ready"] = time.monotonic() - t0
                return
            except TorNetworkError as exc:
                failures.append(f"attempt {attempt + 1}: {exc}\n{self.logs()}")
                self.stop()
        raise TorNetworkError("private Tor network did not come up:\n\n" +
                              "\n\n".join(failures))

    def _launch(self, node: Node, extra_args: Sequence[str] = ()) -> None:
        stdout = (node.datadir / "stdout.log").open("wb")
        try:
            node.proc = subprocess.Popen(
                [self.tor, "-f", str(node.torrc), "--defaults-torrc", "/dev/null", *extra_args],
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                preexec_fn=_set_pdeathsig)  # fine: the fixture is single-threaded
        finally:
            stdout.close()

    def _start_once(self, t0: float) -> None:
        # The first vote ~5 s after launch, when every relay has uploaded its descriptor.
        offset = math.ceil(time.time() + 5 + VOTE_DELAY + DIST_DELAY) % VOTING_INTERVAL
        for node in self.nodes:
            args = ("--TestingV3AuthVotingStartOffset", str(offset)) if node.authority else ()
            self._launch(node, args)
        self._wait_consensus()
        self.timings["consensus"] = time.monotonic() - t0
        # Only now the client: started earlier it gets 404s and backs off (notes §6.4).
        assert self.client is not None
        self._launch(self.client)
        self.wait_bootstrapped(self.client)
        self.timings["client_bootstrapped"] = time.monotonic() - t0

    def _check_alive(self, nodes: Sequence[Node]) -> None:
        dead = [n.name for n in nodes if not n.alive()]
        if dead:
            raise TorNetworkError(f"tor exited early: {', '.join(dead)}")

    def _consensus_relays(self, node: Node) -> int:
        url = f"http://127.0.0.1:{node.dir_port}/tor/status-vote/current/consensus-microdesc"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # loopback only
                body = response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError):
            return 0
        return sum(1 for line in body.splitlines() if line.startswith("r "))

    def _wait_consensus(self) -> None:
        deadline = time.monotonic() + CONSENSUS_TIMEOUT
        authorities = [n for n in self.nodes if n.authority]
        want = len(self.nodes)
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:
            self._check_alive(self.nodes)
            seen = {a.name: self._consensus_relays(a) for a in authorities}
            if all(count == want for count in seen.values()):
                return
            time.sleep(0.5)
        raise TorNetworkError(f"no consensus listing all {want} relays within "
                              f"{CONSENSUS_TIMEOUT:.0f} s (relays listed: {seen})")

    def wait_bootstrapped(self, node: Node, timeout: float = BOOTSTRAP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        phase = "no control connection"
        while time.monotonic() < deadline:
            self._check_alive([node])
            try:
                with node.control(timeout=5) as conn:
                    while time.monotonic() < deadline:
                        phase = conn.getinfo("status/bootstrap-phase")
                        if "PROGRESS=100" in phase:
                            return
                        self._check_alive([node])
                        time.sleep(0.25)
            except (OSError, TorNetworkError) as exc:
                phase = f"control port: {exc}"
                time.sleep(0.25)
        raise TorNetworkError(f"{node.name} did not bootstrap within {timeout:.0f} s "
                              f"(last: {phase})")

    def start_client(self, name: str) -> Node:
        """Another client node (own SocksPort/ControlPort/auth dir) for tests needing a clean
        tor client state. Stopped with the network. ``name`` is a tor nickname."""
        if not re.fullmatch(r"[A-Za-z0-9]{1,19}", name):
            raise ValueError(f"{name!r}: tor nicknames are 1-19 letters and digits")
        control, socks = free_ports(2)
        node = Node(name, self.root / name, control, socks_port=socks)
        node.datadir.mkdir(mode=0o700)
        (node.datadir / "onion_auth").mkdir(mode=0o700)
        node.torrc.write_text(
            self._common(node) + _ONION_PATHS +
            f"SocksPort 127.0.0.1:{socks} ExtendedErrors\n"
            f"ClientOnionAuthDir {node.datadir / 'onion_auth'}\n", encoding="utf-8")
        self.extra.append(node)
        self._launch(node)
        try:
            self.wait_bootstrapped(node)
        except TorNetworkError as exc:
            raise TorNetworkError(f"{exc}\n{node.log_tail()}") from None
        return node

    # ---------------------------------------------------------------------------------- stop
    def all_nodes(self) -> Iterator[Node]:
        yield from self.nodes
        if self.client is not None:
            yield self.client
        yield from self.extra

    def stop(self) -> None:
        """SIGTERM every tor we started, by PID; SIGKILL whatever is left after 10 s."""
        t0 = time.monotonic()
        procs = [n.proc for n in self.all_nodes() if n.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        self.timings["stop"] = time.monotonic() - t0

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.all_nodes())
