"""``dropbox-client fingerprint FILE``: show a key and the fingerprint to compare aloud."""

from __future__ import annotations

import argparse
from pathlib import Path

from dropbox_envelope.keys import PublicKey, StaffPublicKey

from .keyfiles import load_public_key

__all__ = ["add_parser", "key_lines", "run"]


def key_lines(key: PublicKey | StaffPublicKey) -> list[str]:
    """The lines ``keygen`` and ``fingerprint`` both print for a public key."""
    kind = ("encryption key (X25519)" if isinstance(key, PublicKey)
            else "staff signing key (Ed25519)")
    return [
        f"kind:        {kind}",
        f"public key:  {key.encode()}",
        f"fingerprint: {key.fingerprint}",
    ]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fingerprint", help="show a public key and its fingerprint",
        description="Print a public key and its fingerprint, to compare over an independent "
                    "channel (read it aloud on the phone). Accepts a .pub file or a secret key "
                    "file (only its public part is read; no passphrase is needed).")
    parser.add_argument("key_file", metavar="PUBKEY_FILE", type=Path,
                        help="a .pub file, or a secret key file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_public_key(args.key_file)
    lines = key_lines(loaded.key)
    if loaded.from_secret_file:
        lines.append("(read from a secret key file; its secret part was not touched)")
    print("\n".join(lines))
    return 0
