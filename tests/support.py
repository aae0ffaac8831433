"""Helpers shared by the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from dropbox_envelope.keys import TEST_KDF, SecretKey, StaffSecretKey, lock_secret_key
from dropbox_server.config import render_config

#: Set to "1" (as .ci/run does) to turn "dependency missing" skips into failures.
REQUIRE_ALL_ENV = "SRDB_REQUIRE_ALL"

# Debian installs tor as /usr/sbin/tor, which is not on a non-root user's PATH.
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test, or fail it when ``SRDB_REQUIRE_ALL=1`` is set."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str, why: str) -> str:
    """Return the path of executable ``name``; skip (or fail under CI) if it is missing."""
    path = shutil.which(name)
    if path is None:
        path = shutil.which(name, path=os.pathsep.join(_EXTRA_DIRS))
    if path is None:
        skip_or_fail(f"{name} not installed: {why}")
    return path


@dataclass(frozen=True)
class Result:
    """What one ``dropbox-client`` run returned and printed (the ``run`` fixture)."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@dataclass(frozen=True)
class ServerFolder:
    """A server data folder made by :func:`make_server_folder`, and the secret keys for it."""

    data: Path
    agency: SecretKey  # the recipient's one key, keys/agency.pub
    staff: StaffSecretKey  # alice's signing key, keys/alice.pub (listed only if asked for)

    def keep_keys(self, folder: Path, passphrase: str, *, staff: bool = True,
                  agency: bool = True) -> None:
        """Keep the secret keys as a staff machine does, in ``folder`` (made if need be):
        ``pass.txt`` holding ``passphrase``, and ``alice.key`` and ``agency.key`` locked with
        it (the weakest KDF a reader accepts)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pass.txt").write_text(passphrase + "\n")
        if staff:
            (folder / "alice.key").write_text(lock_secret_key(self.staff, passphrase,
                                                              params=TEST_KDF))
        if agency:
            (folder / "agency.key").write_text(lock_secret_key(self.agency, passphrase,
                                                               params=TEST_KDF))


def make_server_folder(data: Path, *, recipient: str = "City Police", description: str = "",
                       with_staff: bool = True) -> ServerFolder:
    """A data folder for tests that start the real server (``dropbox-server run DATA``): one
    recipient with one fresh agency key, staff member ``alice`` (unless ``with_staff`` is false),
    and the weakest return-code KDF a server accepts, so that every code costs milliseconds."""
    (data / "keys").mkdir(parents=True)
    folder = ServerFolder(data, SecretKey.generate(), StaffSecretKey.generate())
    (data / "keys" / "agency.pub").write_text(folder.agency.public_key.encode() + "\n")
    (data / "keys" / "alice.pub").write_text(folder.staff.public_key.encode() + "\n")
    config = render_config([(recipient, description, ["keys/agency.pub"])],
                           [("alice", "keys/alice.pub")] if with_staff else [])
    # render_config writes the default KDF; the settings go in the [server] table, after the
    # questionnaire line it always writes.
    (data / "dropbox.toml").write_text(config.replace(
        'questionnaire = ""', 'questionnaire = ""\n'
        f"code_kdf_opslimit = {TEST_KDF.opslimit}\ncode_kdf_memlimit = {TEST_KDF.memlimit}"))
    return folder
