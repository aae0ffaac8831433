"""The at-rest wrapping format (docs/PROTOCOL.md §11), through ``dropbox_envelope.atrest``.

Known answers are checked against an independent encoder written from the spec in this file
(straight PyNaCl calls), with pinned keys and nonce prefixes, so the module and the spec agree
byte for byte; then every reject rule, and random-access reads of every range shape.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct

import nacl.bindings as sodium
import pytest

from dropbox_envelope import atrest
from dropbox_envelope.atrest import (
    BLOCK_SIZE,
    CURRENT,
    HEADER_SIZE,
    MAX_HEADER_SIZE,
    SUITES,
    TAG_SIZE,
    VERSION,
    WRAPPED_BLOCK_SIZE,
    Layout,
    Unwrapper,
    Wrapper,
    hardware_aes,
    new_wrap_key,
    suite_of,
    unwrap,
    wrap,
    writing_suite,
)
from dropbox_envelope.errors import UnsupportedVersion, WrappedFileCorrupted

KEY = bytes(range(32))
PREFIXES = {1: bytes(range(100, 116)), 2: bytes(range(100, 124))}
PREFIX = PREFIXES[VERSION]
VERSIONS = sorted(PREFIXES)


def fixed(data: bytes):  # type: ignore[no-untyped-def]
    """A RandomSource that returns ``data`` (the nonce prefix)."""
    def source(n: int) -> bytes:
        assert n == len(data)
        return data
    return source


def spec_wrap(key: bytes, prefix: bytes, plain: bytes, version: int = 2) -> bytes:
    """§11 written out independently of the module: version 2 (AEGIS-256, 24-byte prefix) or
    1 (XChaCha20-Poly1305, 16-byte prefix)."""
    seal = {1: sodium.crypto_aead_xchacha20poly1305_ietf_encrypt,
            2: sodium.crypto_aead_aegis256_encrypt}[version]
    assert len(prefix) == {1: 16, 2: 24}[version]
    header = b"SRDB-ATR" + bytes([version]) + prefix
    pieces = [plain[i:i + 65536] for i in range(0, len(plain), 65536)] or [b""]
    out = [header]
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        ad = header + struct.pack(">Q", i) + (b"\x01" if final else b"\x00")
        nonce = prefix + struct.pack(">Q", i)
        out.append(seal(piece, ad, nonce, key))
    return b"".join(out)


SIZES = [0, 1, 100, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE,
         3 * BLOCK_SIZE + 17]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", SIZES)
def test_matches_the_spec_byte_for_byte(size: int, version: int) -> None:
    plain = hashlib.shake_256(b"plain").digest(size) if size else b""
    prefix = PREFIXES[version]
    wrapped = wrap(KEY, plain, random=fixed(prefix), version=version)
    assert wrapped == spec_wrap(KEY, prefix, plain, version)
    suite = SUITES[version]
    assert len(wrapped) == Layout.for_plain(size, suite).wrapped_size
    assert Layout.for_wrapped(len(wrapped), suite) == Layout.for_plain(size, suite)
    assert Layout.of_file(wrapped[:MAX_HEADER_SIZE], len(wrapped)) == Layout.for_plain(size, suite)
    assert unwrap(KEY, wrapped) == plain


def test_the_server_writes_aegis256_where_the_cpu_has_aes_and_reads_both() -> None:
    expected = 2 if hardware_aes() else 1
    assert expected == VERSION and CURRENT is SUITES[expected]
    sizes = {2: (33, BLOCK_SIZE + 32), 1: (25, BLOCK_SIZE + 16)}
    assert sizes[expected] == (HEADER_SIZE, WRAPPED_BLOCK_SIZE)
    assert wrap(KEY, b"x")[:9] == b"SRDB-ATR" + bytes([expected])
    assert unwrap(KEY, spec_wrap(KEY, PREFIXES[2], PLAIN, 2)) == PLAIN


class _NoAes:
    """Stands in for libsodium's cffi module on a CPU without AES instructions."""

    @staticmethod
    def crypto_aead_aes256gcm_is_available() -> int:
        return 0


@pytest.mark.parametrize("lib", [_NoAes(), None], ids=["no AES instructions", "no cffi module"])
def test_without_aes_instructions_version_1_is_written(
        lib: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atrest, "_lib", lib)
    assert not atrest.hardware_aes()
    assert writing_suite() is SUITES[1]
    old = spec_wrap(KEY, PREFIXES[1], PLAIN, 1)
    assert suite_of(old).version == 1
    assert unwrap(KEY, old) == PLAIN
    assert read_range(old, BLOCK_SIZE - 3, BLOCK_SIZE + 3) == PLAIN[BLOCK_SIZE - 3:BLOCK_SIZE + 4]


