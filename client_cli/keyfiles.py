"""Reading and writing key files, and obtaining passphrases.

The key formats themselves (and all cryptography) live in :mod:`dropbox_envelope.keys`; this
module only moves their text to and from disk with the right permissions.
"""

from __future__ import annotations

import getpass
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from dropbox_envelope.errors import InvalidKey, KeyFileError
from dropbox_envelope.keys import (
    PublicKey,
    SecretKey,
    StaffPublicKey,
    StaffSecretKey,
    decode_public_key,
    inspect_secret_key,
    unlock_secret_key,
)

from .errors import CliError
from .fsutil import fsync_dir, write_new_file

__all__ = [
    "LoadedPublicKey",
    "ask_new_passphrase",
    "get_passphrase",
    "is_short",
    "load_encryption_key",
    "load_public_key",
    "read_key_text",
    "read_passphrase_file",
    "unlock_key_file",
    "wants_test_kdf",
    "write_public_key_file",
    "write_secret_key_file",
]

MAX_KEY_FILE_BYTES = 64 * 1024
"""Key files are tiny; anything bigger is the wrong file (an envelope, a photo...)."""

SHORT_PASSPHRASE = 12


def read_key_text(path: Path) -> str:
    """The text of a (public or secret) key file, refusing anything implausibly large."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise CliError(f"{path}: this is not a key file (it is too large)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: this is not a key file (it is not text)") from None


def _looks_like_secret_key_file(text: str) -> bool:
    return text.lstrip().startswith("{")


@dataclass(frozen=True)
class LoadedPublicKey:
    """A public key and where it came from."""

    key: PublicKey | StaffPublicKey
    path: Path
    from_secret_file: bool

    @property
    def kind_label(self) -> str:
        if isinstance(self.key, PublicKey):
            return "encryption key (X25519: agency, backup or reply key)"
        return "staff signing key (Ed25519)"


def load_public_key(path: Path) -> LoadedPublicKey:
    """Read a ``.pub`` file (one line of key text; blank and ``#`` lines are ignored), or the
    public half recorded in a secret key file (no passphrase needed)."""
    text = read_key_text(path)
    if _looks_like_secret_key_file(text):
        info = inspect_secret_key(text)
        key = decode_public_key(info.public_key)
        expected = PublicKey if info.kind == "agency" else StaffPublicKey
        if not isinstance(key, expected):
            raise KeyFileError(f"{path}: the secret key file's kind ({info.kind}) does not "
                               "match its public key")
        return LoadedPublicKey(key, path, True)
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if len(keys) != 1:
        raise InvalidKey(f"{path}: a public key file holds exactly one key line "
                         f"(found {len(keys)})")
    try:
        return LoadedPublicKey(decode_public_key(keys[0]), path, False)
    except InvalidKey as exc:
        raise InvalidKey(f"{path}: {exc}") from None


def load_encryption_key(path: Path) -> PublicKey:
    """An X25519 key to seal envelopes to; a staff signing key is refused."""
    loaded = load_public_key(path)
    if not isinstance(loaded.key, PublicKey):
        raise CliError(f"{path} is a staff signing key; envelopes are sealed to encryption "
                       "keys (srdb1-x25519-...)")
    return loaded.key


# --- passphrases -----------------------------------------------------------------------------

def read_passphrase_file(path: Path) -> str:
    """The first line of ``path``, without its line ending. An empty passphrase is refused."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: the passphrase file is not UTF-8 text") from None
    first = text.split("\n", 1)[0]
    first = first.removesuffix("\r")
    if not first:
        raise CliError(f"{path}: the passphrase file's first line is empty")
    return first


def _ask(prompt: str) -> str:
    """Read a passphrase on the terminal without echo; never fall back to echoing input."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", getpass.GetPassWarning)
            return getpass.getpass(prompt)
    except (getpass.GetPassWarning, EOFError):
        raise CliError("cannot ask for the passphrase: there is no terminal (use "
                       "--passphrase-file F)") from None


def ask_new_passphrase(prompt: str = "New passphrase for the secret key: ") -> str:
    """Ask twice on the terminal; both must match and be non-empty."""
    first = _ask(prompt)
    if not first:
        raise CliError("an empty passphrase would leave the key unprotected")
    second = _ask("Repeat the passphrase: ")
    if first != second:
        raise CliError("the two passphrases do not match; nothing was written")
    return first


def get_passphrase(passphrase_file: Path | None, *, new: bool, prompt: str) -> str:
    """From ``--passphrase-file`` if given, else typed on the terminal (twice when ``new``)."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    if new:
        return ask_new_passphrase(prompt)
    passphrase = _ask(prompt)
    if not passphrase:
        raise CliError("no passphrase was entered")
    return passphrase


def unlock_key_file(path: Path, passphrase_file: Path | None, *,
                    kind: str | None = None) -> SecretKey | StaffSecretKey:
    """Read and unlock a secret key file of ``kind`` ("agency", "staff" or any). The file is
    checked before the passphrase is asked for."""
    text = read_key_text(path)
    info = inspect_secret_key(text)  # KeyFileError if it is not a secret key file at all
    if kind is not None and info.kind != kind:
        what = {"agency": "an agency encryption key", "staff": "a staff signing key"}
        raise CliError(f"{path} is {what[info.kind]}; this needs {what[kind]}")
    label = f" ({info.name})" if info.name else ""
    passphrase = get_passphrase(passphrase_file, new=False,
                                prompt=f"Passphrase for {path}{label}: ")
    return unlock_secret_key(text, passphrase)


# --- writing ---------------------------------------------------------------------------------

def write_secret_key_file(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (refusing to overwrite) holding a locked secret key."""
    write_new_file(path, text.encode("utf-8"), 0o600)
    fsync_dir(path.parent)


def write_public_key_file(path: Path, key: PublicKey | StaffPublicKey) -> None:
    """Create ``path`` (refusing to overwrite) holding the key text and a newline."""
    write_new_file(path, (key.encode() + "\n").encode("ascii"), 0o644)
    fsync_dir(path.parent)


def is_short(passphrase: str) -> bool:
    return len(passphrase) < SHORT_PASSPHRASE


def wants_test_kdf(flag: bool) -> bool:
    """``--kdf-test-params`` or ``SRDB_TEST_KDF=1``."""
    return flag or os.environ.get("SRDB_TEST_KDF") == "1"
