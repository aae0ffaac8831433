"""Publishing the public site and the staff API as two v3 onion services, through tor (stem).

Either connects to a running tor (``--tor-control``: its ControlPort ``HOST:PORT`` or its
ControlSocket path, cookie authentication) or launches a tor of its own, the way OnionShare does:
a private DataDirectory ``DATA/tor`` (mode 0700), a control socket inside it, no SocksPort, and
``__OwningControllerProcess`` + ``TAKEOWNERSHIP`` so that tor exits when this server's control
connection closes, however the server ends.

Both services use the persistent keys of :class:`~dropbox_server.onion_store.OnionKeyStore`,
so the addresses survive restarts, and they vanish from the network as soon as the server goes
away. How they are published depends on the tor:

* Our own tor: as ``HiddenServiceDir`` services (``SETCONF`` over the control connection, the
  same lines also written to its torrc so a reload of that tor keeps them). Each folder
  (``DATA/tor/onion-public``, ``DATA/tor/onion-staff``) is rewritten from the store before
  publishing: the secret key, and one ``authorized_clients/NAME.auth`` per staff member. This
  is the only way to give tor every DoS defence of ``[tor]`` in dropbox.toml, including the
  introduction-point rate limits (``HiddenServiceEnableIntroDoSDefense``), which ``ADD_ONION``
  cannot set.
* A running tor (``--tor-control``): ephemeral services (``ADD_ONION``), since a system tor
  usually cannot use a folder of ours (it runs as its own user, often confined by AppArmor, and
  refuses a ``HiddenServiceDir`` it does not own), and ``SETCONF`` would replace the onion
  services of its own torrc. Proof of work and stream limits apply; the introduction-point
  rate limits must come from that tor's torrc (a notice says so; see torrc.example).

Both services get proof-of-work and stream limits per circuit; the staff service also v3 client
authorisation with one x25519 key per staff member: without a listed key a client cannot even
decrypt the descriptor. With no staff keys at all the staff service is not published.

stem's calls have no timeouts, so every one runs in a worker thread under our own deadline.
Nothing here logs circuits, timings or client addresses; tor keeps ``SafeLogging 1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import stem
import stem.connection
import stem.control

from dropbox_envelope.onion import OnionServiceKey, encode_client_auth_public

from .config import OnionDefenses
from .errors import OnionKeyError, TorError
from .onion_store import OnionKeyStore, ServiceName, write_hidden_service_dir

__all__ = ["OnionPublisher", "Published", "TorOptions", "add_onion_command",
           "discard_service_copy", "find_tor_binary", "hidden_service_options", "service_dir"]

log = logging.getLogger("dropbox_server.tor")
# stem logs control traffic at debug/trace levels; keep it quiet whatever the root level is.
logging.getLogger("stem").setLevel(logging.WARNING)

T = TypeVar("T")

INSTALL_HINT = ("install it with `sudo apt install tor` (Debian/Ubuntu), or point the server at "
                "a running tor with --tor-control HOST:PORT|SOCKET, or use --dev to try it "
                "locally without Tor")
ONION_PORT = 80
CALL_TIMEOUT = 30.0
INTRO_DOS_NOTICE = (
    "tor: note: introduction-point rate limits ([tor] intro_dos_defense in dropbox.toml) "
    "cannot be given to a running tor through its control port (ADD_ONION); these services "
    "get proof-of-work and stream limits only. For the rate limits too, publish both "
    "services from that tor's own torrc (HiddenServiceEnableIntroDoSDefense; see "
    "torrc.example) and run with --no-tor, or let dropbox-server start its own tor.")
LAST_STAFF_KEY_REMOVED = (
    "every staff key was removed: the server stops, because its tor cannot take the staff "
    "onion service down while running (that crashes tor 0.4.9); start it again and only the "
    "public onion service is published")
#: After the last HSDir upload was answered, wait this long for the second descriptor's uploads.
UPLOAD_QUIET = 1.0
STOP_GRACE = 10.0
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


@dataclass(frozen=True)
class TorOptions:
    """How ``dropbox-server run --tor`` reaches tor."""

    control: str | None = None
    """A running tor's ControlPort (``HOST:PORT`` or ``PORT``) or ControlSocket path; None
    launches a tor of our own."""
    extra_config: Path | None = None
    """Torrc lines appended to the launched tor's configuration (private test networks)."""
    tor_binary: str | None = None
    bootstrap_timeout: float = 300.0
    publish_timeout: float = 300.0