def test_libsodium_aegis256_is_the_cfrg_aegis256() -> None:
    """Test vector 1 of draft-irtf-cfrg-aegis-aead (AEGIS-256, 256-bit tag): the construction
    §11 names is the standard one, not a variant that only this binding speaks."""
    key = bytes.fromhex("1001" + "00" * 30)
    nonce = bytes.fromhex("100002" + "00" * 29)
    sealed = sodium.crypto_aead_aegis256_encrypt(bytes(16), b"", nonce, key)
    assert sealed.hex() == ("754fc3d8c973246dcc6d741412a4b236"
                            "1181a1d18091082bf0266f66297d167d2e68b845f61a3b0527d31fc7b7b89f13")


def test_known_answer() -> None:
    """Pinned output for a pinned key, prefix and plaintext (regenerate only with a new version)."""
    plain = b"SRDB-ENV" + bytes(70_000)
    wrapped = wrap(KEY, plain, random=fixed(PREFIXES[2]), version=2)
    assert wrapped[:33].hex() == "535244422d41545202" + PREFIXES[2].hex()
    # Computed once with this module and checked against spec_wrap above.
    assert hashlib.sha256(wrapped).hexdigest() == \
        "ac5c3384197518df9990a164c2367d9936f350164432c1af52710ad306d6cef8"
    assert wrapped[33:33 + 32].hex() == \
        "ef0e299eec55c3a29e2cd62a65f8e2aebdaa5817f231b33af8bd402689f8e554"  # block 0, 32 bytes
    assert wrapped[-32:].hex() == \
        "7932fad7195dff910106e16151fe338aa7ba4bc7fc3635f05fe09faa03d5e682"  # the final tag
    assert len(wrapped) == 33 + 70_008 + 2 * 32


def test_known_answer_version_1() -> None:
    """Version 1 (XChaCha20-Poly1305), which servers before AEGIS-256 wrote: still read."""
    plain = b"SRDB-ENV" + bytes(70_000)
    wrapped = wrap(KEY, plain, random=fixed(PREFIXES[1]), version=1)
    assert wrapped[:25].hex() == "535244422d41545201" + PREFIXES[1].hex()
    assert hashlib.sha256(wrapped).hexdigest() == \
        "1f51da14417959f89db12587812e41be01680f792517235bce888d5389073d8c"
    assert wrapped[25:25 + 16].hex() == "3ac132b25c102447e7aa215c18c2de3b"
    assert wrapped[-16:].hex() == "fcd8bb44e6490d342ac252bb826acfbd"  # the final block's tag
    assert len(wrapped) == 25 + 70_008 + 2 * 16
    assert unwrap(KEY, wrapped) == plain


@pytest.mark.parametrize("cuts", [[1], [7, 65_529], [65_536], [65_537], [1000] * 200,
                                  [200_000], [65_536, 65_536, 1]])
def test_streaming_writes_equal_one_write(cuts: list[int]) -> None:
    plain = os.urandom(sum(cuts))
    writer = Wrapper(KEY, random=fixed(PREFIX))
    out = []
    position = 0
    for n in cuts:
        out.append(writer.write(plain[position:position + n]))
        position += n
    out.append(writer.finish())
    assert b"".join(out) == wrap(KEY, plain, random=fixed(PREFIX))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cuts", [[1 << 20] * 3, [1 << 20, 5, (1 << 20) - 5, 65_536 * 3 + 1],
                                  [65_535, 1, 65_536, 131_072], [3]])
def test_feed_from_any_buffer_matches_the_spec(fast: bool, cuts: list[int],
                                               version: int) -> None:
    """feed() seals straight from the caller's buffer through PyNaCl's cffi module (the
    server's path) or, with ``fast`` off, through nacl.bindings: the same bytes either way."""
    plain = os.urandom(sum(cuts))
    writer = Wrapper(KEY, random=fixed(PREFIXES[version]), version=version)
    assert writer.fast  # PyNaCl's cffi module has both functions: the server's path is tested
    writer.fast = fast
    out = []
    position = 0
    for i, n in enumerate(cuts):
        piece = plain[position:position + n]
        view = (piece, bytearray(piece), memoryview(piece))[i % 3]
        out.append(bytes(writer.feed(view)))  # the view is only valid until the next call
        position += n
    out.append(writer.finish())
    assert b"".join(out) == spec_wrap(KEY, PREFIXES[version], plain, version)


def test_random_prefix_and_key() -> None:
    a, b = new_wrap_key(), new_wrap_key()
    assert len(a) == 32 and a != b
    assert wrap(a, b"x") != wrap(a, b"x")  # a fresh nonce prefix each time
    assert Wrapper(a).header[:9] == b"SRDB-ATR" + bytes([VERSION])


def test_writer_refuses_use_after_finish() -> None:
    writer = Wrapper(KEY)
    writer.finish()
    with pytest.raises(RuntimeError):
        writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.finish()
    with pytest.raises(ValueError):
        Wrapper(b"short")


# --- random access ---------------------------------------------------------------------------

