"""The server's onion keys on disk: the ``onion/`` folder of a data folder, and the
``HiddenServiceDir`` copies the server's own tor publishes from.

The key formats are tor's own (:mod:`dropbox_envelope.onion`); this module only keeps files.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

from dropbox_envelope.onion import (
    ClientAuthKey,
    OnionServiceKey,
    RandomSource,
    encode_client_auth_public,
    parse_client_auth_public,
    valid_client_name,
)

from .errors import OnionKeyError

__all__ = ["OnionKeyStore", "ServiceName", "write_hidden_service_dir"]

ServiceName = Literal["public", "staff"]


def _write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, durably; refuses to overwrite unless asked."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # atomic "create if absent"
        finally:
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class OnionKeyStore:
    """The ``onion/`` folder of a data folder.

    ``onion/public.key`` and ``onion/staff.key`` (tor's ``hs_ed25519_secret_key`` format, 0600)
    and ``onion/staff-clients/NAME.pub`` (tor's ``.auth`` line, 0600), one per staff member.
    """

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "onion"
        self.clients_dir = self.root / "staff-clients"

    def _ensure_dirs(self) -> None:
        for folder in (self.root, self.clients_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.is_symlink() or not folder.is_dir():
                raise OnionKeyError(f"{folder} is not a folder")
            os.chmod(folder, 0o700)

    def key_path(self, which: ServiceName) -> Path:
        return self.root / f"{which}.key"

    def load(self, which: ServiceName) -> OnionServiceKey | None:
        path = self.key_path(which)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OnionKeyError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return OnionServiceKey.from_tor_file(data)
        except OnionKeyError as exc:
            raise OnionKeyError(f"{path}: {exc}") from None

    def load_or_create(self, which: ServiceName,
                       random: RandomSource = os.urandom) -> OnionServiceKey:
        """The service's key, created on first use so the address never changes afterwards."""
        key = self.load(which)
        if key is None:
            self._ensure_dirs()
            key = OnionServiceKey.generate(random)
            try:
                _write_private(self.key_path(which), key.to_tor_file())
            except FileExistsError:  # another process created it first: use that one
                loaded = self.load(which)
                assert loaded is not None  # noqa: S101 - it exists, we just collided with it
                return loaded
        return key

    def rotate(self, which: ServiceName,
               random: RandomSource = os.urandom) -> tuple[str | None, OnionServiceKey]:
        """Replace the service key (the old address stops working); returns (old addr, key)."""
        old = self.load(which)
        self._ensure_dirs()
        key = OnionServiceKey.generate(random)
        _write_private(self.key_path(which), key.to_tor_file(), replace=True)
        return (old.address if old else None), key

    def client_path(self, name: str) -> Path:
        if not valid_client_name(name):
            raise OnionKeyError(f"staff name {name!r}: use letters, digits, '_', '.', '-' "
                                "(at most 64 characters)")
        return self.clients_dir / f"{name}.pub"

    def add_client(self, name: str, random: RandomSource = os.urandom) -> ClientAuthKey:
        """Create ``name``'s key pair; only the public half is stored. Refuses duplicates."""
        path = self.client_path(name)
        self._ensure_dirs()
        key = ClientAuthKey.generate(random)
        try:
            _write_private(path, (key.service_line() + "\n").encode("ascii"))
        except FileExistsError:
            raise OnionKeyError(f"staff member {name!r} already has a key; "
                                "remove it first to issue a new one") from None
        return key

    def remove_client(self, name: str) -> None:
        path = self.client_path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise OnionKeyError(f"no onion key for staff member {name!r}") from None

    def clients(self) -> dict[str, bytes]:
        """Staff name -> x25519 public key, for every ``staff-clients/NAME.pub``."""
        result: dict[str, bytes] = {}
        if not self.clients_dir.is_dir():
            return result
        for path in sorted(self.clients_dir.glob("*.pub")):
            name = path.name.removesuffix(".pub")
            if not valid_client_name(name):
                continue
            try:
                result[name] = parse_client_auth_public(path.read_text(encoding="ascii"))
            except (OSError, UnicodeDecodeError, OnionKeyError) as exc:
                raise OnionKeyError(f"{path}: not a client authorisation key: {exc}") from None
        return result


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (0700) if needed; refuse a symlink or a file planted in its place."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    if folder.is_symlink() or not folder.is_dir():
        raise OnionKeyError(f"{folder} is not a folder")
    os.chmod(folder, 0o700)  # tor refuses a HiddenServiceDir others can read


def write_hidden_service_dir(folder: Path, key: OnionServiceKey,
                             clients: dict[str, bytes]) -> None:
    """Lay out ``folder`` as tor's ``HiddenServiceDir`` for ``key``, authorising ``clients``.

    Writes ``hs_ed25519_secret_key`` (the stored key, byte for byte) and
    ``hs_ed25519_public_key``, so tor loads exactly our key and never makes one of its own, and
    removes ``hostname`` (tor writes it again when it loads the key: the caller's proof); and
    one ``authorized_clients/NAME.auth`` per client, removing any other ``.auth`` file, so a
    revoked key is gone from the folder before tor reads it. With no clients the folder has no
    ``authorized_clients/`` entries and tor would publish the service to anyone: callers only
    pass an empty ``clients`` for the public service.
    """
    _private_folder(folder)
    _write_private(folder / "hs_ed25519_secret_key", key.to_tor_file(), replace=True)
    _write_private(folder / "hs_ed25519_public_key", key.to_tor_public_file(), replace=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / "hostname").unlink()
    authorized = folder / "authorized_clients"
    _private_folder(authorized)
    wanted = {f"{name}.auth" for name in clients}
    for entry in os.scandir(authorized):
        if entry.name.endswith(".auth") and entry.name not in wanted:
            os.unlink(entry.path)
    for name, public in clients.items():
        if not valid_client_name(name):
            raise OnionKeyError(f"staff name {name!r} is not a valid file name")
        line = "descriptor:x25519:" + encode_client_auth_public(public) + "\n"
        _write_private(authorized / f"{name}.auth", line.encode("ascii"), replace=True)
