"""v3 onion service keys and client-authorisation keys, in the formats tor itself uses.

Pure logic (stdlib + PyNaCl), shared by the server (which publishes the services) and the staff
CLI (which reaches the staff service): bytes and text in, bytes and text out. Nothing here
touches files or talks to tor; the server's key store is ``dropbox_server.onion_store``.

Formats (tor's rend-spec-v3 and its on-disk files):

* Service identity key: tor's ``hs_ed25519_secret_key`` file = the 32-byte header
  ``"== ed25519v1-secret: type0 ==\\0\\0\\0"`` followed by the 64-byte *expanded* Ed25519 secret
  key (clamped SHA-512 of a 32-byte seed: scalar || PRF secret). The same 64 bytes, base64, are
  the ``ED25519-V3:<blob>`` key of the control command ``ADD_ONION``. Because the file is
  byte-for-byte tor's own, it can be put in a ``HiddenServiceDir`` and keeps the address.
  Tor's ``hs_ed25519_public_key`` is ``"== ed25519v1-public: type0 ==\\0\\0\\0"`` + 32 bytes.
* Onion address: ``base32(pubkey || SHA3-256(".onion checksum" || pubkey || 0x03)[:2] || 0x03)``,
  lower case, 56 characters, then ``.onion``.
* Client authorisation (x25519): the service holds ``descriptor:x25519:<base32 public key>``
  (tor's ``authorized_clients/NAME.auth``); the client holds either
  ``<address without .onion>:descriptor:x25519:<base32 private key>`` (tor's
  ``ClientOnionAuthDir/NAME.auth_private``, also what Tor Browser asks for) or
  ``x25519:<base64 private key>`` (the control command ``ONION_CLIENT_AUTH_ADD``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings as sodium

from .errors import OnionKeyError

__all__ = [
    "HS_PUBLIC_KEY_HEADER",
    "HS_SECRET_KEY_HEADER",
    "ClientAuthKey",
    "OnionServiceKey",
    "RandomSource",
    "encode_client_auth_public",
    "onion_address",
    "parse_client_auth_public",
    "parse_client_auth_secret",
    "parse_onion_address",
    "valid_client_name",
]

RandomSource = Callable[[int], bytes]

#: Header of tor's ``hs_ed25519_secret_key`` file (32 bytes: text, then NUL padding).
HS_SECRET_KEY_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
#: Header of tor's ``hs_ed25519_public_key`` file.
HS_PUBLIC_KEY_HEADER = b"== ed25519v1-public: type0 ==\x00\x00\x00"
_ONION_VERSION = b"\x03"
_ADDRESS_LEN = 56  # base32 of 32 + 2 + 1 bytes


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _b32decode(text: str) -> bytes:
    padded = text.strip().upper()
    padded += "=" * (-len(padded) % 8)
    try:
        return base64.b32decode(padded)
    except binascii.Error:
        raise OnionKeyError("not valid base32") from None


def onion_address(public_key: bytes) -> str:
    """The ``<56 chars>.onion`` address of an Ed25519 service identity public key."""
    if len(public_key) != 32:
        raise OnionKeyError("an onion service public key is 32 bytes")
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + _ONION_VERSION).digest()[:2]
    return _b32encode(public_key + checksum + _ONION_VERSION).lower() + ".onion"


def parse_onion_address(address: str) -> bytes:
    """The public key inside a v3 onion address (with or without ``.onion`` / ``http://``).

    Raises :class:`OnionKeyError` if the checksum or version byte is wrong, so a mistyped address
    is caught before it goes to tor.
    """
    text = address.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/", 1)[0].split(":", 1)[0]
    text = text.removesuffix(".onion").rsplit(".", 1)[-1]  # allow subdomains
    if len(text) != _ADDRESS_LEN:
        raise OnionKeyError(f"not a v3 onion address (expected {_ADDRESS_LEN} characters "
                            "before .onion)")
    raw = _b32decode(text)
    public_key, version = raw[:32], raw[34:]
    if version != _ONION_VERSION:
        raise OnionKeyError("not a v3 onion address (wrong version byte)")
    if onion_address(public_key) != text + ".onion":
        raise OnionKeyError("onion address checksum is wrong (mistyped?)")
    return public_key


@dataclass(frozen=True, repr=False)
class OnionServiceKey:
    """A v3 onion service identity key: the 64-byte expanded Ed25519 secret key."""

    expanded: bytes

    def __post_init__(self) -> None:
        if len(self.expanded) != 64:
            raise OnionKeyError("an expanded onion service key is 64 bytes")
        scalar = self.expanded[:32]
        # Tor writes clamped scalars only; anything else is not a key tor made (or ours).
        if scalar[0] & 7 or scalar[31] & 0x80 or not scalar[31] & 0x40:
            raise OnionKeyError("onion service key is not a clamped Ed25519 scalar")

    def __repr__(self) -> str:
        return f"OnionServiceKey({self.address})"

    @classmethod
    def generate(cls, random: RandomSource = os.urandom) -> OnionServiceKey:
        return cls.from_seed(random(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> OnionServiceKey:
        """The expanded key tor derives from a 32-byte Ed25519 seed (RFC 8032 §5.1.5)."""
        if len(seed) != 32:
            raise OnionKeyError("an Ed25519 seed is 32 bytes")
        h = bytearray(hashlib.sha512(seed).digest())
        h[0] &= 248
        h[31] &= 127
        h[31] |= 64
        return cls(bytes(h))

    @classmethod
    def from_tor_file(cls, data: bytes) -> OnionServiceKey:
        """Parse the content of tor's ``hs_ed25519_secret_key`` file."""
        if len(data) != 96 or data[:32] != HS_SECRET_KEY_HEADER:
            raise OnionKeyError("not a tor hs_ed25519_secret_key file (wrong header or length)")
        return cls(data[32:])

    def to_tor_file(self) -> bytes:
        return HS_SECRET_KEY_HEADER + self.expanded

    def to_tor_public_file(self) -> bytes:
        """The content of tor's ``hs_ed25519_public_key`` file for this key."""
        return HS_PUBLIC_KEY_HEADER + self.public_key

    @property
    def public_key(self) -> bytes:
        # The public key is scalar * B with the scalar used as is (it is already clamped).
        return sodium.crypto_scalarmult_ed25519_base_noclamp(self.expanded[:32])

    @property
    def address(self) -> str:
        return onion_address(self.public_key)

    @property
    def service_id(self) -> str:
        """The address without ``.onion``, as tor's control port names services."""
        return self.address.removesuffix(".onion")

    def add_onion_key(self) -> str:
        """The key argument of ``ADD_ONION`` (a secret: never log it)."""
        return "ED25519-V3:" + base64.b64encode(self.expanded).decode("ascii")


@dataclass(frozen=True, repr=False)
class ClientAuthKey:
    """One staff member's x25519 client-authorisation key pair (the secret half)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != 32:
            raise OnionKeyError("an x25519 client authorisation key is 32 bytes")

    def __repr__(self) -> str:
        return "ClientAuthKey(...)"

    @classmethod
    def generate(cls, random: RandomSource = os.urandom) -> ClientAuthKey:
        # Clamped like tor's curve25519_secret_key_generate, so the stored bytes are exactly
        # the scalar tor will use.
        raw = bytearray(random(32))
        raw[0] &= 248
        raw[31] &= 127
        raw[31] |= 64
        return cls(bytes(raw))

    @property
    def public(self) -> bytes:
        return sodium.crypto_scalarmult_base(self.secret)

    def service_line(self) -> str:
        """What the service keeps: tor's ``authorized_clients/NAME.auth`` line."""
        return "descriptor:x25519:" + encode_client_auth_public(self.public)

    def public_b32(self) -> str:
        """The ``ClientAuthV3=`` argument of ``ADD_ONION``."""
        return encode_client_auth_public(self.public)

    def auth_private_line(self, address: str) -> str:
        """For ``ClientOnionAuthDir/NAME.auth_private`` and Tor Browser's key prompt."""
        service_id = onion_address(parse_onion_address(address)).removesuffix(".onion")
        return f"{service_id}:descriptor:x25519:{_b32encode(self.secret)}"

    def control_key(self) -> str:
        """The key argument of ``ONION_CLIENT_AUTH_ADD``: ``x25519:<base64>``."""
        return "x25519:" + base64.b64encode(self.secret).decode("ascii")


def encode_client_auth_public(public: bytes) -> str:
    """Base32 form of an x25519 public key (``ClientAuthV3=`` of ``ADD_ONION``)."""
    if len(public) != 32:
        raise OnionKeyError("an x25519 public key is 32 bytes")
    return _b32encode(public)


def parse_client_auth_public(text: str) -> bytes:
    """The public key of a ``descriptor:x25519:<base32>`` line (or a bare base32 key)."""
    value = text.strip()
    if value.startswith("descriptor:"):
        parts = value.split(":")
        if len(parts) != 3 or parts[1] != "x25519":
            raise OnionKeyError("expected descriptor:x25519:<base32 public key>")
        value = parts[2]
    raw = _b32decode(value)
    if len(raw) != 32:
        raise OnionKeyError("an x25519 public key is 32 bytes")
    return raw


def parse_client_auth_secret(text: str) -> tuple[str | None, ClientAuthKey]:
    """Read a client-authorisation secret in any form ``staff add`` prints.

    Returns ``(service_id or None, key)``: ``<service_id>:descriptor:x25519:<base32>`` names the
    service; ``x25519:<base64>`` does not.
    """
    value = text.strip()
    if value.startswith("x25519:"):
        try:
            raw = base64.b64decode(value.removeprefix("x25519:"), validate=True)
        except binascii.Error:
            raise OnionKeyError("x25519:<key> is not valid base64") from None
        if len(raw) != 32:
            raise OnionKeyError("an x25519 client authorisation key is 32 bytes")
        return None, ClientAuthKey(raw)
    parts = value.split(":")
    if len(parts) == 4 and parts[1:3] == ["descriptor", "x25519"]:
        public = parse_onion_address(parts[0])
        raw = _b32decode(parts[3])
        if len(raw) != 32:
            raise OnionKeyError("an x25519 client authorisation key is 32 bytes")
        return onion_address(public).removesuffix(".onion"), ClientAuthKey(raw)
    raise OnionKeyError("expected <onion address>:descriptor:x25519:<base32 key> "
                        "or x25519:<base64 key>")


_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def valid_client_name(name: str) -> bool:
    """Staff names double as file names: letters, digits, ``_ . -``; at most 64 characters."""
    return bool(_CLIENT_NAME.fullmatch(name)) and ".." not in name
