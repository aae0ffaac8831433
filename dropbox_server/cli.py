"""`dropbox-server`: operator commands (init, run)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from dropbox_envelope.errors import InvalidKey
from dropbox_envelope.keys import PublicKey, StaffPublicKey

from .app import create_app
from .appkeys import STAFF_APP
from .config import CONFIG_NAME, load_config, render_config, slug
from .errors import ConfigError, StorageError

__all__ = ["main"]


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
                ready: asyncio.Event | None = None) -> None:
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
    public_runner = web.AppRunner(app, access_log=None, handle_signals=False)
    staff_runner = web.AppRunner(staff_app, access_log=None, handle_signals=False)
    await public_runner.setup()
    await staff_runner.setup()
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
        else:
            print("listening on 127.0.0.1 only; publish both ports as onion services with a "
                  "system tor (see torrc.example)", flush=True)
        print(f"public site: {public_url}", flush=True)
        print(f"staff API:   {staff_url}", flush=True)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await staff_runner.cleanup()
        await public_runner.cleanup()


def _url(site: web.TCPSite) -> str:
    server = site._server  # aiohttp exposes the bound port only here
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else 0
    return f"http://127.0.0.1:{port}/"


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(serve(Path(args.data_dir), dev=args.dev, port=args.port,
                      staff_port=args.staff_port))
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
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Everything the server creates (database, ciphertext, keys) is for its own user only.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except (ConfigError, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

