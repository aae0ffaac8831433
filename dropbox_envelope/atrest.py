"""At-rest wrapping on the server (docs/PROTOCOL.md §11): a seekable chunked AEAD.

The server wraps every stored envelope once more under a random per-item ``wrap_key`` that lives
only in its database. Deleting the database row destroys the key, and with it every copy of the
file's bytes that a disk may still hold (crypto-erase). The layout::

    wrapped := header || block+
    header  := "SRDB-ATR" || version (1) || nonce_prefix
    block_i := AEAD(plain_i, ad = header || u64(i) || u8(final), nonce = nonce_prefix || u64(i),
                    wrap_key)

Version 2 uses AEGIS-256 (24-byte prefix, 32-byte tags), version 1 XChaCha20-Poly1305 (16-byte
prefix, 16-byte tags). Both are read; the server writes version 2 where the CPU has AES
instructions and version 1 where it has not (:data:`CURRENT`). Every block but the last carries
exactly :data:`BLOCK_SIZE` plaintext bytes. Because block ``i`` sits at a fixed offset, any byte
range can be unwrapped by reading only the blocks it touches: the staff download keeps honouring
HTTP ``Range``. The final flag in the additional data makes a file cut at a block boundary fail
instead of looking complete.

Sans-IO: :class:`Wrapper` turns plaintext into bytes to append; :class:`Unwrapper` says which
wrapped bytes to read for a plaintext range and opens them. Imports PyNaCl and the standard
library only.

Speed: the server wraps every uploaded byte, on a thread beside its event loop (see
``dropbox_server/offload.py``). Why AEGIS-256 since version 2: with the CPU's AES instructions
libsodium's AEGIS-256 costs a sixth of XChaCha20-Poly1305's CPU per byte (benchmarks/README.md),
and on a small server that CPU is what the upload waits for. :meth:`Wrapper.feed` seals each
block straight from the caller's buffer into one output buffer it reuses, through the cffi module
under ``nacl.bindings`` (the public binding copies the input, allocates and zeroes an output and
copies it again: as much CPU again as AEGIS-256 itself, all of it holding the GIL, which the
event loop needs). The bytes are the same either way (tests/storage/test_atrest.py checks both
paths).
"""

from __future__ import annotations

import importlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions

from .errors import UnsupportedVersion, WrappedFileCorrupted
from .keys import RandomSource

__all__ = [
    "BLOCK_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_HEADER_SIZE",
    "TAG_SIZE",
    "VERSION",
    "WRAPPED_BLOCK_SIZE",
    "Layout",
    "Piece",
    "Suite",
    "Unwrapper",
    "Wrapper",
    "hardware_aes",
    "new_wrap_key",
    "suite_of",
    "unwrap",
    "wrap",
    "writing_suite",
]

MAGIC = b"SRDB-ATR"
BLOCK_SIZE = 64 * 1024
KEY_SIZE = 32  # both versions
_U64 = struct.Struct(">Q")
_Seal = Callable[[bytes, bytes, bytes, bytes], bytes]


@dataclass(frozen=True)
class Suite:
    """One version of the format: its AEAD and the sizes that follow from it."""

    version: int
    prefix_size: int  # random bytes per file; the nonce is prefix || u64(block index)
    tag_size: int
    encrypt: _Seal  # the public binding: (message, ad, nonce, key) -> ciphertext || tag
    decrypt: _Seal
    cffi_encrypt: str  # the same function's name in libsodium

    @property
    def header_size(self) -> int:
        return len(MAGIC) + 1 + self.prefix_size

    @property
    def wrapped_block_size(self) -> int:
        return BLOCK_SIZE + self.tag_size


XCHACHA20POLY1305 = Suite(
    1, 16, sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES,
    sodium.crypto_aead_xchacha20poly1305_ietf_encrypt,
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt,
    "crypto_aead_xchacha20poly1305_ietf_encrypt")
AEGIS256 = Suite(
    2, sodium.crypto_aead_aegis256_NPUBBYTES - 8, sodium.crypto_aead_aegis256_ABYTES,
    sodium.crypto_aead_aegis256_encrypt, sodium.crypto_aead_aegis256_decrypt,
    "crypto_aead_aegis256_encrypt")
SUITES = {suite.version: suite for suite in (XCHACHA20POLY1305, AEGIS256)}