@dataclass(frozen=True)
class Published:
    """What is on the network: addresses (``….onion``) and the staff names with a key."""

    public: str
    staff: str | None
    staff_clients: tuple[str, ...] = field(default=())


def find_tor_binary(explicit: str | None = None) -> str:
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise TorError(f"tor binary {explicit} is not an executable file")
        return explicit
    # Debian installs tor as /usr/sbin/tor, outside a normal user's PATH.
    found = shutil.which("tor") or shutil.which("tor", path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        raise TorError(f"the `tor` program was not found; {INSTALL_HINT}")
    return found


def _torrc_value(value: str) -> str:
    # A torrc value runs to the end of the line; one with leading/trailing spaces, quotes,
    # '#' or backslashes needs a quoted string (C-style escapes).
    if re.fullmatch(r"[A-Za-z0-9_./:@+=,-]+( [A-Za-z0-9_./:@+=,-]+)*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def add_onion_command(which: ServiceName, key: OnionServiceKey, port: int,
                      clients: dict[str, bytes], defenses: OnionDefenses) -> str:
    """The raw ``ADD_ONION`` line (stem's helper has no proof-of-work arguments).

    Contains the service's secret key: never log it. ``ADD_ONION`` has no introduction-point
    rate limits: ``defenses.intro_dos_*`` cannot apply here.
    """
    parts = ["ADD_ONION", key.add_onion_key()]
    flags = ["MaxStreamsCloseCircuit"]
    if clients:
        flags.append("V3Auth")
    parts += [f"Flags={','.join(flags)}", f"MaxStreams={defenses.max_streams(which)}"]
    if defenses.pow_defenses:
        parts += ["PoWDefensesEnabled=1", f"PoWQueueRate={defenses.pow_queue_rate}",
                  f"PoWQueueBurst={defenses.pow_queue_burst}"]
    parts.append(f"Port={ONION_PORT},127.0.0.1:{port}")
    parts += [f"ClientAuthV3={encode_client_auth_public(public)}"
              for public in clients.values()]
    return " ".join(parts)


def service_dir(data_dir: Path, which: ServiceName) -> Path:
    """Our own tor's ``HiddenServiceDir`` for ``which``: a copy of the stored key (and of the
    staff members' public keys), rewritten from ``DATA/onion/`` at each publication."""
    return data_dir / "tor" / f"onion-{which}"


def discard_service_copy(data_dir: Path, which: ServiceName) -> None:
    """Remove the copy of a replaced service key from our tor's folder (``onion rotate``)."""
    with contextlib.suppress(FileNotFoundError):
        (service_dir(data_dir, which) / "hs_ed25519_secret_key").unlink()


def hidden_service_options(which: ServiceName, folder: Path, port: int,
                           defenses: OnionDefenses) -> list[tuple[str, str]]:
    """One service's ``HiddenService*`` options, in order (``HiddenServiceDir`` first), for
    ``SETCONF`` and the torrc. Client authorisation comes from ``folder/authorized_clients``."""
    options = [("HiddenServiceDir", str(folder)),
               ("HiddenServiceVersion", "3"),
               ("HiddenServicePort", f"{ONION_PORT} 127.0.0.1:{port}"),
               ("HiddenServiceMaxStreams", str(defenses.max_streams(which))),
               ("HiddenServiceMaxStreamsCloseCircuit", "1"),
               ("HiddenServicePoWDefensesEnabled", "1" if defenses.pow_defenses else "0")]
    if defenses.pow_defenses:
        options += [("HiddenServicePoWQueueRate", str(defenses.pow_queue_rate)),
                    ("HiddenServicePoWQueueBurst", str(defenses.pow_queue_burst))]
    options.append(("HiddenServiceEnableIntroDoSDefense",
                    "1" if defenses.intro_dos_defense else "0"))
    if defenses.intro_dos_defense:
        options += [("HiddenServiceEnableIntroDoSRatePerSec",
                     str(defenses.intro_dos_rate_per_sec)),
                    ("HiddenServiceEnableIntroDoSBurstPerSec",
                     str(defenses.intro_dos_burst_per_sec))]
    return options


class _LaunchedTor:
    """A tor process of our own, with its private DataDirectory."""

    def __init__(self, data_dir: Path, options: TorOptions) -> None:
        self.dir = data_dir / "tor"
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.control_socket = self.dir / "control.sock"
        self.control_port_file = self.dir / "control.port"
        self.torrc = self.dir / "torrc"
        self._base_config: list[str] = []

    @property
    def notice_log(self) -> Path:
        return self.dir / "notice.log"

    def service_dir(self, which: ServiceName) -> Path:
        return service_dir(self.dir.parent, which)

    def write_torrc(self, services: list[tuple[str, str]]) -> None:
        """The torrc: our fixed lines, then the onion services' lines (so that a reload of this
        tor, e.g. a SIGHUP sent to it, keeps what ``SETCONF`` set)."""
        lines = self._base_config + [f"{key} {_torrc_value(value)}" for key, value in services]
        tmp = self.torrc.with_name("torrc.tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.torrc)

    def start(self) -> None:
        binary = find_tor_binary(self.options.tor_binary)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.is_symlink() or not self.dir.is_dir():
            raise TorError(f"{self.dir} is not a folder")
        os.chmod(self.dir, 0o700)  # tor refuses a DataDirectory others can read
        for stale in (self.control_socket, self.control_port_file):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        lines = [
            "# Written by dropbox-server at each start; edits here are overwritten.",
            f"DataDirectory {_torrc_value(str(self.dir))}",
            "SocksPort 0",
            "RunAsDaemon 0",
            "ClientOnly 1",
            "CookieAuthentication 1",
            "SafeLogging 1",
            f"Log notice file {_torrc_value(str(self.notice_log))}",
        ]
        if len(str(self.control_socket)) <= _SOCKET_PATH_MAX:
            lines += [f"ControlSocket {_torrc_value(str(self.control_socket))}",
                      "ControlSocketsGroupWritable 0"]
        else:  # too long for a unix socket: a kernel-chosen loopback port (cookie still needed)
            lines += ["ControlPort 127.0.0.1:auto",
                      f"ControlPortWriteToFile {_torrc_value(str(self.control_port_file))}"]
        if self.options.extra_config is not None:
            try:
                extra = self.options.extra_config.read_text(encoding="utf-8")
            except OSError as exc:
                raise TorError(f"--tor-extra-config {self.options.extra_config}: "
                               f"{exc.strerror}") from None
            lines += ["# --tor-extra-config " + str(self.options.extra_config), extra]
        self._base_config = lines
        self.write_torrc([])
        torrc = self.torrc
        with (self.dir / "stdout.log").open("wb") as stdout:
            try:
                self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own torrc
                    [binary, "-f", str(torrc), "--defaults-torrc", os.devnull,
                     # Tor exits if this PID dies before we take ownership over the control
                     # connection (after that, when the connection closes).
                     "__OwningControllerProcess", str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                    # Its own session: Ctrl-C in the operator's terminal reaches only us, and we
                    # stop tor after withdrawing the services.
                    start_new_session=True)
            except OSError as exc:
                raise TorError(f"cannot start {binary}: {exc.strerror}") from None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def failure(self, what: str) -> TorError:
        code = self.exited()
        status = f"tor exited with status {code}" if code is not None else "tor is running"
        tail = _log_tail(self.dir / "stdout.log") or _log_tail(self.notice_log)
        return TorError(f"{what} ({status}); end of {self.dir}/stdout.log:\n{tail}"
                        if tail else f"{what} ({status})")

    def connect(self) -> stem.control.Controller:
        """One connection attempt; raises stem.SocketError until tor listens."""
        if self.control_socket.exists():
            return stem.control.Controller.from_socket_file(str(self.control_socket))
        if self.control_port_file.exists():
            text = self.control_port_file.read_text(encoding="ascii").strip()
            host, _, port = text.removeprefix("PORT=").rpartition(":")
            if port.isdigit():
                return stem.control.Controller.from_port(host, int(port))
        raise stem.SocketError("tor's control socket is not there yet")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_GRACE)


@dataclass
class _Uploads:
    """HS_DESC upload bookkeeping for one service."""

    started: int = 0
    uploaded: int = 0
    failed: int = 0
    last_event: float = 0.0

    def done(self, now: float) -> bool:
        # Every upload answered, at least one accepted, and no new upload for a moment: tor
        # uploads two descriptors (this and the next time period), not necessarily at once.
        return (self.uploaded > 0 and self.uploaded + self.failed >= self.started and
                now - self.last_event >= UPLOAD_QUIET)


class OnionPublisher:
    """Owns the control connection (and the launched tor, if any) while the services live.

    ``await open()`` early (tor bootstraps while the web server starts), then
    ``await publish(public_port, staff_port)``; ``lost`` is set if tor goes away; ``close()``.
    """

    def __init__(self, data_dir: Path, options: TorOptions, *,
                 defenses: OnionDefenses | None = None,
                 say: Callable[[str], None] = print) -> None:
        self.data_dir = data_dir
        self.options = options
        self.defenses = defenses or OnionDefenses()
        self.store = OnionKeyStore(data_dir)
        self.say = say
        self.lost = asyncio.Event()
        self._controller: stem.control.Controller | None = None
        self._launched: _LaunchedTor | None = None
        self._uploads: dict[str, _Uploads] = {}
        self._services: dict[ServiceName, str] = {}
        self._ports: dict[ServiceName, int] = {}
        self._keys: dict[ServiceName, OnionServiceKey] = {}
        self._clients: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    # ------------------------------------------------------------------------- plumbing
    async def _call(self, fn: Callable[..., T], *args: Any,
                    timeout: float = CALL_TIMEOUT, what: str = "tor") -> T:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout)
        except TimeoutError:
            raise TorError(f"{what}: no answer from tor's control port within "
                           f"{timeout:.0f} s") from None
        except stem.ControllerError as exc:
            raise TorError(f"{what}: {exc}") from None

    @property
    def controller(self) -> stem.control.Controller:
        if self._controller is None:
            raise TorError("not connected to tor")
        return self._controller

    # ------------------------------------------------------------------------- connect
    async def open(self) -> None:
        """Connect to (or launch) tor and wait until it has bootstrapped."""
        self._loop = asyncio.get_running_loop()
        if self.options.control:
            self._controller = await self._connect_external(self.options.control)
        else:
            self._launched = _LaunchedTor(self.data_dir, self.options)
            self._launched.start()
            self.say("tor: started its own tor (data in "
                     f"{self._launched.dir}); connecting to the Tor network...")
            self._controller = await self._connect_launched(self._launched)
        self.controller.add_status_listener(self._on_status)
        await self._wait_bootstrapped()

    async def _authenticate(self, controller: stem.control.Controller, where: str) -> None:
        try:
            await self._call(controller.authenticate, what=f"authenticating to {where}")
        except (stem.connection.AuthenticationFailure, TorError) as exc:
            controller.close()
            raise TorError(f"cannot authenticate to tor's control port {where}: {exc}; "
                           "cookie authentication needs read access to tor's cookie file "
                           "(e.g. membership of the debian-tor group)") from None

    async def _connect_external(self, spec: str) -> stem.control.Controller:
        def connect() -> stem.control.Controller:
            if "/" in spec:
                return stem.control.Controller.from_socket_file(spec)
            host, _, port = spec.rpartition(":")
            if not port.isdigit():
                raise TorError(f"--tor-control {spec!r}: expected HOST:PORT, PORT or a "
                               "socket path")
            return stem.control.Controller.from_port(host or "127.0.0.1", int(port))
        try:
            controller = await asyncio.wait_for(asyncio.to_thread(connect), 15)
        except TimeoutError:
            raise TorError(f"no answer from tor's control port at {spec} within 15 s") from None
        except stem.SocketError as exc:
            raise TorError(f"cannot reach tor's control port at {spec} ({exc}); is tor "
                           "running with ControlPort/ControlSocket and CookieAuthentication "
                           "1?") from None
        await self._authenticate(controller, spec)
        return controller

    async def _connect_launched(self, launched: _LaunchedTor) -> stem.control.Controller:
        deadline = time.monotonic() + 60
        while True:
            if launched.exited() is not None:
                raise launched.failure("tor stopped right after start")
            try:
                controller = await asyncio.wait_for(asyncio.to_thread(launched.connect), 15)
                break
            except (stem.SocketError, TimeoutError):
                if time.monotonic() > deadline:
                    raise launched.failure("tor opened no control socket within 60 s") \
                        from None
                await asyncio.sleep(0.2)
        await self._authenticate(controller, str(launched.control_socket))
        return controller

    def _on_status(self, _controller: object, state: object, _timestamp: float) -> None:
        # Called from stem's thread when the control connection closes (tor exited).
        if state == stem.control.State.CLOSED and not self._closing and self._loop:
            self._loop.call_soon_threadsafe(self.lost.set)

    async def _wait_bootstrapped(self) -> None:
        timeout = self.options.bootstrap_timeout
        deadline = time.monotonic() + timeout
        last_tag = ""
        while True:
            if self._launched and self._launched.exited() is not None:
                raise self._launched.failure("tor exited while connecting to the network")
            phase = await self._call(self.controller.get_info, "status/bootstrap-phase",
                                     what="reading tor's bootstrap status")
            progress = re.search(r"PROGRESS=(\d+)", phase)
            tag = re.search(r"TAG=(\S+)", phase)
            if progress and int(progress.group(1)) >= 100:
                return
            if tag and tag.group(1) != last_tag and progress:
                last_tag = tag.group(1)
                self.say(f"tor: bootstrapped {progress.group(1)}% ({last_tag})")
            if time.monotonic() > deadline:
                message = (f"tor did not connect to the Tor network within {timeout:.0f} s "
                           f"(last status: {phase}); check the network, or whether Tor is "
                           "blocked here (bridges)")
                raise self._launched.failure(message) if self._launched else TorError(message)
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------------- publish
    def _on_hs_desc(self, event: Any) -> None:
        # stem's event thread -> the loop's thread.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._record_upload, str(event.action),
                                            str(event.address))

    def _record_upload(self, action: str, address: str) -> None:
        uploads = self._uploads.get(address)
        if uploads is None:
            return
        if action == "UPLOAD":
            uploads.started += 1
            uploads.last_event = time.monotonic()
        elif action == "UPLOADED":
            uploads.uploaded += 1
        elif action == "FAILED":
            uploads.failed += 1

    async def _add_onion(self, which: ServiceName, clients: dict[str, bytes]) -> None:
        key = self._keys[which]
        command = add_onion_command(which, key, self._ports[which], clients, self.defenses)
        reply = await self._call(self.controller.msg, command, what=f"publishing the {which} "
                                 "onion service")
        if not reply.is_ok():
            text = str(reply)
            hint = ""
            if "collision" in text.lower():
                hint = " (is another dropbox-server already publishing it through this tor?)"
            elif "PoW" in text or "Unrecognized" in text:
                hint = " (tor 0.4.8 or newer is needed for proof-of-work defences)"
            raise TorError(f"tor refused the {which} onion service: {text}{hint}")
        service_id = next((line.split("=", 1)[1] for line in str(reply).splitlines()
                           if line.startswith("ServiceID=")), "")
        if service_id != key.service_id:
            raise TorError(f"tor published the {which} service under an unexpected address")
        self._services[which] = service_id

    async def _configure_services(self, launched: _LaunchedTor,
                                  clients: dict[str, bytes]) -> None:
        """Publish through our own tor's configuration: rewrite the service folders from the
        store, ``SETCONF`` every ``HiddenService*`` line at once, keep them in its torrc."""
        wanted: list[tuple[ServiceName, dict[str, bytes]]] = [("public", {})]
        if clients:  # never without clients: an empty authorized_clients/ means "anyone"
            wanted.append(("staff", clients))
        options: list[tuple[str, str]] = []
        try:
            for which, authorised in wanted:
                folder = launched.service_dir(which)
                write_hidden_service_dir(folder, self._keys[which], authorised)
                options += hidden_service_options(which, folder, self._ports[which],
                                                  self.defenses)
        except (OSError, OnionKeyError) as exc:
            raise TorError(f"cannot prepare tor's onion service folders: {exc}") from None
        try:
            await self._call(self.controller.set_options, options,
                             what="configuring the onion services")
        except TorError as exc:
            tail = _log_tail(launched.notice_log, 6)
            raise TorError(f"{exc}; end of {launched.notice_log}:\n{tail}" if tail
                           else str(exc)) from None
        launched.write_torrc(options)
        self._services = {}
        for which, _ in wanted:
            # Tor writes `hostname` when it loads the key: proof it uses ours.
            hostname = launched.service_dir(which) / "hostname"
            try:
                written = hostname.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                written = ""
            if written != self._keys[which].address:
                raise TorError(f"tor did not publish the {which} service from our key "
                               f"({hostname}: {written or 'missing'})")
            self._services[which] = self._keys[which].service_id

    async def publish(self, public_port: int, staff_port: int) -> Published:
        """Publish both services and wait until their descriptors are on the HSDirs."""
        try:
            self._keys = {"public": self.store.load_or_create("public"),
                          "staff": self.store.load_or_create("staff")}
            clients = self.store.clients()
        except OnionKeyError as exc:
            raise TorError(str(exc)) from None
        self._ports = {"public": public_port, "staff": staff_port}
        if self._launched is None and self.defenses.intro_dos_defense:
            self.say(INTRO_DOS_NOTICE)
        await self._publish(clients, ("public", "staff") if clients else ("public",))
        return self._published()

    def _published(self) -> Published:
        staff = "staff" in self._services
        return Published(public=self._keys["public"].address,
                         staff=self._keys["staff"].address if staff else None,
                         staff_clients=tuple(self._clients) if staff else ())

    async def _publish(self, clients: dict[str, bytes],
                       changed: tuple[ServiceName, ...]) -> None:
        """Bring the services to ``clients`` and wait for the uploads of the ``changed`` ones."""
        self._uploads = {self._keys[which].service_id: _Uploads() for which in changed}
        await self._call(self.controller.add_event_listener, self._on_hs_desc,
                         stem.control.EventType.HS_DESC, what="subscribing to HS_DESC events")
        try:
            if self._launched is not None:
                await self._configure_services(self._launched, clients)
            else:
                for which in changed:
                    await self._add_onion(which, clients if which == "staff" else {})
            self._clients = dict(clients)
            await self._wait_uploaded()
        finally:
            with contextlib.suppress(TorError):
                await self._call(self.controller.remove_event_listener, self._on_hs_desc)

    async def _wait_uploaded(self) -> None:
        timeout = self.options.publish_timeout
        deadline = time.monotonic() + timeout
        while not all(u.done(time.monotonic()) for u in self._uploads.values()):
            if self.lost.is_set():
                raise self._lost_error("tor went away while publishing the onion services")
            if time.monotonic() > deadline:
                summary = ", ".join(f"{u.uploaded} of {u.started} uploads accepted, "
                                    f"{u.failed} failed" for u in self._uploads.values())
                raise TorError(f"onion services not published within {timeout:.0f} s "
                               f"({summary}); is tor connected to the network?")
            await asyncio.sleep(0.1)

    async def reload_staff(self) -> Published | None:
        """Re-publish the staff service with the current ``staff-clients/`` (``SIGHUP``).

        The service keys stay those published at start (``onion rotate`` needs a restart).
        """
        if "public" not in self._services:
            return None
        try:
            clients = self.store.clients()
        except OnionKeyError as exc:
            raise TorError(str(exc)) from None
        if clients == self._clients and ("staff" in self._services) == bool(clients):
            return self._published()  # nothing changed: nothing to upload
        if self._launched is not None and not clients and "staff" in self._services:
            # Our tor would have to drop one of its services while running: with tor 0.4.9
            # (Debian's), SETCONF without the staff service made tor crash at the next
            # introduction (SIGSEGV in hs_circ_handle_introduce2). Publishing the staff service
            # with no client keys would let anyone in. Stopping is the safe choice left.
            raise TorError(LAST_STAFF_KEY_REMOVED)
        if self._launched is None and "staff" in self._services:
            await self._call(self.controller.msg, f"DEL_ONION {self._services.pop('staff')}",
                             what="withdrawing the staff onion service")
        # A changed client list makes tor build and upload new staff descriptors.
        await self._publish(clients, ("staff",) if clients else ())
        return self._published()

    # ------------------------------------------------------------------------- close
    def _lost_error(self, what: str) -> TorError:
        return self._launched.failure(what) if self._launched else TorError(what)

    def lost_error(self) -> TorError:
        return self._lost_error("lost the connection to tor; the onion services are offline")

    async def close(self) -> None:
        """Withdraw the services (closing the control connection does) and stop our tor."""
        self._closing = True
        if self._controller is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self._controller.close), 10)
            self._controller = None
        if self._launched is not None:
            await asyncio.to_thread(self._launched.stop)
