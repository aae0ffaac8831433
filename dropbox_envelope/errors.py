"""Every failure the envelope package reports, one class per thing a caller can do about it.

The docstrings are written for the person in front of the screen: the CLI prints ``str(error)``
as the whole message. Raw PyNaCl/libsodium exceptions never leave this package.
"""

from __future__ import annotations

__all__ = [
    "CorruptedEnvelope",
    "EnvelopeError",
    "HeaderCorrupted",
    "InvalidCode",
    "InvalidKey",
    "KeyFileError",
    "LimitExceeded",
    "NotForMe",
    "OnionKeyError",
    "PayloadCorrupted",
    "UnsupportedVersion",
    "WrappedFileCorrupted",
    "WrongPassphrase",
]


class EnvelopeError(Exception):
    """Base class of every error raised by :mod:`dropbox_envelope`."""

    def __init__(self, message: str | None = None) -> None:
        # Without a specific message, the class docstring (reflowed) is the message.
        super().__init__(message or " ".join((type(self).__doc__ or "").split()))


class UnsupportedVersion(EnvelopeError):
    """The envelope or key file uses a format version this software does not know.

    Upgrade the software; the data itself may be fine.
    """


class NotForMe(EnvelopeError):
    """None of the given secret keys can open this envelope.

    It was sealed to someone else's public key: check that you chose the right key file
    (the agency key, or its backup), or ask who sent it which public key they used.
    """


class CorruptedEnvelope(EnvelopeError):
    """The envelope is damaged or was tampered with; nothing from it can be trusted."""


class HeaderCorrupted(CorruptedEnvelope):
    """The envelope header is malformed, truncated, or fails its authentication code."""


class PayloadCorrupted(CorruptedEnvelope):
    """The encrypted payload is truncated, extended, reordered or altered, or its content is
    inconsistent (padding, records, manifest or attachment digests)."""


class LimitExceeded(EnvelopeError):
    """A size or count limit was exceeded (too many recipients, a record or manifest too big)."""


class InvalidKey(EnvelopeError):
    """A public key text is malformed: wrong prefix, wrong length, or a failed checksum (typo)."""


class KeyFileError(EnvelopeError):
    """A secret key file is unreadable, malformed, or of an unknown kind."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not unlock this secret key file.

    Check the keyboard layout and Caps Lock, and that this is the right key file.
    """


class OnionKeyError(EnvelopeError):
    """An onion service or client-authorisation key is missing, malformed or misplaced."""


class InvalidCode(EnvelopeError):
    """This return code is not valid. Check that you typed all 25 digits in the right order."""


class WrappedFileCorrupted(EnvelopeError):
    """A file the server stored is damaged or was tampered with, or its server key is wrong; it
    cannot be unwrapped (docs/PROTOCOL.md §11)."""