def _cffi_binding() -> tuple[Any, Any]:
    """PyNaCl's own compiled libsodium module (what ``nacl.bindings`` calls), or Nones."""
    try:
        module = importlib.import_module("nacl._sodium")
    except ImportError:  # pragma: no cover - then the public binding is used
        return None, None
    return module.ffi, module.lib


# Importing nacl.bindings (above) ran sodium_init(), which selects libsodium's vectorised and
# AES-instruction implementations; called before it, the same functions run the portable code.
_ffi, _lib = _cffi_binding()


def hardware_aes() -> bool:
    """Whether this CPU has the AES instructions libsodium uses (its own check, the one that
    guards AES-256-GCM: AES-NI and PCLMUL on x86-64, the crypto extensions on ARMv8).
    False where it cannot tell."""
    check = getattr(_lib, "crypto_aead_aes256gcm_is_available", None)
    return bool(check()) if check is not None else False


def writing_suite() -> Suite:
    """The version this machine writes. Without AES instructions libsodium's AEGIS-256 runs
    portable AES code: slower there than XChaCha20-Poly1305, and not claimed to be free of
    cache-timing leaks, which ChaCha20 and Poly1305 are by design. Such a server keeps
    writing version 1."""
    return AEGIS256 if hardware_aes() else XCHACHA20POLY1305


CURRENT = writing_suite()

VERSION = CURRENT.version
HEADER_SIZE = CURRENT.header_size  # 33 (version 2), 25 (version 1)
TAG_SIZE = CURRENT.tag_size  # 32, 16
WRAPPED_BLOCK_SIZE = CURRENT.wrapped_block_size
# Enough of a file's start for the header of any version a reader knows.
MAX_HEADER_SIZE = max(suite.header_size for suite in SUITES.values())


def _fast(suite: Suite) -> bool:
    return _lib is not None and hasattr(_lib, suite.cffi_encrypt)


def new_wrap_key(random: RandomSource = os.urandom) -> bytes:
    """A fresh 32-byte wrap key from a CSPRNG; one per stored item, never reused."""
    key = random(KEY_SIZE)
    if len(key) != KEY_SIZE:
        raise ValueError("the random source returned the wrong number of bytes")
    return key


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"a wrap key is {KEY_SIZE} bytes")


def suite_of(header: bytes) -> Suite:
    """The version a wrapped file's first bytes name. :class:`WrappedFileCorrupted` if they are
    not a wrapped file's (or too few); :class:`UnsupportedVersion` for an unknown version."""
    if len(header) <= len(MAGIC) or header[:len(MAGIC)] != MAGIC:
        raise WrappedFileCorrupted()
    suite = SUITES.get(header[len(MAGIC)])
    if suite is None:
        raise UnsupportedVersion("this stored file uses an at-rest format version this "
                                 "software does not know; upgrade the server")
    if len(header) < suite.header_size:
        raise WrappedFileCorrupted()
    return suite


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + _U64.pack(index)


def _ad(header: bytes, index: int, final: bool) -> bytes:
    # The header is bound too, so a changed magic or version byte fails authentication even
    # where a reader would otherwise accept it; the index and the final flag are what make
    # reordering and truncation at a block boundary detectable.
    return header + _U64.pack(index) + (b"\x01" if final else b"\x00")


