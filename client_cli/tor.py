"""Reaching the staff API's onion service through tor.

* Connections go through tor's SOCKS5 port with the host name resolved by tor (``rdns``): a
  ``.onion`` name never touches the local resolver. Default for ``.onion`` servers: the system
  tor (127.0.0.1:9050), else Tor Browser's tor (127.0.0.1:9150); ``--tor-socks HOST:PORT``
  chooses. Each run uses a fresh random SOCKS username, so tor (``IsolateSOCKSAuth``, on by
  default) builds circuits for it that no other application shares.
* The staff onion service needs this staff member's client-authorisation key (what
  ``dropbox-server staff add`` printed, kept in a file: ``--onion-auth FILE``). With
  ``--tor-control`` it is registered with tor over the control port (``ONION_CLIENT_AUTH_ADD``,
  in tor's memory only, never written by tor); without, the instructions for tor's
  ``ClientOnionAuthDir`` are printed instead.
* Tor's SOCKS failures become messages saying what to do: tor not running, address not found
  (not published yet), client authorisation missing or wrong.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp_socks
from aiohttp_socks import ProxyConnector, ProxyType
from yarl import URL

from dropbox_envelope.errors import OnionKeyError
from dropbox_envelope.onion import (
    ClientAuthKey,
    onion_address,
    parse_client_auth_secret,
    parse_onion_address,
)

from .errors import one_line
from .staffapi import ConnectorFactory, ServerUnreachable, StaffApiError

__all__ = ["DEFAULT_SOCKS", "TorUnavailable", "add_arguments", "connector_from_args",
           "socks_failure_message"]

T = TypeVar("T")

#: Tried in order for .onion servers when --tor-socks is not given: system tor, Tor Browser.
DEFAULT_SOCKS = (("127.0.0.1", 9050), ("127.0.0.1", 9150))
CONTROL_TIMEOUT = 20.0

# Tor's extended SOCKS5 replies (tor's socks-extensions.txt; sent when the SocksPort has the
# ExtendedErrors flag, as Tor Browser's does).
_SOCKS_MESSAGES = {
    0xF0: "the onion address was not found: the service is not published (yet). Is the server "
          "running? After it starts, publication takes a minute or so",
    0xF1: "tor received an invalid descriptor for this onion service",
    0xF2: "introduction to the onion service failed: it may be down or overloaded",
    0xF3: "the rendezvous with the onion service failed; try again",
    0xF4: "this onion service needs client authorisation and your tor has no key for it: give "
          "--onion-auth FILE with --tor-control, or put the key into tor's ClientOnionAuthDir",
    0xF5: "the onion service refused your client-authorisation key (revoked, or a key for "
          "another server); ask the operator for a new one",
    0xF6: "the onion address is not valid",
    0xF7: "introduction to the onion service timed out: it may be down or overloaded",
}


class TorUnavailable(ServerUnreachable):
    """Tor could not be used, or could not reach the onion service; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tor-socks``, ``--tor-control`` and ``--onion-auth`` for the online commands."""
    group = parser.add_argument_group("Tor (for .onion servers)")
    group.add_argument("--tor-socks", metavar="HOST:PORT",
                       help="tor's SOCKS port (default: 127.0.0.1:9050, else 127.0.0.1:9150 "
                            "for Tor Browser)")
    group.add_argument("--tor-control", metavar="HOST:PORT|SOCKET",
                       help="tor's control port, to register the --onion-auth key with tor")
    group.add_argument("--onion-auth", metavar="FILE", type=Path,
                       help="file holding your client-authorisation key for the staff onion "
                            "(the line `dropbox-server staff add` printed)")


def socks_failure_message(exc: BaseException, proxy: str) -> str:
    """What a SOCKS-level failure means for the user."""
    if isinstance(exc, aiohttp_socks.ProxyConnectionError):
        return (f"tor is not running: nothing answers on its SOCKS port {proxy}. Start tor "
                "(`sudo systemctl start tor`) or Tor Browser, or give --tor-socks HOST:PORT")
    if isinstance(exc, aiohttp_socks.ProxyTimeoutError):
        return f"tor's SOCKS port {proxy} did not answer in time"
    code = getattr(exc, "error_code", None)
    if code is None:  # python-socks reports tor's extended codes only in the text
        text = str(exc)
        marker = text.rfind("0X")
        if marker >= 0:
            try:
                code = int(text[marker + 2:marker + 4], 16)
            except ValueError:
                code = None
    if isinstance(code, int) and code in _SOCKS_MESSAGES:
        return _SOCKS_MESSAGES[code]
    return (f"tor could not connect to the server ({one_line(str(exc))}). If it is an onion "
            "address: check it, check that the server runs, and that your client-"
            "authorisation key is registered (add `ExtendedErrors` to tor's SocksPort for a "
            "precise reason)")


class _TorConnector(ProxyConnector):
    """A SOCKS5 connector whose proxy failures are :class:`TorUnavailable` messages."""

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._wrap_create_connection(*args, **kwargs)
        except (aiohttp_socks.ProxyError, aiohttp_socks.ProxyConnectionError,
                aiohttp_socks.ProxyTimeoutError) as exc:
            proxy = f"{self._proxy_host}:{self._proxy_port}"
            raise TorUnavailable(socks_failure_message(exc, proxy)) from None


def _parse_host_port(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise StaffApiError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9050")
    return host.strip("[]") or "127.0.0.1", int(port)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def socks_connector(host: str, port: int) -> ConnectorFactory:
    """Connectors through tor's SOCKS port, isolated from other applications' circuits."""
    username = "dropbox-client-" + secrets.token_hex(8)

    def make() -> aiohttp.BaseConnector:
        return _TorConnector(host=host, port=port, proxy_type=ProxyType.SOCKS5, rdns=True,
                             username=username, password=secrets.token_hex(8))
    return make


def _with_timeout(fn: Callable[[], T], what: str) -> T:
    """Run a blocking stem call under a deadline (stem's calls have none)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(CONTROL_TIMEOUT)
    if worker.is_alive():
        raise TorUnavailable(f"{what}: tor's control port did not answer within "
                             f"{CONTROL_TIMEOUT:.0f} s")
    if failure:
        raise failure[0]
    return result[0]


def register_client_auth(control: str, service_id: str, key: ClientAuthKey) -> None:
    """``ONION_CLIENT_AUTH_ADD`` over tor's control port (kept in tor's memory only)."""
    import stem
    import stem.connection
    import stem.control

    def run() -> str:
        if "/" in control:
            controller = stem.control.Controller.from_socket_file(control)
        else:
            host, port = _parse_host_port(control if ":" in control else f":{control}",
                                          "--tor-control")
            controller = stem.control.Controller.from_port(host, port)
        try:
            controller.authenticate()
            reply = controller.msg(f"ONION_CLIENT_AUTH_ADD {service_id} {key.control_key()}")
            # 250 OK, 251 "existed and replaced", 252 "registered and decrypted desc".
            status = reply.content()[-1][0]
            return str(reply) if str(status).startswith("25") else "error: " + str(reply)
        finally:
            controller.close()

    try:
        answer = _with_timeout(run, "registering the client-authorisation key")
    except stem.connection.AuthenticationFailure as exc:
        raise TorUnavailable(f"cannot authenticate to tor's control port {control} ({exc}); "
                             "it needs cookie authentication and read access to tor's cookie "
                             "file (e.g. membership of the debian-tor group)") from None
    except stem.SocketError as exc:
        raise TorUnavailable(f"cannot reach tor's control port {control} ({exc}); is tor "
                             "running with ControlPort (or ControlSocket)?") from None
    except stem.ControllerError as exc:
        raise TorUnavailable(f"tor's control port {control}: {exc}") from None
    if answer.startswith("error: "):
        raise TorUnavailable("tor refused the client-authorisation key: " +
                             one_line(answer.removeprefix("error: ")))


def _read_onion_auth(path: Path, service_id: str) -> ClientAuthKey:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StaffApiError(f"--onion-auth {path}: cannot read it ({exc})") from None
    try:
        key_service, key = parse_client_auth_secret(text)
    except OnionKeyError as exc:
        raise StaffApiError(f"--onion-auth {path}: {exc}") from None
    if key_service is not None and key_service != service_id:
        raise StaffApiError(f"--onion-auth {path} holds a key for {key_service}.onion, not for "
                            "the --server address")
    return key


def connector_from_args(args: argparse.Namespace,
                        say: Callable[[str], None] | None = None) -> ConnectorFactory | None:
    """The connector factory for ``args.server`` (None: a direct connection), after
    registering the client-authorisation key with tor if asked to."""
    say = say or (lambda text: print(text, file=sys.stderr))
    host = URL(args.server).host or ""
    is_onion = host.endswith(".onion")
    if args.tor_control and not args.onion_auth:
        raise StaffApiError("--tor-control is used to register the --onion-auth key; give both")
    if args.onion_auth and not is_onion:
        raise StaffApiError("--onion-auth is for a .onion --server address")
    if is_onion:
        try:
            service_id = onion_address(parse_onion_address(host)).removesuffix(".onion")
        except OnionKeyError as exc:
            raise StaffApiError(f"--server {args.server!r}: {exc}") from None
        if args.onion_auth:
            key = _read_onion_auth(args.onion_auth, service_id)  # checked even if not sent
            if args.tor_control:
                register_client_auth(args.tor_control, service_id, key)
            else:
                say(f"note: without --tor-control your tor must already know the key in "
                    f"{args.onion_auth}: put the line `dropbox-server staff add` printed for "
                    "ClientOnionAuthDir (it starts with the address) into a file "
                    "NAME.auth_private in tor's ClientOnionAuthDir (torrc: `ClientOnionAuthDir "
                    "/var/lib/tor/onion_auth`), then reload tor")
    if args.tor_socks:
        return socks_connector(*_parse_host_port(args.tor_socks, "--tor-socks"))
    if not is_onion:
        return None
    for candidate in DEFAULT_SOCKS:
        if _listening(*candidate):
            return socks_connector(*candidate)
    raise TorUnavailable("tor is not running: no SOCKS port on 127.0.0.1:9050 (system tor) or "
                         "127.0.0.1:9150 (Tor Browser). Start one, or give --tor-socks "
                         "HOST:PORT")
