"""Return codes as the threat model describes them: 56.5 bits of uniform secret, stored only as
an Argon2id verifier under a salt of its own (dropbox_envelope.codes)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from argon2.low_level import Type, hash_secret_raw

from dropbox_envelope.codes import (
    CODE_DIGITS,
    CODE_KDF,
    derive_credentials,
    generate_code,
    new_credentials,
    parse_code,
    verify_code,
)
from dropbox_envelope.keys import TEST_KDF


def test_the_secret_has_56_5_bits() -> None:
    code = generate_code()
    assert CODE_DIGITS == 25 and len(code.locator) == 7 and len(code.secret) == 17
    assert math.log2(10) * len(code.secret) > 56.4
    assert parse_code(code.display()) == code


def test_every_digit_is_equally_likely() -> None:
    # A random byte becomes a digit only if it is below 250 (a plain byte % 10 would favour
    # 0-5): 25 byte values for each digit, and 250-255 are drawn again.
    assert set(Counter(b % 10 for b in range(250)).values()) == {25}
    skipped = bytes([250, 251, 252, 253, 254, 255, 7])
    code = generate_code(random=lambda n: (skipped * n)[:n])
    assert code.locator + code.secret == "7" * 24


def test_the_stored_verifier_is_argon2id_of_the_secret_under_the_sources_salt() -> None:
    # Checked against argon2-cffi (the reference implementation's bindings), not libsodium.
    code = generate_code()
    salt = bytes(range(16))
    credentials = derive_credentials(code, salt, TEST_KDF)
    stretched = hash_secret_raw(code.secret.encode(), salt, time_cost=TEST_KDF.opslimit,
                                memory_cost=TEST_KDF.memlimit // 1024, parallelism=1,
                                hash_len=32, type=Type.ID)
    assert credentials.verifier == hashlib.blake2b(b"srdb v1 code verifier", key=stretched,
                                                   digest_size=32).digest()
    # The production cost: 64 MiB and two passes per guess (about 0.1-0.2 s).
    assert (CODE_KDF.opslimit, CODE_KDF.memlimit) == (2, 64 * 1024 * 1024)


def test_each_source_has_its_own_salt() -> None:
    # The same code for two sources gives unrelated verifiers: one guess tests one source.
    code = generate_code()
    first, second = new_credentials(code, TEST_KDF), new_credentials(code, TEST_KDF)
    assert first.salt != second.salt and len(first.salt) == 16
    assert first.verifier != second.verifier
    assert verify_code(code, first.salt, TEST_KDF, first.verifier) == first.secret_key
