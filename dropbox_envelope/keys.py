"""Key types, their one-line text form, fingerprints, and passphrase-protected secret key files.

Pure logic: text in, text out. Writing files with the right permissions is the caller's job
(see ``client_cli.keyfiles``).

Public key text (docs/PROTOCOL.md §5)::

    srdb1-x25519-<base32(raw32 || checksum4)>     agency / source encryption key
    srdb1-ed25519-<base32(raw32 || checksum4)>    staff signing key
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import nacl.bindings as sodium
import nacl.exceptions

from .errors import InvalidKey, KeyFileError, UnsupportedVersion, WrongPassphrase

__all__ = [
    "DEFAULT_KDF",
    "TEST_KDF",
    "KdfParams",
    "KeyFileInfo",
    "PublicKey",
    "RandomSource",
    "SecretKey",
    "StaffPublicKey",
    "StaffSecretKey",
    "decode_public_key",
    "fingerprint",
    "inspect_secret_key",
    "lock_secret_key",
    "unlock_secret_key",
]

RandomSource = Callable[[int], bytes]
"""A function returning n random bytes; ``os.urandom`` unless a test pins it."""

KeyKind = Literal["agency", "staff"]

_PREFIX_X25519 = "srdb1-x25519-"
_PREFIX_ED25519 = "srdb1-ed25519-"
_CHECKSUM_BYTES = 4


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _b32decode(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey("the key contains characters that are not base32") from exc


def _checksum(prefix: str, raw: bytes) -> bytes:
    return hashlib.blake2b(prefix.encode("ascii") + raw, digest_size=32).digest()[:_CHECKSUM_BYTES]


def _encode(prefix: str, raw: bytes) -> str:
    return prefix + _b32encode(raw + _checksum(prefix, raw))


_B32_CHARS = 58  # ceil((32 + 4) * 8 / 5), unpadded


def _decode(prefix: str, text: str) -> bytes:
    encoded = text[len(prefix):]
    if len(encoded) != _B32_CHARS:
        raise InvalidKey("the key has the wrong length; was it copied completely?")
    body = _b32decode(encoded)
    if len(body) != 32 + _CHECKSUM_BYTES:
        raise InvalidKey("the key has the wrong length; was it copied completely?")
    raw, check = body[:32], body[32:]
    if _checksum(prefix, raw) != check or _b32encode(body) != encoded:
        # The re-encoding test refuses the 2 unused bits of the last character being set, so
        # every key has exactly one text form and a typo there is caught too.
        raise InvalidKey("the key's checksum does not match; it was mistyped or damaged")
    return raw


def fingerprint(prefix: str, raw: bytes) -> str:
    """Six groups of five digits that two people can read to each other to compare a key."""
    digest = hashlib.blake2b(b"srdb1 fingerprint\x00" + prefix.encode("ascii") + raw,
                             digest_size=30).digest()
    groups = [int.from_bytes(digest[i:i + 5], "big") % 100_000 for i in range(0, 30, 5)]
    return " ".join(f"{g:05d}" for g in groups)


@dataclass(frozen=True)
class PublicKey:
    """An X25519 public key that envelopes are sealed to (an agency's, or a source's)."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise InvalidKey("an X25519 public key is 32 bytes")

    def encode(self) -> str:
        return _encode(_PREFIX_X25519, self.raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(_PREFIX_X25519, self.raw)

    @classmethod
    def decode(cls, text: str) -> PublicKey:
        text = text.strip()
        if not text.startswith(_PREFIX_X25519):
            raise InvalidKey(f"an encryption public key starts with {_PREFIX_X25519!r}")
        return cls(_decode(_PREFIX_X25519, text))

    def __str__(self) -> str:
        return self.encode()


@dataclass(frozen=True, repr=False)
class SecretKey:
    """An X25519 secret key that opens envelopes sealed to its public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise InvalidKey("an X25519 secret key is 32 bytes")

    def __repr__(self) -> str:
        return f"SecretKey(public={self.public_key.encode()})"

    @classmethod
    def generate(cls, random: RandomSource = os.urandom) -> SecretKey:
        return cls.from_seed(random(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> SecretKey:
        """Derive a key pair from 32 seed bytes (libsodium crypto_box_seed_keypair)."""
        _pk, sk = sodium.crypto_box_seed_keypair(seed)
        return cls(sk)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(sodium.crypto_scalarmult_base(self.raw))


@dataclass(frozen=True)
class StaffPublicKey:
    """An Ed25519 public key that verifies a staff member's signed requests."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise InvalidKey("an Ed25519 public key is 32 bytes")

    def encode(self) -> str:
        return _encode(_PREFIX_ED25519, self.raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(_PREFIX_ED25519, self.raw)

    @classmethod
    def decode(cls, text: str) -> StaffPublicKey:
        text = text.strip()
        if not text.startswith(_PREFIX_ED25519):
            raise InvalidKey(f"a staff signing public key starts with {_PREFIX_ED25519!r}")
        return cls(_decode(_PREFIX_ED25519, text))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            sodium.crypto_sign_open(signature + message, self.raw)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError,
                nacl.exceptions.TypeError):
            return False
        return True

    def __str__(self) -> str:
        return self.encode()


@dataclass(frozen=True, repr=False)
class StaffSecretKey:
    """An Ed25519 signing key (stored as its 32-byte seed)."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise InvalidKey("an Ed25519 seed is 32 bytes")

    def __repr__(self) -> str:
        return f"StaffSecretKey(public={self.public_key.encode()})"

    @classmethod
    def generate(cls, random: RandomSource = os.urandom) -> StaffSecretKey:
        return cls(random(32))

    @property
    def public_key(self) -> StaffPublicKey:
        pk, _sk = sodium.crypto_sign_seed_keypair(self.seed)
        return StaffPublicKey(pk)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of ``message``."""
        _pk, sk = sodium.crypto_sign_seed_keypair(self.seed)
        return bytes(sodium.crypto_sign(message, sk)[:64])


def decode_public_key(text: str) -> PublicKey | StaffPublicKey:
    """Parse either kind of public key text."""
    text = text.strip()
    if text.startswith(_PREFIX_ED25519):
        return StaffPublicKey.decode(text)
    return PublicKey.decode(text)


# --- passphrase-protected secret key files ------------------------------------------------------

@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost (libsodium crypto_pwhash_argon2id: parallelism is always 1)."""

    opslimit: int
    memlimit: int  # bytes


DEFAULT_KDF = KdfParams(opslimit=3, memlimit=256 * 1024 * 1024)
"""libsodium's MODERATE profile: ~0.5-1 s and 256 MiB per unlock, once per staff session."""

TEST_KDF = KdfParams(opslimit=1, memlimit=8 * 1024 * 1024)
"""The weakest parameters a reader accepts; for tests only."""

_MIN_MEMLIMIT = 8 * 1024 * 1024
_MAX_MEMLIMIT = 4 * 1024 * 1024 * 1024
_MAX_OPSLIMIT = 64
_FILE_FORMAT = "srdb-secret-key"
_FILE_VERSION = 1


def _stretch(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return bytes(sodium.crypto_pwhash_alg(32, secret, salt, params.opslimit, params.memlimit,
                                          sodium.crypto_pwhash_ALG_ARGON2ID13))


def lock_secret_key(key: SecretKey | StaffSecretKey, passphrase: str, *, name: str = "",
                    params: KdfParams = DEFAULT_KDF,
                    random: RandomSource = os.urandom) -> str:
    """Serialise ``key`` as a secret key file protected by ``passphrase`` (Argon2id + secretbox)."""
    if not passphrase:
        raise KeyFileError("an empty passphrase would leave the key unprotected")
    if isinstance(key, SecretKey):
        kind: KeyKind = "agency"
        raw, public = key.raw, key.public_key.encode()
    else:
        kind = "staff"
        raw, public = key.seed, key.public_key.encode()
    salt = random(sodium.crypto_pwhash_SALTBYTES)
    nonce = random(sodium.crypto_secretbox_NONCEBYTES)
    box = sodium.crypto_secretbox(raw, nonce, _stretch(passphrase, salt, params))
    document = {
        "comment": "Safe Report Drop Box secret key. Keep it offline; never share or upload it.",
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "kind": kind,
        "name": name,
        "public_key": public,
        "kdf": {
            "algorithm": "argon2id13",
            "opslimit": params.opslimit,
            "memlimit": params.memlimit,
            "salt": base64.b64encode(salt).decode("ascii"),
        },
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ciphertext": base64.b64encode(box).decode("ascii"),
    }
    return json.dumps(document, indent=2) + "\n"


@dataclass(frozen=True)
class KeyFileInfo:
    """What a secret key file says about itself without its passphrase."""

    kind: KeyKind
    name: str
    public_key: str
    params: KdfParams


def inspect_secret_key(text: str) -> KeyFileInfo:
    """Read the unencrypted fields of a secret key file (no passphrase needed)."""
    info, _salt, _nonce, _box = _parse_key_file(text)
    return info


def _parse_key_file(text: str) -> tuple[KeyFileInfo, bytes, bytes, bytes]:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, nesting
        raise KeyFileError("this is not a secret key file (it is not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FILE_FORMAT:
        raise KeyFileError("this is not a Safe Report Drop Box secret key file")
    if doc.get("version") != _FILE_VERSION:
        raise UnsupportedVersion(f"secret key file version {doc.get('version')!r} is not "
                                 "supported by this software; upgrade it")
    try:
        kind = doc["kind"]
        kdf = doc["kdf"]
        if kind not in ("agency", "staff") or kdf["algorithm"] != "argon2id13":
            raise KeyFileError("unknown key kind or key derivation in the secret key file")
        params = KdfParams(int(kdf["opslimit"]), int(kdf["memlimit"]))
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        box = base64.b64decode(doc["ciphertext"], validate=True)
        info = KeyFileInfo(kind, str(doc.get("name", "")), str(doc["public_key"]), params)
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as exc:
        raise KeyFileError("the secret key file is damaged "
                           "(a field is missing or invalid)") from exc
    if not (1 <= params.opslimit <= _MAX_OPSLIMIT and
            _MIN_MEMLIMIT <= params.memlimit <= _MAX_MEMLIMIT):
        raise KeyFileError("the secret key file asks for Argon2id costs outside the safe range")
    if len(salt) != sodium.crypto_pwhash_SALTBYTES or \
            len(nonce) != sodium.crypto_secretbox_NONCEBYTES or len(box) != 32 + 16:
        raise KeyFileError("the secret key file is damaged (wrong field lengths)")
    return info, salt, nonce, box


def unlock_secret_key(text: str, passphrase: str) -> SecretKey | StaffSecretKey:
    """Open a secret key file; raises :class:`WrongPassphrase` or :class:`KeyFileError`."""
    info, salt, nonce, box = _parse_key_file(text)
    try:
        raw = sodium.crypto_secretbox_open(box, nonce, _stretch(passphrase, salt, info.params))
    except nacl.exceptions.CryptoError as exc:
        raise WrongPassphrase() from exc
    key: SecretKey | StaffSecretKey = (
        SecretKey(raw) if info.kind == "agency" else StaffSecretKey(raw))
    if key.public_key.encode() != info.public_key:
        raise KeyFileError("the secret key does not match the public key recorded in its file")
    return key
