"""``dropbox-client source-key``: save a source's reply public key, online, for
``reply --prepare --source-key FILE`` on the offline machine.

``fetch`` records the key in every sidecar of an envelope from a returning source; this command
is for envelopes fetched before that, or a source whose key is wanted without a new envelope.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from . import tor
from .errors import CliError, one_line
from .keyfiles import write_public_key_file
from .staffapi import StaffClient, add_connection_arguments, is_id, load_staff_identity

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "source-key", help="save a source's reply public key for offline replies",
        description="Ask the server for a source's reply public key and write it to a .pub "
                    "file, to carry to the offline machine for `reply --prepare "
                    "--source-key FILE`.")
    add_connection_arguments(parser)
    tor.add_arguments(parser)
    parser.add_argument("--source", metavar="ID", required=True, help="the source ID")
    parser.add_argument("--out", metavar="FILE", type=Path, required=True,
                        help="the .pub file to write (never overwritten)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not is_id(args.source):
        raise CliError(f"--source {args.source!r} is not a source ID (32 lowercase hex digits)")
    connector = tor.connector_from_args(args)
    key = load_staff_identity(args.identity, args.passphrase_file)

    async def main() -> tuple[str, str]:
        async with StaffClient(args.server, key, connector=connector) as api:
            source = await api.source(args.source)
        write_public_key_file(args.out, source.public_key)
        return source.public_key.fingerprint, source.recipient

    fingerprint, recipient = asyncio.run(main())
    print(f"wrote the reply key of source {args.source} (recipient {one_line(recipient)}) to "
          f"{one_line(str(args.out))}; fingerprint: {fingerprint}")
    return 0
