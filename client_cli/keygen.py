"""``dropbox-client keygen``: make an agency (X25519) or staff (Ed25519) key pair."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from pathlib import Path

from dropbox_envelope.keys import (
    DEFAULT_KDF,
    TEST_KDF,
    SecretKey,
    StaffSecretKey,
    lock_secret_key,
)

from .errors import CliError
from .filenames import safe_name
from .fingerprint import key_lines
from .fsutil import refuse_existing
from .keyfiles import (
    get_passphrase,
    is_short,
    wants_test_kdf,
    write_public_key_file,
    write_secret_key_file,
)

__all__ = ["add_parser", "run"]

_CUSTODY = {
    "agency": (
        "Keep {key} offline, on the decryption machine only: never on the server, in this "
        "repository, e-mail or chat. Back it up to a second offline medium, and consider a "
        "second, independent backup key pair. Give {pub} to the server operator and compare "
        "the fingerprint with them over an independent channel."
    ),
    "staff": (
        "Keep {key} private to you: it signs your requests to the drop box. Give {pub} to the "
        "server operator and compare the fingerprint with them over an independent channel."
    ),
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "keygen", help="generate a key pair (agency encryption key or staff signing key)",
        description="Generate a key pair. Writes DIR/NAME.key (the passphrase-protected secret "
                    "key, mode 0600) and DIR/NAME.pub (the public key, one line). Existing "
                    "files are never overwritten.")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="folder to write the key files into (created if missing)")
    parser.add_argument("--name", metavar="NAME",
                        help="file name stem (default: 'agency' or 'staff')")
    parser.add_argument("--kind", choices=("agency", "staff"), default="agency",
                        help="agency: X25519 key that reports are sealed to (default); "
                             "staff: Ed25519 key that signs staff requests")
    parser.add_argument("--passphrase-file", metavar="F", type=Path,
                        help="read the passphrase from the first line of F "
                             "(default: ask twice on the terminal)")
    parser.add_argument("--kdf-test-params", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def _key_paths(out: Path, name: str) -> tuple[Path, Path]:
    if not name or safe_name(name, set()) != name:
        raise CliError(f"--name {name!r} is not a plain, portable file name (no path "
                       "separators, leading dot or dash, or characters such as <>:\"|?*)")
    return out / f"{name}.key", out / f"{name}.pub"


def run(args: argparse.Namespace) -> int:
    kind: str = args.kind
    name: str = args.name if args.name is not None else kind
    key_path, pub_path = _key_paths(args.out, name)
    args.out.mkdir(parents=True, exist_ok=True, mode=0o700)
    refuse_existing(key_path)
    refuse_existing(pub_path)

    passphrase = get_passphrase(args.passphrase_file, new=True,
                                prompt=f"New passphrase for {key_path}: ")
    if is_short(passphrase):
        print("warning: a passphrase this short can be guessed if the key file is copied; "
              "prefer several random words", file=sys.stderr)
    params = TEST_KDF if wants_test_kdf(args.kdf_test_params) else DEFAULT_KDF
    if params is TEST_KDF:
        print("warning: weak key-derivation parameters for tests; do not use this key for real",
              file=sys.stderr)

    secret: SecretKey | StaffSecretKey = (
        SecretKey.generate() if kind == "agency" else StaffSecretKey.generate())
    locked = lock_secret_key(secret, passphrase, name=name, params=params)
    write_secret_key_file(key_path, locked)
    try:
        write_public_key_file(pub_path, secret.public_key)
    except BaseException:
        # Do not leave half a key pair behind.
        with contextlib.suppress(OSError):
            os.unlink(key_path)
        raise

    print("\n".join(key_lines(secret.public_key)))
    print(f"secret key:  {key_path} (mode 0600, passphrase-protected)")
    print(f"public key file: {pub_path}")
    print()
    print(textwrap.fill(_CUSTODY[kind].format(key=key_path, pub=pub_path), width=78))
    return 0
