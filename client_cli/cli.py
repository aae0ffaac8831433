"""``dropbox-client``: argument parsing, and the single place where errors become messages."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from . import decrypt, encrypt, export, fetch, fingerprint, inbox, keygen, reply, sourcekey
from .errors import EXPECTED_ERRORS, describe_error

__all__ = ["build_parser", "main"]

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropbox-client",
        description="Safe Report Drop Box staff tool: keys, and sealing or opening envelopes "
                    "on an offline machine.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (keygen, fingerprint, encrypt, decrypt):
        module.add_parser(subparsers)
    for online in (fetch, reply):
        online.register(subparsers)
    inbox.add_parsers(subparsers)  # inbox and related
    export.add_parser(subparsers)
    sourcekey.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    command: Command = args.func
    try:
        with _terminate_cleanly():
            return command(args)
    except EXPECTED_ERRORS as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nerror: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("\nerror: terminated", file=sys.stderr)
        return 143


class Terminated(BaseException):
    """SIGTERM arrived. Raised like KeyboardInterrupt so that every ``finally`` and cleanup
    handler runs (decrypt removes its provisional plaintext) before the process exits."""


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
