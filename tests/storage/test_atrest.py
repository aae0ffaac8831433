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

from dropbox_envelope.atrest import (
    BLOCK_SIZE,
    HEADER_SIZE,
    WRAPPED_BLOCK_SIZE,
    Layout,
    Unwrapper,
    Wrapper,
    new_wrap_key,
    unwrap,
    wrap,
)
from dropbox_envelope.errors import UnsupportedVersion, WrappedFileCorrupted

KEY = bytes(range(32))
PREFIX = bytes(range(100, 116))


def fixed(data: bytes):  # type: ignore[no-untyped-def]
    """A RandomSource that returns ``data`` (the nonce prefix)."""
    def source(n: int) -> bytes:
        assert n == len(data)
        return data
    return source


def spec_wrap(key: bytes, prefix: bytes, plain: bytes) -> bytes:
    """§11 written out independently of the module."""
    header = b"SRDB-ATR" + b"\x01" + prefix
    pieces = [plain[i:i + 65536] for i in range(0, len(plain), 65536)] or [b""]
    out = [header]
    for i, piece in enumerate(pieces):
        final = i == len(pieces) - 1
        ad = header + struct.pack(">Q", i) + (b"\x01" if final else b"\x00")
        nonce = prefix + struct.pack(">Q", i)
        out.append(sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(piece, ad, nonce, key))
    return b"".join(out)


SIZES = [0, 1, 100, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE,
         3 * BLOCK_SIZE + 17]


@pytest.mark.parametrize("size", SIZES)
def test_matches_the_spec_byte_for_byte(size: int) -> None:
    plain = hashlib.shake_256(b"plain").digest(size) if size else b""
    wrapped = wrap(KEY, plain, random=fixed(PREFIX))
    assert wrapped == spec_wrap(KEY, PREFIX, plain)
    assert len(wrapped) == Layout.for_plain(size).wrapped_size
    assert Layout.for_wrapped(len(wrapped)) == Layout.for_plain(size)
    assert unwrap(KEY, wrapped) == plain


def test_known_answer() -> None:
    """Pinned output for a pinned key, prefix and plaintext (regenerate only with a new version)."""
    plain = b"SRDB-ENV" + bytes(70_000)
    wrapped = wrap(KEY, plain, random=fixed(PREFIX))
    assert wrapped[:HEADER_SIZE].hex() == "535244422d41545201" + PREFIX.hex()
    # Computed once with this module and checked against spec_wrap above.
    assert hashlib.sha256(wrapped).hexdigest() == \
        "1f51da14417959f89db12587812e41be01680f792517235bce888d5389073d8c"
    assert wrapped[HEADER_SIZE:HEADER_SIZE + 16].hex() == "3ac132b25c102447e7aa215c18c2de3b"
    assert wrapped[-16:].hex() == "fcd8bb44e6490d342ac252bb826acfbd"  # the final block's tag
    assert len(wrapped) == 25 + 70_008 + 2 * 16


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


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cuts", [[1 << 20] * 3, [1 << 20, 5, (1 << 20) - 5, 65_536 * 3 + 1],
                                  [65_535, 1, 65_536, 131_072], [3]])
def test_feed_from_any_buffer_matches_the_spec(fast: bool, cuts: list[int]) -> None:
    """feed() seals straight from the caller's buffer through PyNaCl's cffi module (the
    server's path) or, with ``fast`` off, through nacl.bindings: the same bytes either way."""
    plain = os.urandom(sum(cuts))
    writer = Wrapper(KEY, random=fixed(PREFIX))
    writer.fast = fast
    out = []
    position = 0
    for i, n in enumerate(cuts):
        piece = plain[position:position + n]
        view = (piece, bytearray(piece), memoryview(piece))[i % 3]
        out.append(bytes(writer.feed(view)))  # the view is only valid until the next call
        position += n
    out.append(writer.finish())
    assert b"".join(out) == spec_wrap(KEY, PREFIX, plain)


def test_random_prefix_and_key() -> None:
    a, b = new_wrap_key(), new_wrap_key()
    assert len(a) == 32 and a != b
    assert wrap(a, b"x") != wrap(a, b"x")  # a fresh nonce prefix each time
    assert Wrapper(a).header[:9] == b"SRDB-ATR\x01"


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
    unwrapper = Unwrapper(key, wrapped[:HEADER_SIZE], len(wrapped))
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


@pytest.mark.parametrize(("name", "data"), [
    ("empty file", b""),
    ("only the header", WRAPPED[:HEADER_SIZE]),
    ("header cut short", WRAPPED[:10]),
    ("wrong magic", b"SRDB-ENV" + WRAPPED[8:]),
    ("bit flipped in the nonce prefix", flip(WRAPPED, 12)),
    ("bit flipped in block 0", flip(WRAPPED, HEADER_SIZE + 5)),
    ("bit flipped in a tag", flip(WRAPPED, len(WRAPPED) - 1)),
    ("cut inside the last block", WRAPPED[:-1]),
    ("cut at a block boundary (final flag)", WRAPPED[:HEADER_SIZE + 2 * WRAPPED_BLOCK_SIZE]),
    ("cut to a lone tag-sized tail", WRAPPED[:HEADER_SIZE + 2 * WRAPPED_BLOCK_SIZE + 16]),
    ("data appended", WRAPPED + b"\x00"),
    ("blocks swapped", WRAPPED[:HEADER_SIZE] +
     WRAPPED[HEADER_SIZE + WRAPPED_BLOCK_SIZE:HEADER_SIZE + 2 * WRAPPED_BLOCK_SIZE] +
     WRAPPED[HEADER_SIZE:HEADER_SIZE + WRAPPED_BLOCK_SIZE] +
     WRAPPED[HEADER_SIZE + 2 * WRAPPED_BLOCK_SIZE:]),
    ("block from another file", WRAPPED[:HEADER_SIZE] + wrap(KEY, PLAIN)[HEADER_SIZE:]),
])
def test_rejects(name: str, data: bytes) -> None:
    with pytest.raises(WrappedFileCorrupted) as info:
        unwrap(KEY, data)
    assert str(info.value) == str(WrappedFileCorrupted())  # one message, no detail


def test_wrong_key_is_the_same_failure() -> None:
    with pytest.raises(WrappedFileCorrupted):
        unwrap(new_wrap_key(), WRAPPED)


def test_unknown_version() -> None:
    data = WRAPPED[:8] + b"\x02" + WRAPPED[9:]
    with pytest.raises(UnsupportedVersion):
        unwrap(KEY, data)


def test_empty_plaintext_is_one_empty_final_block() -> None:
    wrapped = wrap(KEY, b"")
    assert len(wrapped) == HEADER_SIZE + 16
    assert unwrap(KEY, wrapped) == b""
    # A lone empty block that is not final (a longer file cut after an empty block) is never
    # produced; a tag-only block after full blocks is refused by the layout alone.
    with pytest.raises(WrappedFileCorrupted):
        Layout.for_wrapped(HEADER_SIZE + WRAPPED_BLOCK_SIZE + 16)