def read_range(wrapped: bytes, first: int, last: int, key: bytes = KEY) -> bytes:
    unwrapper = Unwrapper(key, wrapped[:MAX_HEADER_SIZE], len(wrapped))
    return b"".join(unwrapper.open(p, wrapped[p.offset:p.offset + p.length])
                    for p in unwrapper.plan(first, last))


def test_every_range_shape() -> None:
    plain = os.urandom(3 * BLOCK_SIZE + 5)
    wrapped = wrap(KEY, plain)
    edges = sorted({0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE - 1,
                    2 * BLOCK_SIZE, 3 * BLOCK_SIZE, len(plain) - 1})
    for first, last in itertools.combinations_with_replacement(edges, 2):
        assert read_range(wrapped, first, last) == plain[first:last + 1], (first, last)


def test_a_range_reads_only_its_blocks() -> None:
    plain = os.urandom(4 * BLOCK_SIZE)
    wrapped = bytearray(wrap(KEY, plain))
    # Destroy blocks 0 and 3: a range inside blocks 1..2 still unwraps.
    wrapped[HEADER_SIZE:HEADER_SIZE + 100] = bytes(100)
    wrapped[-50:] = bytes(50)
    first, last = BLOCK_SIZE + 10, 3 * BLOCK_SIZE - 1
    assert read_range(bytes(wrapped), first, last) == plain[first:last + 1]
    with pytest.raises(WrappedFileCorrupted):
        read_range(bytes(wrapped), 0, 10)
    unwrapper = Unwrapper(KEY, bytes(wrapped[:HEADER_SIZE]), len(wrapped))
    assert [p.index for p in unwrapper.plan(first, last)] == [1, 2]
    with pytest.raises(ValueError):
        unwrapper.plan(0, len(plain))


# --- reject rules ----------------------------------------------------------------------------

PLAIN = os.urandom(2 * BLOCK_SIZE + 1000)
WRAPPED = wrap(KEY, PLAIN)


def flip(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x01
    return bytes(changed)


def damaged(version: int) -> list[tuple[str, bytes]]:
    """Files a reader must refuse as damaged, made from a good file of ``version``."""
    suite = SUITES[version]
    head, step, tag = suite.header_size, suite.wrapped_block_size, suite.tag_size
    good = wrap(KEY, PLAIN, version=version)
    return [
        ("empty file", b""),
        ("only the header", good[:head]),
        ("header cut short", good[:10]),
        ("wrong magic", b"SRDB-ENV" + good[8:]),
        ("bit flipped in the nonce prefix", flip(good, 12)),
        ("bit flipped in block 0", flip(good, head + 5)),
        ("bit flipped in a tag", flip(good, len(good) - 1)),
        ("cut inside the last block", good[:-1]),
        ("cut at a block boundary (final flag)", good[:head + 2 * step]),
        ("cut to a lone tag-sized tail", good[:head + 2 * step + tag]),
        ("data appended", good + b"\x00"),
        ("blocks swapped", good[:head] + good[head + step:head + 2 * step] +
         good[head:head + step] + good[head + 2 * step:]),
        ("block from another file", good[:head] + wrap(KEY, PLAIN, version=version)[head:]),
        ("version byte changed", good[:8] + bytes([3 - version]) + good[9:]),
    ]


@pytest.mark.parametrize(("version", "name", "data"), [
    (version, name, data) for version in VERSIONS for name, data in damaged(version)])
def test_rejects(version: int, name: str, data: bytes) -> None:
    with pytest.raises(WrappedFileCorrupted) as info:
        unwrap(KEY, data)
    assert str(info.value) == str(WrappedFileCorrupted())  # one message, no detail


def test_wrong_key_is_the_same_failure() -> None:
    with pytest.raises(WrappedFileCorrupted):
        unwrap(new_wrap_key(), WRAPPED)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_header_shorter_than_its_version_needs(version: int) -> None:
    """A file's first bytes cut inside the nonce prefix: damaged, even if the declared size
    would fit (the reader is handed fewer bytes than the version's header)."""
    good = wrap(KEY, PLAIN, version=version)
    for cut in range(9, SUITES[version].header_size):
        with pytest.raises(WrappedFileCorrupted):
            Unwrapper(KEY, good[:cut], len(good))


@pytest.mark.parametrize("version", [0, 3, 255])
def test_unknown_version(version: int) -> None:
    data = WRAPPED[:8] + bytes([version]) + WRAPPED[9:]
    with pytest.raises(UnsupportedVersion):
        unwrap(KEY, data)


def test_empty_plaintext_is_one_empty_final_block() -> None:
    wrapped = wrap(KEY, b"")
    assert len(wrapped) == HEADER_SIZE + TAG_SIZE
    assert unwrap(KEY, wrapped) == b""
    # A lone empty block that is not final (a longer file cut after an empty block) is never
    # produced; a tag-only block after full blocks is refused by the layout alone.
    with pytest.raises(WrappedFileCorrupted):
        Layout.for_wrapped(HEADER_SIZE + WRAPPED_BLOCK_SIZE + TAG_SIZE, CURRENT)
