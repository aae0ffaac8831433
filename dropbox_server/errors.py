"""Server-side failures an operator or a handler can act on."""

from __future__ import annotations

__all__ = ["ConfigError", "StorageError"]


class ConfigError(Exception):
    """The configuration is wrong; the message says which setting and in which file."""


class StorageError(Exception):
    """The data folder is unusable (permissions, a planted symlink, a newer schema)."""
