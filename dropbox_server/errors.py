"""Server-side failures an operator or a handler can act on."""

from __future__ import annotations

# Key formats are pure logic shared with the staff CLI, so their error lives with them.
from dropbox_envelope.errors import OnionKeyError

__all__ = ["BackupError", "ConfigError", "OnionKeyError", "StorageError", "TorError"]


class ConfigError(Exception):
    """The configuration is wrong; the message says which setting and in which file."""


class StorageError(Exception):
    """The data folder is unusable (permissions, a planted symlink, a newer schema)."""


class BackupError(StorageError):
    """A backup cannot be written, or a backup file cannot be restored; the message says why."""


class TorError(Exception):
    """Tor could not be started, reached, or made to publish the onion services; the message
    says what to check (and includes the end of tor's own log when tor itself failed)."""