# --- layout ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where everything is in a wrapped file of a given size and version (no key needed)."""

    plain_size: int
    blocks: int
    suite: Suite = CURRENT

    @property
    def wrapped_size(self) -> int:
        return self.suite.header_size + self.plain_size + self.blocks * self.suite.tag_size

    @classmethod
    def for_plain(cls, plain_size: int, suite: Suite = CURRENT) -> Layout:
        if plain_size < 0:
            raise ValueError("negative size")
        return cls(plain_size, max(1, -(-plain_size // BLOCK_SIZE)), suite)

    @classmethod
    def for_wrapped(cls, wrapped_size: int, suite: Suite) -> Layout:
        """The layout a wrapped file of ``wrapped_size`` bytes must have; raises
        :class:`WrappedFileCorrupted` for a size no wrapper produces (a truncated file)."""
        tag, step = suite.tag_size, suite.wrapped_block_size
        body = wrapped_size - suite.header_size
        if body < tag:
            raise WrappedFileCorrupted()
        blocks = -(-body // step)
        last = body - (blocks - 1) * step
        # A last block holds at least one byte, unless it is the only block (empty plaintext).
        if last < tag or (last == tag and blocks > 1):
            raise WrappedFileCorrupted()
        return cls(body - blocks * tag, blocks, suite)

    @classmethod
    def of_file(cls, header: bytes, wrapped_size: int) -> Layout:
        """The layout of a wrapped file from its first bytes (at least :data:`MAX_HEADER_SIZE`
        of them, or the whole file) and its size."""
        return cls.for_wrapped(wrapped_size, suite_of(header))

    def block_plain_size(self, index: int) -> int:
        """Plaintext bytes in block ``index``; IndexError for an index outside the file (a
        caller's mistake: indexes come from :attr:`blocks` or :meth:`Unwrapper.plan`)."""
        if not 0 <= index < self.blocks:
            raise IndexError(index)
        if index < self.blocks - 1:
            return BLOCK_SIZE
        return self.plain_size - (self.blocks - 1) * BLOCK_SIZE

    def block_offset(self, index: int) -> int:
        """Where block ``index`` starts in the wrapped file."""
        return self.suite.header_size + index * self.suite.wrapped_block_size

    def block_wrapped_size(self, index: int) -> int:
        return self.block_plain_size(index) + self.suite.tag_size


@dataclass(frozen=True)
class Piece:
    """One block to read for a plaintext range: ``length`` wrapped bytes at ``offset``, of which
    the opened plaintext ``[skip:skip + take]`` belongs to the range."""

    index: int
    offset: int
    length: int
    skip: int
    take: int


# --- writing ---------------------------------------------------------------------------------

class Wrapper:
    """Wraps a plaintext stream: ``write()`` and ``finish()`` return the bytes to append.

    The last full block is held back until more data arrives or ``finish()`` is called, because
    only then is it known whether it is the final one. Writes :data:`VERSION`; ``version``
    chooses an older one (tests of reading files an older server wrote).
    """

    def __init__(self, key: bytes, *, random: RandomSource = os.urandom,
                 version: int = VERSION) -> None:
        _check_key(key)
        suite = SUITES[version]
        prefix = random(suite.prefix_size)
        if len(prefix) != suite.prefix_size:
            raise ValueError("the random source returned the wrong number of bytes")
        self._suite = suite
        self._key = key
        self.header = MAGIC + bytes([suite.version]) + prefix
        self._prefix = prefix
        self._buf = bytearray()
        self._index = 0
        self._header_sent = False
        self._done = False
        self._out = bytearray()  # reused by feed()
        self.fast = _fast(suite)  # False: seal through the public binding (tests compare)

    def _seal(self, plain: bytes | bytearray | memoryview, final: bool) -> bytes:
        index = self._index
        self._index += 1
        return self._suite.encrypt(bytes(plain), _ad(self.header, index, final),
                                   _nonce(self._prefix, index), self._key)

    def _start(self, out: list[bytes]) -> None:
        if not self._header_sent:
            out.append(self.header)
            self._header_sent = True

    def feed(self, data: bytes | bytearray | memoryview) -> memoryview:
        """Like :meth:`write`, but returns a view of a buffer the wrapper reuses: valid until
        the next call, and without copying ``data`` except the block it holds back."""
        if self._done:
            raise RuntimeError("the wrapper is finished")
        step = self._suite.wrapped_block_size
        held = len(self._buf)
        total = held + len(data)
        head = b"" if self._header_sent else self.header
        self._header_sent = True
        # Seal every full block that is certainly not the last: keep 1..BLOCK_SIZE bytes.
        blocks = (total - 1) // BLOCK_SIZE if total else 0
        size = len(head) + blocks * step
        if len(self._out) < size:
            self._out = bytearray(size)
        out = self._out
        out[:len(head)] = head
        pos = len(head)
        src = memoryview(data).cast("B")
        taken = 0
        if blocks and held:
            taken = BLOCK_SIZE - held  # complete the held-back block from the new bytes
            self._buf += src[:taken]
            self._seal_into(self._buf, out, pos)
            pos += step
            blocks -= 1
            self._buf.clear()
        for _ in range(blocks):
            self._seal_into(src[taken:taken + BLOCK_SIZE], out, pos)
            taken += BLOCK_SIZE
            pos += step
        self._buf += src[taken:]
        return memoryview(out)[:pos]

    def _seal_into(self, plain: bytes | bytearray | memoryview, out: bytearray,
                   pos: int) -> None:
        """Seal one full, non-final block into ``out[pos:pos + wrapped block size]``."""
        index = self._index
        self._index += 1
        ad = _ad(self.header, index, False)
        nonce = _nonce(self._prefix, index)
        if not self.fast:
            out[pos:pos + self._suite.wrapped_block_size] = self._suite.encrypt(
                bytes(plain), ad, nonce, self._key)
            return
        # cffi releases the GIL for the call; from_buffer neither copies nor allocates. Both
        # suites' functions have the same signature (combined mode, no nsec).
        rc = getattr(_lib, self._suite.cffi_encrypt)(
            _ffi.from_buffer(out, require_writable=True) + pos, _ffi.NULL,
            _ffi.from_buffer(plain), len(plain), ad, len(ad), _ffi.NULL, nonce, self._key)
        if rc != 0:  # libsodium documents none for these sizes
            raise RuntimeError(f"{self._suite.cffi_encrypt} failed")

    def write(self, data: bytes | bytearray | memoryview) -> bytes:
        """The wrapped bytes to append for ``data`` (the header first, on the first call)."""
        return bytes(self.feed(data))

    def finish(self) -> bytes:
        if self._done:
            raise RuntimeError("the wrapper is finished")
        out: list[bytes] = []
        self._start(out)
        out.append(self._seal(self._buf, True))
        self._buf = bytearray()
        self._done = True
        return b"".join(out)


def wrap(key: bytes, data: bytes, *, random: RandomSource = os.urandom,
         version: int = VERSION) -> bytes:
    """Wrap ``data`` in memory (small items, tests)."""
    wrapper = Wrapper(key, random=random, version=version)
    return wrapper.write(data) + wrapper.finish()


# --- reading ---------------------------------------------------------------------------------

class Unwrapper:
    """Random-access reading of one wrapped file, of any version this software knows.

    Construct it from the file's first :data:`MAX_HEADER_SIZE` bytes (or the whole file, if
    shorter) and its total size; then :meth:`plan` names the blocks to read for a plaintext
    range and :meth:`open` authenticates and decrypts each. Every failure is
    :class:`WrappedFileCorrupted` (one message, no detail), except a version this software does
    not know (:class:`UnsupportedVersion`).
    """

    def __init__(self, key: bytes, header: bytes, wrapped_size: int) -> None:
        _check_key(key)
        self.layout = Layout.of_file(header, wrapped_size)
        self._suite = self.layout.suite
        self._key = key
        self.header = bytes(header[:self._suite.header_size])
        self._prefix = self.header[len(MAGIC) + 1:]

    @property
    def plain_size(self) -> int:
        return self.layout.plain_size

    def plan(self, first: int, last: int) -> list[Piece]:
        """The blocks holding plaintext bytes ``first..last`` (inclusive), in order."""
        if not 0 <= first <= last < self.plain_size:
            raise ValueError("range outside the plaintext")
        pieces = []
        for index in range(first // BLOCK_SIZE, last // BLOCK_SIZE + 1):
            start = index * BLOCK_SIZE
            size = self.layout.block_plain_size(index)
            skip = max(first - start, 0)
            take = min(last + 1, start + size) - start - skip
            pieces.append(Piece(index, self.layout.block_offset(index),
                                self.layout.block_wrapped_size(index), skip, take))
        return pieces

    def open_block(self, index: int, ciphertext: bytes) -> bytes:
        """The whole authenticated plaintext of block ``index``."""
        final = index == self.layout.blocks - 1
        if len(ciphertext) != self.layout.block_wrapped_size(index):
            raise WrappedFileCorrupted()
        try:
            return self._suite.decrypt(ciphertext, _ad(self.header, index, final),
                                       _nonce(self._prefix, index), self._key)
        except nacl.exceptions.CryptoError:
            raise WrappedFileCorrupted() from None

    def open(self, piece: Piece, ciphertext: bytes) -> bytes:
        """The part of ``piece``'s block that belongs to the planned range."""
        plain = self.open_block(piece.index, ciphertext)
        if piece.skip == 0 and piece.take == len(plain):
            return plain
        return plain[piece.skip:piece.skip + piece.take]


def unwrap(key: bytes, data: bytes) -> bytes:
    """Unwrap a whole file held in memory, checking every block (including an empty one)."""
    unwrapper = Unwrapper(key, data[:MAX_HEADER_SIZE], len(data))
    layout = unwrapper.layout
    out = []
    for index in range(layout.blocks):
        offset = layout.block_offset(index)
        out.append(unwrapper.open_block(index,
                                        data[offset:offset + layout.block_wrapped_size(index)]))
    return b"".join(out)
