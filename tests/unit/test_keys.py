"""Key text, fingerprints, secret key files, staff signatures and PADME (dropbox_envelope.keys,
dropbox_envelope.padding)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbox_envelope import (
    InvalidKey,
    KeyFileError,
    PublicKey,
    SecretKey,
    StaffPublicKey,
    StaffSecretKey,
    UnsupportedVersion,
    WrongPassphrase,
)
from dropbox_envelope.keys import (
    TEST_KDF,
    KdfParams,
    decode_public_key,
    fingerprint,
    inspect_secret_key,
    lock_secret_key,
    unlock_secret_key,
)
from dropbox_envelope.padding import padme

AGENCY = SecretKey.from_seed(hashlib.sha256(b"fingerprint test").digest())
STAFF = StaffSecretKey(hashlib.sha256(b"staff fingerprint test").digest())

# Known answers, computed once from the keys above and pinned.
AGENCY_TEXT = "srdb1-x25519-2nyc7rhutibbqhgmmuibszka5qbj5ldf7vjrdnoa4xpa5t565qdh5jd3r4"
AGENCY_FINGERPRINT = "77829 65302 27163 36401 03483 26096"
STAFF_TEXT = "srdb1-ed25519-7f4vt7bb2untur2xvkrvwwffatful5fv66ff3mwuedsm2lfyjl3qmhvg64"
STAFF_FINGERPRINT = "69314 47007 75232 93443 24957 07140"

B32 = "abcdefghijklmnopqrstuvwxyz234567"
FINGERPRINT_RE = re.compile(r"\d{5}( \d{5}){5}")
SEEDS = st.binary(min_size=32, max_size=32)


# --- public key text --------------------------------------------------------------------------

def spec_encode(prefix: str, raw: bytes) -> str:
    """docs/PROTOCOL.md §5.1, independently of the package."""
    check = hashlib.blake2b(prefix.encode() + raw, digest_size=32).digest()[:4]
    return prefix + base64.b32encode(raw + check).decode().rstrip("=").lower()


def spec_fingerprint(prefix: str, raw: bytes) -> str:
    """docs/PROTOCOL.md §5.2, independently of the package."""
    h = hashlib.blake2b(b"srdb1 fingerprint\x00" + prefix.encode() + raw, digest_size=30).digest()
    return " ".join(f"{int.from_bytes(h[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def test_known_answers() -> None:
    assert AGENCY.public_key.encode() == AGENCY_TEXT == str(AGENCY.public_key)
    assert AGENCY.public_key.fingerprint == AGENCY_FINGERPRINT
    assert STAFF.public_key.encode() == STAFF_TEXT == str(STAFF.public_key)
    assert STAFF.public_key.fingerprint == STAFF_FINGERPRINT
    assert spec_encode("srdb1-x25519-", AGENCY.public_key.raw) == AGENCY_TEXT
    assert spec_fingerprint("srdb1-ed25519-", STAFF.public_key.raw) == STAFF_FINGERPRINT


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS)
def test_public_key_round_trip(seed: bytes) -> None:
    public = SecretKey.from_seed(seed).public_key
    text = public.encode()
    assert text == spec_encode("srdb1-x25519-", public.raw)
    assert re.fullmatch(r"srdb1-x25519-[a-z2-7]{58}", text)
    assert PublicKey.decode(text) == public
    assert PublicKey.decode(f"  {text}\n") == public
    assert decode_public_key(text) == public
    staff = StaffSecretKey(seed).public_key
    assert re.fullmatch(r"srdb1-ed25519-[a-z2-7]{58}", staff.encode())
    assert StaffPublicKey.decode(staff.encode()) == staff
    assert decode_public_key(staff.encode()) == staff


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS)
def test_fingerprint_format(seed: bytes) -> None:
    public = SecretKey.from_seed(seed).public_key
    assert FINGERPRINT_RE.fullmatch(public.fingerprint)
    assert public.fingerprint == spec_fingerprint("srdb1-x25519-", public.raw)
    assert public.fingerprint == fingerprint("srdb1-x25519-", public.raw)
    assert FINGERPRINT_RE.fullmatch(StaffSecretKey(seed).public_key.fingerprint)


def test_fingerprint_depends_on_the_key_type() -> None:
    raw = AGENCY.public_key.raw
    assert PublicKey(raw).fingerprint != StaffPublicKey(raw).fingerprint


@pytest.mark.parametrize("text", [AGENCY_TEXT, STAFF_TEXT])
def test_every_single_character_typo_but_the_last_is_detected(text: str) -> None:
    """Any one character of the base32 body changed (except the last, see below) → InvalidKey."""
    body_start = text.rindex("-") + 1
    for pos in range(body_start, len(text) - 1):
        for char in B32:
            if char != text[pos]:
                with pytest.raises(InvalidKey):
                    decode_public_key(text[:pos] + char + text[pos + 1:])


@pytest.mark.parametrize("text", [AGENCY_TEXT, STAFF_TEXT])
def test_last_character_typo_changing_data_bits_is_detected(text: str) -> None:
    """The last of 58 characters carries 3 data bits and 2 unused bits; changes to data bits
    must be detected."""
    last = B32.index(text[-1])
    for char in B32:
        if B32.index(char) >> 2 != last >> 2:
            with pytest.raises(InvalidKey):
                decode_public_key(text[:-1] + char)


@pytest.mark.parametrize("text", [AGENCY_TEXT, STAFF_TEXT])
def test_last_character_typo_in_unused_bits_is_detected(text: str) -> None:
    last = B32.index(text[-1])
    for char in B32:
        if char != text[-1] and B32.index(char) >> 2 == last >> 2:
            with pytest.raises(InvalidKey):
                decode_public_key(text[:-1] + char)


@pytest.mark.parametrize("padding", ["=", "======"])
def test_padded_base32_is_refused(padding: str) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.decode(AGENCY_TEXT + padding)


@pytest.mark.parametrize("text", [
    "",
    "srdb1-x25519-",
    AGENCY_TEXT[:-1],
    AGENCY_TEXT + "a",
    AGENCY_TEXT + "aaaaaaaa",
    AGENCY_TEXT[:20] + "1" + AGENCY_TEXT[21:],  # not base32
    AGENCY_TEXT[:20] + "é" + AGENCY_TEXT[21:],
    AGENCY_TEXT[:20] + " " + AGENCY_TEXT[21:],
    "srdb2-x25519-" + AGENCY_TEXT[13:],
    "age1" + AGENCY_TEXT[13:],
    spec_encode("srdb1-x25519-", bytes(31)),
    spec_encode("srdb1-x25519-", bytes(33)),
])
def test_malformed_public_keys(text: str) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.decode(text)
    with pytest.raises(InvalidKey):
        decode_public_key(text)


def test_wrong_prefix() -> None:
    with pytest.raises(InvalidKey):
        PublicKey.decode(STAFF_TEXT)
    with pytest.raises(InvalidKey):
        StaffPublicKey.decode(AGENCY_TEXT)
    # The same key bytes under the other prefix fail the checksum (it covers the prefix).
    with pytest.raises(InvalidKey):
        decode_public_key("srdb1-ed25519-" + AGENCY_TEXT[len("srdb1-x25519-"):])


@pytest.mark.parametrize("cls", [PublicKey, SecretKey, StaffPublicKey, StaffSecretKey])
@pytest.mark.parametrize("size", [0, 31, 33])
def test_raw_key_sizes(cls: Any, size: int) -> None:
    with pytest.raises(InvalidKey):
        cls(bytes(size))


def test_secret_reprs_do_not_leak() -> None:
    assert AGENCY.raw.hex() not in repr(AGENCY)
    assert AGENCY_TEXT in repr(AGENCY)
    assert STAFF.seed.hex() not in repr(STAFF)


def test_generate_uses_the_random_source() -> None:
    seed = bytes(range(32))
    assert SecretKey.generate(lambda n: seed[:n]) == SecretKey.from_seed(seed)
    assert StaffSecretKey.generate(lambda n: seed[:n]).seed == seed
    assert SecretKey.generate() != SecretKey.generate()


# --- staff signatures -------------------------------------------------------------------------

def test_staff_sign_verify() -> None:
    message = b"srdb-staff-v1\nGET\n/api/reports\n1700000000\nnonce\n" + b"0" * 64
    signature = STAFF.sign(message)
    assert len(signature) == 64
    public = STAFF.public_key
    assert public.verify(message, signature)
    assert not public.verify(message + b"x", signature)
    assert not public.verify(message[:-1], signature)
    for i in (0, 31, 32, 63):
        tampered = bytearray(signature)
        tampered[i] ^= 0x01
        assert not public.verify(message, bytes(tampered))
    assert not public.verify(message, signature[:63])
    assert not public.verify(message, signature + b"\x00")
    assert not public.verify(message, b"")
    other = StaffSecretKey(bytes(32))
    assert not other.public_key.verify(message, signature)
    assert not public.verify(message, other.sign(message))


@settings(max_examples=50, deadline=None)
@given(seed=SEEDS, message=st.binary(max_size=200))
def test_staff_sign_verify_property(seed: bytes, message: bytes) -> None:
    key = StaffSecretKey(seed)
    signature = key.sign(message)
    assert key.public_key.verify(message, signature)
    assert not key.public_key.verify(message + b"\x00", signature)


# --- secret key files -------------------------------------------------------------------------

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def agency_file() -> str:
    return lock_secret_key(AGENCY, PASSPHRASE, name="Agency 2026", params=TEST_KDF)


def edit(text: str, change: Any) -> str:
    document = json.loads(text)
    change(document)
    return json.dumps(document)


def test_lock_unlock_agency(agency_file: str) -> None:
    document = json.loads(agency_file)
    assert document["format"] == "srdb-secret-key" and document["version"] == 1
    assert document["kind"] == "agency" and document["name"] == "Agency 2026"
    assert document["public_key"] == AGENCY_TEXT
    assert AGENCY.raw.hex() not in agency_file
    assert base64.b64encode(AGENCY.raw).decode() not in agency_file
    assert unlock_secret_key(agency_file, PASSPHRASE) == AGENCY
    info = inspect_secret_key(agency_file)
    assert (info.kind, info.name, info.public_key, info.params) == (
        "agency", "Agency 2026", AGENCY_TEXT, TEST_KDF)


def test_lock_unlock_staff() -> None:
    text = lock_secret_key(STAFF, "pw", params=TEST_KDF)
    key = unlock_secret_key(text, "pw")
    assert isinstance(key, StaffSecretKey) and key.seed == STAFF.seed
    assert json.loads(text)["kind"] == "staff"


def test_passphrase_is_nfc_normalised() -> None:
    composed = "caf\u00e9 passphrase"
    text = lock_secret_key(AGENCY, composed, params=TEST_KDF)
    assert unlock_secret_key(text, unicodedata.normalize("NFD", composed)) == AGENCY


def test_lock_uses_the_random_source() -> None:
    text = lock_secret_key(AGENCY, "pw", params=TEST_KDF, random=lambda n: bytes(n))
    document = json.loads(text)
    assert base64.b64decode(document["kdf"]["salt"]) == bytes(16)
    assert base64.b64decode(document["nonce"]) == bytes(24)
    assert lock_secret_key(AGENCY, "pw", params=TEST_KDF) != lock_secret_key(
        AGENCY, "pw", params=TEST_KDF)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyFileError):
        lock_secret_key(AGENCY, "", params=TEST_KDF)


@pytest.mark.parametrize("wrong", ["", "Correct horse battery staple", PASSPHRASE + " "])
def test_wrong_passphrase(agency_file: str, wrong: str) -> None:
    with pytest.raises(WrongPassphrase):
        unlock_secret_key(agency_file, wrong)


def test_tampered_ciphertext_is_a_wrong_passphrase(agency_file: str) -> None:
    def flip(document: dict[str, Any]) -> None:
        box = bytearray(base64.b64decode(document["ciphertext"]))
        box[0] ^= 1
        document["ciphertext"] = base64.b64encode(bytes(box)).decode()

    with pytest.raises(WrongPassphrase):
        unlock_secret_key(edit(agency_file, flip), PASSPHRASE)


def _set(path: str, value: Any) -> Any:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[part]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return change


_DELETE = object()


@pytest.mark.parametrize("path, value", [
    ("format", "age-secret-key"), ("format", _DELETE), ("kind", "root"), ("kind", _DELETE),
    ("kdf.algorithm", "scrypt"), ("kdf", _DELETE), ("kdf", "argon2id13"), ("nonce", _DELETE),
    ("nonce", "not base64!"), ("nonce", base64.b64encode(bytes(23)).decode()),
    ("kdf.salt", base64.b64encode(bytes(15)).decode()), ("kdf.salt", 16),
    ("ciphertext", base64.b64encode(bytes(47)).decode()), ("ciphertext", None),
    ("public_key", _DELETE), ("kdf.opslimit", "many"), ("kdf.memlimit", None),
])
def test_damaged_key_file(agency_file: str, path: str, value: Any) -> None:
    with pytest.raises(KeyFileError) as info:
        unlock_secret_key(edit(agency_file, _set(path, value)), PASSPHRASE)
    assert not isinstance(info.value, WrongPassphrase)


@pytest.mark.parametrize("text", ["", "not json", "[]", '"srdb-secret-key"', "{}", "null",
                                  '{"format": "srdb-secret-key"', "\ud800"])
def test_key_file_not_json_object(text: str) -> None:
    with pytest.raises(KeyFileError) as info:
        unlock_secret_key(text, PASSPHRASE)
    assert not isinstance(info.value, WrongPassphrase)


@pytest.mark.parametrize("version", [2, 0, "1", None, _DELETE])
def test_key_file_unknown_version(agency_file: str, version: Any) -> None:
    with pytest.raises(UnsupportedVersion):
        unlock_secret_key(edit(agency_file, _set("version", version)), PASSPHRASE)
    with pytest.raises(UnsupportedVersion):
        inspect_secret_key(edit(agency_file, _set("version", version)))


@pytest.mark.parametrize("opslimit, memlimit", [
    (0, TEST_KDF.memlimit), (65, TEST_KDF.memlimit), (-1, TEST_KDF.memlimit),
    (1, 8 * 1024 * 1024 - 1), (1, 4 * 1024 * 1024 * 1024 + 1), (1, 0), (10**12, 10**15),
])
def test_key_file_argon2_params_out_of_range(agency_file: str, opslimit: int,
                                             memlimit: int) -> None:
    def change(document: dict[str, Any]) -> None:
        document["kdf"]["opslimit"] = opslimit
        document["kdf"]["memlimit"] = memlimit

    with pytest.raises(KeyFileError) as info:
        unlock_secret_key(edit(agency_file, change), PASSPHRASE)
    assert not isinstance(info.value, WrongPassphrase)


def test_key_file_argon2_params_at_the_limits_are_read() -> None:
    text = lock_secret_key(AGENCY, "pw", params=KdfParams(1, 8 * 1024 * 1024))
    assert unlock_secret_key(text, "pw") == AGENCY
    high = edit(text, _set("kdf.opslimit", 64))
    assert inspect_secret_key(high).params == KdfParams(64, 8 * 1024 * 1024)
    huge = edit(text, _set("kdf.memlimit", 4 * 1024 * 1024 * 1024))
    assert inspect_secret_key(huge).params.memlimit == 4 * 1024 * 1024 * 1024


def test_key_file_public_key_mismatch(agency_file: str) -> None:
    other = SecretKey.from_seed(bytes(32)).public_key.encode()
    with pytest.raises(KeyFileError) as info:
        unlock_secret_key(edit(agency_file, _set("public_key", other)), PASSPHRASE)
    assert not isinstance(info.value, WrongPassphrase)


def test_key_file_kind_mismatch(agency_file: str) -> None:
    """An agency secret relabelled as staff yields a different public key: refused."""
    with pytest.raises(KeyFileError) as info:
        unlock_secret_key(edit(agency_file, _set("kind", "staff")), PASSPHRASE)
    assert not isinstance(info.value, WrongPassphrase)


@pytest.mark.parametrize("hostile", [
    pytest.param(lambda _f: '{"format": "srdb-secret-key", "version": 1, "n": ' + "1" * 5000
                 + "}", id="huge-integer"),
    pytest.param(lambda _f: "[" * 100_000 + "]" * 100_000, id="deep-nesting"),
    pytest.param(lambda f: f.replace('"opslimit": 1,', '"opslimit": Infinity,'),
                 id="opslimit-infinity"),
])
def test_hostile_key_file_raises_key_file_error(agency_file: str, hostile: Any) -> None:
    text = hostile(agency_file)
    assert text != agency_file
    with pytest.raises(KeyFileError):
        unlock_secret_key(text, PASSPHRASE)


# --- PADME ------------------------------------------------------------------------------------

@pytest.mark.parametrize("length, padded", [
    (0, 0), (1, 1), (2, 2), (3, 3), (9, 10), (100, 104), (1000, 1024), (65536, 65536),
    (65537, 67584), (65436, 65536), (63488, 63488), (63489, 65536),
])
def test_padme_known_answers(length: int, padded: int) -> None:
    assert padme(length) == padded


def test_padme_negative() -> None:
    with pytest.raises(ValueError):
        padme(-1)


@settings(max_examples=2000, deadline=None)
@given(length=st.integers(2, 10**7))
def test_padme_properties(length: int) -> None:
    padded = padme(length)
    assert padded >= length
    assert padded - length <= 0.12 * length
    assert padme(padded) == padded
    assert padme(length - 1) <= padded
    # Only the top floor(log2(floor(log2 L))) + 1 bits of the result may be set.
    e = length.bit_length() - 1
    kept = e.bit_length()
    assert padded % (1 << (e - kept)) == 0


def test_padme_worst_overhead_exhaustively_below_70000() -> None:
    """The worst case is L = 129 -> 144 (15/129 = 11.6 %), slightly more than the 11.1 % the
    padding docstring and PROTOCOL.md §4 state (that is L = 9 -> 10); beyond 70000 the bound
    only falls (2**(E - S) / 2**E shrinks as E grows)."""
    worst = max(range(2, 70_000), key=lambda n: (padme(n) - n) / n)
    assert (worst, padme(worst)) == (129, 144)
    assert (padme(worst) - worst) / worst < 0.12
