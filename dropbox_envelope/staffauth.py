"""Signed staff requests (docs/PROTOCOL.md §10): what is signed, and how it is checked.

Each request to the staff API carries four headers::

    X-SRDB-Key        the staff member's public key text (srdb1-ed25519-...)
    X-SRDB-Timestamp  Unix seconds when the request was signed
    X-SRDB-Nonce      32 random hex digits, never reused
    X-SRDB-Signature  base64 Ed25519 signature of the canonical string below

    srdb-staff-v1 \\n METHOD \\n PATH?QUERY \\n TIMESTAMP \\n NONCE \\n SHA256(BODY) hex

The server accepts a timestamp within ``window`` seconds of its clock, and no earlier than its
own start (so nonces need to be remembered in memory only, never on disk).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass

from .errors import EnvelopeError, InvalidKey
from .keys import RandomSource, StaffPublicKey, StaffSecretKey

__all__ = [
    "API_PREFIX",
    "EMPTY_BODY_SHA256",
    "HEADER_BODY_SHA256",
    "MAX_REPLY_BYTES",
    "BadSignature",
    "NonceCache",
    "SignedHeaders",
    "canonical_request",
    "sign_request",
    "verify_request",
]

EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
_NONCE = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
HEADER_KEY = "X-SRDB-Key"
HEADER_TIMESTAMP = "X-SRDB-Timestamp"
HEADER_NONCE = "X-SRDB-Nonce"
HEADER_SIGNATURE = "X-SRDB-Signature"
HEADER_BODY_SHA256 = "X-SRDB-Body-SHA256"
"""Declared SHA-256 (hex) of a streamed request body; covered by the signature."""
API_PREFIX = "/staff/v1"
MAX_REPLY_BYTES = 8 * 1024 * 1024
"""A reply is text and perhaps a document or two; sources read it in Tor Browser."""


class BadSignature(EnvelopeError):
    """The staff request's signature is missing, invalid, expired or replayed."""


def canonical_request(method: str, path_qs: str, timestamp: int, nonce: str,
                      body_sha256: str) -> bytes:
    if "\n" in method or "\n" in path_qs:
        raise BadSignature("newlines are not allowed in the method or path")
    return "\n".join(["srdb-staff-v1", method.upper(), path_qs, str(timestamp), nonce,
                      body_sha256]).encode("utf-8")


@dataclass(frozen=True)
class SignedHeaders:
    key: str
    timestamp: int
    nonce: str
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {HEADER_KEY: self.key, HEADER_TIMESTAMP: str(self.timestamp),
                HEADER_NONCE: self.nonce, HEADER_SIGNATURE: self.signature}


def sign_request(key: StaffSecretKey, method: str, path_qs: str, body_sha256: str, *,
                 now: int, random: RandomSource = os.urandom) -> SignedHeaders:
    nonce = random(16).hex()
    message = canonical_request(method, path_qs, now, nonce, body_sha256)
    signature = base64.b64encode(key.sign(message)).decode("ascii")
    return SignedHeaders(key.public_key.encode(), now, nonce, signature)


class NonceCache:
    """Nonces seen within the validity window, bounded in size (oldest forgotten first)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max = max_entries

    def add(self, nonce: str, expires: int, now: int) -> bool:
        """Record ``nonce``; False if it was already seen (a replay)."""
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry >= now and len(self._seen) < self._max:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return False
        self._seen[nonce] = expires
        return True


def verify_request(headers: dict[str, str], method: str, path_qs: str, body_sha256: str, *,
                   authorised: dict[str, str], nonces: NonceCache, now: int, not_before: int,
                   window: int = 300) -> str:
    """Check a staff request; return the staff member's name or raise :class:`BadSignature`.

    ``authorised`` maps public key text to staff name. ``not_before`` is the server's start time.
    """
    try:
        key_text = headers[HEADER_KEY]
        timestamp = int(headers[HEADER_TIMESTAMP])
        nonce = headers[HEADER_NONCE]
        signature = base64.b64decode(headers[HEADER_SIGNATURE], validate=True)
    except (KeyError, ValueError, binascii.Error) as exc:
        raise BadSignature("the request is not signed (staff headers missing or malformed)") \
            from exc
    name = authorised.get(key_text)
    if name is None:
        raise BadSignature("this staff key is not authorised on this server")
    if not _NONCE.fullmatch(nonce) or not _SHA256.fullmatch(body_sha256):
        raise BadSignature("malformed nonce or body hash")
    if timestamp < not_before or abs(now - timestamp) > window:
        raise BadSignature("the signature has expired (or the clocks differ); sign it again")
    try:
        public = StaffPublicKey.decode(key_text)
    except InvalidKey as exc:
        raise BadSignature("the staff key is malformed") from exc
    if not public.verify(canonical_request(method, path_qs, timestamp, nonce, body_sha256),
                         signature):
        raise BadSignature("the signature does not match the request")
    if not nonces.add(nonce, timestamp + window, now):
        raise BadSignature("this signed request was already used (replay)")
    return name
