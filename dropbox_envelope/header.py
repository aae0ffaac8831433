"""The envelope header: magic, version, recipient stanzas, header MAC (docs/PROTOCOL.md §2).

Byte layout::

    magic      8   "SRDB-ENV"
    version    1   0x01
    count      1   number of stanzas, 1..16
    stanza*        type (1) | length (2, big-endian) | body (length)
    mac       32   BLAKE2b-256 keyed with mac_key over every header byte before it

Stanza type 0x01 (X25519): body = crypto_box_seal(file_key, recipient_pk), 80 bytes.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from .errors import HeaderCorrupted, LimitExceeded, NotForMe, UnsupportedVersion
from .keys import PublicKey, SecretKey

__all__ = [
    "FILE_KEY_BYTES",
    "MAGIC",
    "MAX_HEADER_BYTES",
    "MAX_STANZAS",
    "Header",
    "HeaderParser",
    "build_header",
    "derive_keys",
]

MAGIC = b"SRDB-ENV"
VERSION = 1
MAX_STANZAS = 16
STANZA_X25519 = 0x01
X25519_STANZA_BYTES = 32 + sodium.crypto_box_SEALBYTES  # 80
MAX_STANZA_BODY = 1024
MAC_BYTES = 32
FILE_KEY_BYTES = 32
MAX_HEADER_BYTES = 10 + MAX_STANZAS * (3 + MAX_STANZA_BODY) + MAC_BYTES

_PAYLOAD_KEY_LABEL = b"srdb v1 payload key"
_MAC_KEY_LABEL = b"srdb v1 header mac key"


def _keyed_blake2b(key: bytes, message: bytes) -> bytes:
    # crypto_generichash with a key and no salt/personalisation: identical in libsodium-wrappers.
    return bytes(sodium.crypto_generichash_blake2b_salt_personal(message, digest_size=32, key=key))


def derive_keys(file_key: bytes) -> tuple[bytes, bytes]:
    """(payload_key, mac_key) from the file key, domain-separated by label."""
    return (_keyed_blake2b(file_key, _PAYLOAD_KEY_LABEL), _keyed_blake2b(file_key, _MAC_KEY_LABEL))


@dataclass(frozen=True)
class Stanza:
    type: int
    body: bytes


@dataclass(frozen=True)
class Header:
    """A parsed, not yet authenticated, header."""

    stanzas: tuple[Stanza, ...]
    signed_bytes: bytes  # everything the MAC covers
    mac: bytes

    @property
    def size(self) -> int:
        return len(self.signed_bytes) + MAC_BYTES

    def unwrap(self, identities: Sequence[SecretKey]) -> bytes:
        """Find the file key with one of ``identities`` and verify the MAC; return the file key."""
        for stanza in self.stanzas:
            if stanza.type != STANZA_X25519 or len(stanza.body) != X25519_STANZA_BYTES:
                continue
            for identity in identities:
                try:
                    file_key = sodium.crypto_box_seal_open(
                        stanza.body, identity.public_key.raw, identity.raw)
                except nacl.exceptions.CryptoError:
                    continue
                if len(file_key) != FILE_KEY_BYTES:
                    raise HeaderCorrupted("a recipient stanza holds a file key of the wrong size")
                _payload_key, mac_key = derive_keys(file_key)
                if not hmac.compare_digest(_keyed_blake2b(mac_key, self.signed_bytes), self.mac):
                    raise HeaderCorrupted("the envelope header was altered "
                                          "(its MAC does not match)")
                return bytes(file_key)
        raise NotForMe()


def build_header(recipients: Sequence[PublicKey], file_key: bytes) -> bytes:
    """Serialise a header sealing ``file_key`` to every recipient."""
    if not recipients:
        raise ValueError("an envelope needs at least one recipient")
    if len(recipients) > MAX_STANZAS:
        raise LimitExceeded(f"at most {MAX_STANZAS} recipient keys per envelope")
    if len(set(recipients)) != len(recipients):
        raise ValueError("the same recipient key is listed twice")
    parts = [MAGIC, bytes([VERSION, len(recipients)])]
    for recipient in recipients:
        body = sodium.crypto_box_seal(file_key, recipient.raw)
        parts.append(struct.pack(">BH", STANZA_X25519, len(body)) + body)
    signed = b"".join(parts)
    _payload_key, mac_key = derive_keys(file_key)
    return signed + _keyed_blake2b(mac_key, signed)


class HeaderParser:
    """Incremental parser: feed bytes until :meth:`feed` returns a :class:`Header`.

    It needs no key, so the server uses it to check an upload's structure.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[Header | None, bytes]:
        """Add bytes; return (header or None, the bytes after the header)."""
        self._buf += data
        result = self._try_parse()
        if result is None:
            if len(self._buf) > MAX_HEADER_BYTES:
                raise HeaderCorrupted("the envelope header is too long")
            return None, b""
        header, used = result
        rest = bytes(self._buf[used:])
        self._buf.clear()
        return header, rest

    def _try_parse(self) -> tuple[Header, int] | None:
        buf = self._buf
        if len(buf) < 8:
            if not MAGIC.startswith(bytes(buf)):
                raise HeaderCorrupted("this is not an envelope (wrong magic bytes)")
            return None
        if bytes(buf[:8]) != MAGIC:
            raise HeaderCorrupted("this is not an envelope (wrong magic bytes)")
        if len(buf) < 10:
            return None
        if buf[8] != VERSION:
            raise UnsupportedVersion(f"envelope format version {buf[8]} is not supported by "
                                     "this software; upgrade it")
        count = buf[9]
        if not 1 <= count <= MAX_STANZAS:
            raise HeaderCorrupted(f"the header lists {count} recipients "
                                  f"(allowed: 1 to {MAX_STANZAS})")
        pos = 10
        stanzas = []
        for _ in range(count):
            if len(buf) < pos + 3:
                return None
            stype, length = struct.unpack_from(">BH", buf, pos)
            if length > MAX_STANZA_BODY:
                raise HeaderCorrupted("a recipient stanza is too long")
            if stype == STANZA_X25519 and length != X25519_STANZA_BYTES:
                raise HeaderCorrupted("an X25519 recipient stanza has the wrong length")
            if len(buf) < pos + 3 + length:
                return None
            stanzas.append(Stanza(stype, bytes(buf[pos + 3:pos + 3 + length])))
            pos += 3 + length
        if len(buf) < pos + MAC_BYTES:
            return None
        header = Header(tuple(stanzas), bytes(buf[:pos]), bytes(buf[pos:pos + MAC_BYTES]))
        return header, pos + MAC_BYTES
