"""The Safe Report Drop Box envelope format (docs/PROTOCOL.md): pure logic shared by the server
and the staff CLI. Imports PyNaCl and the standard library only."""

from .envelope import (
    AttachmentData,
    AttachmentDone,
    Decryptor,
    Encryptor,
    EnvelopeInfo,
    ManifestReady,
    StructureChecker,
)
from .errors import (
    CorruptedEnvelope,
    EnvelopeError,
    HeaderCorrupted,
    InvalidKey,
    KeyFileError,
    LimitExceeded,
    NotForMe,
    PayloadCorrupted,
    UnsupportedVersion,
    WrongPassphrase,
)
from .keys import PublicKey, SecretKey, StaffPublicKey, StaffSecretKey
from .manifest import Attachment, Manifest

__all__ = [
    "Attachment",
    "AttachmentData",
    "AttachmentDone",
    "CorruptedEnvelope",
    "Decryptor",
    "Encryptor",
    "EnvelopeError",
    "EnvelopeInfo",
    "HeaderCorrupted",
    "InvalidKey",
    "KeyFileError",
    "LimitExceeded",
    "Manifest",
    "ManifestReady",
    "NotForMe",
    "PayloadCorrupted",
    "PublicKey",
    "SecretKey",
    "StaffPublicKey",
    "StaffSecretKey",
    "StructureChecker",
    "UnsupportedVersion",
    "WrongPassphrase",
]
