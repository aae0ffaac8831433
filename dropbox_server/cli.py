"""`dropbox-server`: operator commands (init, run, staff add/remove/list, onion rotate, audit)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from dropbox_envelope.errors import InvalidKey
from dropbox_envelope.keys import PublicKey, StaffPublicKey

from . import audit, backup
from .app import create_app
from .appkeys import STAFF_APP
from .config import CONFIG_NAME, load_config, render_config, slug
from .connections import SiteRunner
from .errors import ConfigError, OnionKeyError, StorageError, TorError
from .onion_store import OnionKeyStore, ServiceName
from .tor import OnionPublisher, Published, TorOptions, discard_service_copy

__all__ = ["main"]

T = TypeVar("T")


def _parse_assignment(text: str, option: str) -> tuple[str, list[str]]:
    name, sep, files = text.partition("=")
    if not sep or not name.strip() or not files.strip():
        raise ConfigError(f"{option} expects NAME=PUBFILE[,PUBFILE...], got {text!r}")
    return name.strip(), [f.strip() for f in files.split(",") if f.strip()]


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    config_path = data_dir / CONFIG_NAME
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; edit it instead of running init again")
    if not args.recipient:
        raise ConfigError("give at least one --recipient NAME=PUBFILE")
    keys_dir = data_dir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    recipients: list[tuple[str, str, list[str]]] = []
    for entry in args.recipient:
        name, files = _parse_assignment(entry, "--recipient")
        copied = []
        for i, file in enumerate(files):
            try:
                key = PublicKey.decode(Path(file).read_text(encoding="utf-8"))
            except (OSError, InvalidKey) as exc:
                raise ConfigError(f"--recipient {name}: {file}: {exc}") from None
            target = keys_dir / f"{slug(name)}-{i + 1}.pub"
            target.write_text(key.encode() + "\n", encoding="utf-8")
            copied.append(str(target.relative_to(data_dir)))
            print(f"recipient {name!r}: key {i + 1} fingerprint {key.fingerprint}")
        recipients.append((name, "", copied))
    staff: list[tuple[str, str]] = []
    for entry in args.staff or []:
        name, files = _parse_assignment(entry, "--staff")
        if len(files) != 1:
            raise ConfigError(f"--staff {name}: exactly one public key file per staff member")
        try:
            skey = StaffPublicKey.decode(Path(files[0]).read_text(encoding="utf-8"))
        except (OSError, InvalidKey) as exc:
            raise ConfigError(f"--staff {name}: {files[0]}: {exc}") from None
        target = keys_dir / f"staff-{slug(name)}.pub"
        target.write_text(skey.encode() + "\n", encoding="utf-8")
        staff.append((name, str(target.relative_to(data_dir))))
        print(f"staff {name!r}: fingerprint {skey.fingerprint}")
    config_path.write_text(render_config(recipients, staff), encoding="utf-8")
    load_config(data_dir)  # prove the file we wrote is valid
    print(f"wrote {config_path}; start with: dropbox-server run --data-dir {data_dir}")
    return 0


async def serve(data_dir: Path, *, dev: bool, port: int | None, staff_port: int | None,
                ready: asyncio.Event | None = None, tor: TorOptions | None = None) -> None:
    """Serve both sites on 127.0.0.1; with ``tor``, also publish them as onion services."""
    # Handle SIGTERM before anything is printed: a supervisor may stop us as soon as it reads
    # the URLs, and that must still be a clean shutdown (storage closed, WAL checkpointed).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    config = load_config(data_dir)
    app = create_app(config)
    staff_app = app[STAFF_APP]
    host = "127.0.0.1"
    header_timeout = config.limits.header_timeout_seconds
    public_runner = SiteRunner(app, header_timeout=header_timeout)
    staff_runner = SiteRunner(staff_app, header_timeout=header_timeout)
    await public_runner.setup()
    await staff_runner.setup()
    publisher: OnionPublisher | None = None
    try:
        public_site = web.TCPSite(public_runner, host,
                                  config.public_port if port is None else port)
        staff_site = web.TCPSite(staff_runner, host,
                                 config.staff_port if staff_port is None else staff_port)
        await public_site.start()
        await staff_site.start()
        public_url = _url(public_site)
        staff_url = _url(staff_site)
        if dev:
            print("development mode: listening on 127.0.0.1 only, without Tor", flush=True)
        elif tor is not None:
            print("listening on 127.0.0.1 only; publishing both sites as onion services "
                  "through tor", flush=True)
        else:
            print("listening on 127.0.0.1 only; publish both ports as onion services with a "
                  "system tor (see torrc.example)", flush=True)
        print(f"public site: {public_url}", flush=True)
        print(f"staff API:   {staff_url}", flush=True)
        if tor is None:
            if ready is not None:
                ready.set()
            await stop.wait()
            return
        publisher = OnionPublisher(data_dir, tor, defenses=config.onion_defenses,
                                   say=lambda text: print(text, flush=True))
        await _serve_onions(publisher, data_dir, _port(public_site), _port(staff_site), stop,
                            ready)
    finally:
        if publisher is not None:
            await publisher.close()
        await staff_runner.cleanup()
        await public_runner.cleanup()


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Await ``work``; give up (cancelling it) if ``stop`` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TorError):
        await task
    return None


def _print_published(published: Published, data_dir: Path) -> None:
    print(f"public onion: http://{published.public}/", flush=True)
    if published.staff:
        print(f"staff onion:  http://{published.staff}/ (client authorisation: "
              f"{', '.join(published.staff_clients)})", flush=True)
    else:
        print("staff onion:  not published: no staff member has an onion key yet; run "
              f"`dropbox-server staff add NAME --data-dir {data_dir}`, then restart (or send "
              "SIGHUP)", flush=True)


async def _serve_onions(publisher: OnionPublisher, data_dir: Path, public_port: int,
                        staff_port: int, stop: asyncio.Event,
                        ready: asyncio.Event | None) -> None:
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, reload.set)
    await _unless_stopped(publisher.open(), stop)
    if stop.is_set():
        return
    published = await _unless_stopped(publisher.publish(public_port, staff_port), stop)
    if published is None:
        return
    _print_published(published, data_dir)
    print("onion services published; SIGHUP reloads the staff keys, Ctrl-C stops", flush=True)
    if ready is not None:
        ready.set()
    while not stop.is_set():
        waits = {asyncio.ensure_future(e.wait()) for e in (stop, publisher.lost, reload)}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if stop.is_set():
            return
        if publisher.lost.is_set():
            raise publisher.lost_error()
        reload.clear()
        print("reloading staff onion keys", flush=True)
        reloaded = await _unless_stopped(publisher.reload_staff(), stop)
        if reloaded is not None:
            _print_published(reloaded, data_dir)


def _port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes the bound port only here
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else 0


def _url(site: web.TCPSite) -> str:
    return f"http://127.0.0.1:{_port(site)}/"


def cmd_run(args: argparse.Namespace) -> int:
    use_tor = (not args.dev) if args.tor is None else args.tor
    if args.dev and use_tor:
        raise ConfigError("--dev serves without Tor; drop --tor (or --dev)")
    if not use_tor and (args.tor_control or args.tor_extra_config):
        raise ConfigError("--tor-control / --tor-extra-config need --tor")
    if args.tor_control and args.tor_extra_config:
        raise ConfigError("--tor-extra-config only applies to a tor the server launches, not "
                          "to the one at --tor-control")
    tor = TorOptions(control=args.tor_control,
                     extra_config=Path(args.tor_extra_config) if args.tor_extra_config else None
                     ) if use_tor else None
    asyncio.run(serve(Path(args.data_dir), dev=args.dev, port=args.port,
                      staff_port=args.staff_port, tor=tor))
    return 0


def _require_config(data_dir: Path) -> None:
    if not (data_dir / CONFIG_NAME).exists():
        raise ConfigError(f"{data_dir / CONFIG_NAME} does not exist; run `dropbox-server init` "
                          "first")


def cmd_staff_add(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    _require_config(data_dir)
    store = OnionKeyStore(data_dir)
    service = store.load_or_create("staff")
    key = store.add_client(args.name)
    known = {m.name for m in load_config(data_dir).staff}
    print(f"Staff onion service: {service.address}")
    print(f"Client-authorisation key for {args.name!r}. It is shown ONLY NOW and not stored "
          "here: hand it to them privately (in person, or over an end-to-end encrypted "
          "channel).")
    print()
    print("  For Tor Browser (paste when asked for the key) or tor's ClientOnionAuthDir")
    print(f"  (a file {args.name}.auth_private containing this line):")
    print(f"    {key.auth_private_line(service.address)}")
    print()
    print("  For `dropbox-client ... --tor-control` (tor's ONION_CLIENT_AUTH_ADD):")
    print(f"    {key.control_key()}")
    print()
    print("Takes effect at the next `dropbox-server run`, or at once if you send SIGHUP to the "
          "running server.")
    if args.name not in known:
        print(f"note: {args.name!r} is not a [[staff]] name in {CONFIG_NAME}; they can reach the "
              "staff API but need a staff signing key listed there to use it.")
    return 0


def cmd_staff_remove(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    _require_config(data_dir)
    OnionKeyStore(data_dir).remove_client(args.name)
    print(f"revoked the staff onion key of {args.name!r}; others are unaffected. Takes effect "
          "at the next `dropbox-server run`, or at once if you send SIGHUP to the running "
          "server.")
    return 0


def cmd_staff_list(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    _require_config(data_dir)
    names = list(OnionKeyStore(data_dir).clients())
    print("\n".join(names) if names else "no staff onion keys; add one with `dropbox-server "
          "staff add NAME`")
    return 0


def cmd_onion_rotate(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    _require_config(data_dir)
    which: ServiceName = args.which
    store = OnionKeyStore(data_dir)
    current = store.load(which)
    if current is not None and not args.yes:
        print(f"this permanently replaces the {which} onion address {current.address}: "
              "everyone who knows it must be given the new one. Run again with --yes.",
              file=sys.stderr)
        return 2
    old, key = store.rotate(which)
    discard_service_copy(data_dir, which)
    print(f"{which} onion address: {old or '(none)'} -> {key.address}")
    print("Takes effect at the next `dropbox-server run` (restart a running server).")
    if which == "staff":
        print("Staff keep their client-authorisation keys, but the address in their "
              "ClientOnionAuthDir line / Tor Browser changes: give them the new address.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropbox-server",
                                     description="Safe Report Drop Box server")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="write a configuration and the data folders")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--recipient", action="append", metavar="NAME=PUBFILE[,PUBFILE...]",
                   help="an agency people can report to, with its public key(s); repeatable")
    p.add_argument("--staff", action="append", metavar="NAME=PUBFILE",
                   help="a staff member's signing public key; repeatable")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("run", help="serve the public site and the staff API")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dev", action="store_true",
                   help="bind 127.0.0.1 only, without Tor, and print the two URLs")
    p.add_argument("--port", type=int, help="public site port (0 = pick a free one)")
    p.add_argument("--staff-port", type=int, help="staff API port (0 = pick a free one)")
    p.add_argument("--tor", action=argparse.BooleanOptionalAction, default=None,
                   help="publish both sites as onion services through tor (default unless "
                        "--dev); --no-tor leaves that to a system tor (torrc.example)")
    p.add_argument("--tor-control", metavar="HOST:PORT|SOCKET",
                   help="use this running tor's control port (cookie authentication) instead "
                        "of launching one")
    # Hidden: torrc lines for the tor we launch (private test networks).
    p.add_argument("--tor-extra-config", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("staff", help="staff client-authorisation keys for the staff onion")
    staff_sub = p.add_subparsers(dest="staff_command", required=True)
    q = staff_sub.add_parser("add", help="issue NAME a key (printed once)")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--data-dir", required=True)
    q.set_defaults(func=cmd_staff_add)
    q = staff_sub.add_parser("remove", help="revoke NAME's key; others keep working")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--data-dir", required=True)
    q.set_defaults(func=cmd_staff_remove)
    q = staff_sub.add_parser("list", help="names holding a key")
    q.add_argument("--data-dir", required=True)
    q.set_defaults(func=cmd_staff_list)

    p = sub.add_parser("onion", help="onion service keys")
    onion_sub = p.add_subparsers(dest="onion_command", required=True)
    q = onion_sub.add_parser("rotate", help="replace a service's key: a new onion address")
    q.add_argument("--which", choices=["public", "staff"], required=True)
    q.add_argument("--data-dir", required=True)
    q.add_argument("--yes", action="store_true", help="confirm replacing an existing address")
    q.set_defaults(func=cmd_onion_rotate)

    audit.register(sub)
    backup.register(sub)
    return parser


def _withhold_request_data(record: logging.LogRecord) -> bool:
    record.msg = "a request could not be handled (%s; details withheld)"
    record.args = (type(record.exc_info[1]).__name__ if record.exc_info and record.exc_info[1]
                   else "no details",)
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


def main(argv: list[str] | None = None) -> int:
    # Everything the server creates (database, ciphertext, keys) is for its own user only.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # aiohttp's server logger quotes unparsable requests (request lines, headers, cookies):
    # keep the fact, drop the content.
    logging.getLogger("aiohttp.server").addFilter(_withhold_request_data)
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except (ConfigError, StorageError, OnionKeyError, TorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

