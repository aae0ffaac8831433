"""Return codes: how a source comes back without an account (docs/PROTOCOL.md §9).

A code is 25 digits shown in five groups of five::

    LLLLLLL SSSSSSSSSSSSSSSSS C
    locator secret (17 digits, 56.5 bits)  Damm check digit

The locator is public and finds the source's row; the secret never leaves the person's hands
except in the request that uses it. The server stores, per source, a random salt, an Argon2id
verifier and the X25519 public key for replies; the matching secret key is re-derived from the
code each time the person logs in. A per-source salt means a stolen database lets an attacker
test one guess against one source at a time, never against all of them at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import nacl.bindings as sodium

from .errors import InvalidCode
from .keys import KdfParams, PublicKey, RandomSource, SecretKey

__all__ = [
    "CODE_DIGITS",
    "CODE_KDF",
    "MAX_CODE_INPUT",
    "Code",
    "SourceCredentials",
    "derive_credentials",
    "generate_code",
    "parse_code",
    "verify_code",
]

LOCATOR_DIGITS = 7
SECRET_DIGITS = 17
CODE_DIGITS = LOCATOR_DIGITS + SECRET_DIGITS + 1
MAX_CODE_INPUT = 64  # characters; anything longer is refused before any hashing
CODE_KDF = KdfParams(opslimit=2, memlimit=64 * 1024 * 1024)
"""~0.1-0.2 s per attempt; the server runs these in a small bounded executor."""

SALT_BYTES = 16
_IGNORED = re.compile(r"[\s\-_.]+")

# Damm's quasigroup of order 10: catches every single-digit error and every transposition of
# adjacent digits, which is what people get wrong when copying long numbers.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm(digits: str) -> int:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


@dataclass(frozen=True, repr=False)
class Code:
    """A parsed return code."""

    locator: str
    secret: str

    def __repr__(self) -> str:
        return f"Code(locator={self.locator!r}, secret=<hidden>)"

    @property
    def digits(self) -> str:
        body = self.locator + self.secret
        return body + str(damm(body))

    def display(self) -> str:
        """Five groups of five digits."""
        d = self.digits
        return " ".join(d[i:i + 5] for i in range(0, CODE_DIGITS, 5))


def _random_digits(count: int, random: RandomSource) -> str:
    # Rejection sampling on bytes keeps every digit uniform.
    out: list[str] = []
    while len(out) < count:
        for byte in random(count * 2):
            if byte < 250 and len(out) < count:
                out.append(str(byte % 10))
    return "".join(out)


def generate_code(random: RandomSource = os.urandom) -> Code:
    return Code(_random_digits(LOCATOR_DIGITS, random), _random_digits(SECRET_DIGITS, random))


def parse_code(text: str) -> Code:
    """Parse what a person typed. Spaces, dashes and dots are ignored; raises InvalidCode."""
    if len(text) > MAX_CODE_INPUT:
        raise InvalidCode("This return code is too long. It has 25 digits.")
    digits = _IGNORED.sub("", text)
    if not digits.isascii() or not digits.isdigit():
        raise InvalidCode("A return code has only digits (0-9).")
    if len(digits) != CODE_DIGITS:
        raise InvalidCode(f"A return code has 25 digits; this one has {len(digits)}.")
    if damm(digits) != 0:
        raise InvalidCode("This return code has a typing mistake. Check each digit.")
    return Code(digits[:LOCATOR_DIGITS], digits[LOCATOR_DIGITS:-1])


@dataclass(frozen=True, repr=False)
class SourceCredentials:
    """What the server stores for a source (``salt``, ``verifier``, ``public_key``) and the
    secret key it may hold in memory during a logged-in session only."""

    salt: bytes
    params: KdfParams
    verifier: bytes
    secret_key: SecretKey

    @property
    def public_key(self) -> PublicKey:
        return self.secret_key.public_key


def derive_credentials(code: Code, salt: bytes, params: KdfParams = CODE_KDF) -> SourceCredentials:
    """Run Argon2id on the code's secret part (slow: call it from a worker thread)."""
    if len(salt) != SALT_BYTES:
        raise ValueError("salt must be 16 bytes")
    stretched = bytes(sodium.crypto_pwhash_alg(
        32, code.secret.encode("ascii"), salt, params.opslimit, params.memlimit,
        sodium.crypto_pwhash_ALG_ARGON2ID13))
    verifier = hashlib.blake2b(b"srdb v1 code verifier", key=stretched, digest_size=32).digest()
    seed = hashlib.blake2b(b"srdb v1 source reply key", key=stretched, digest_size=32).digest()
    return SourceCredentials(salt, params, verifier, SecretKey.from_seed(seed))


def new_credentials(code: Code, params: KdfParams = CODE_KDF,
                    random: RandomSource = os.urandom) -> SourceCredentials:
    return derive_credentials(code, random(SALT_BYTES), params)


def verify_code(code: Code, salt: bytes, params: KdfParams, verifier: bytes) -> SecretKey:
    """Return the source's reply secret key if ``code`` matches ``verifier``; else InvalidCode."""
    creds = derive_credentials(code, salt, params)
    if not hmac.compare_digest(creds.verifier, verifier):
        raise InvalidCode("This return code is not known here. Check each digit.")
    return creds.secret_key
