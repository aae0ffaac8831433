"""The payload's chunked AEAD: libsodium crypto_secretstream_xchacha20poly1305 with a length
prefix on every chunk (docs/PROTOCOL.md §3)::

    payload := secretstream_header (24) || chunk+
    chunk   := length (4, big-endian) || ciphertext (length)

Every chunk but the last carries exactly CHUNK_SIZE plaintext bytes and TAG_MESSAGE; the last
carries 1..CHUNK_SIZE bytes and TAG_FINAL. Fixed sizes mean the server can check an envelope's
framing without any key, and leak nothing beyond the total length.
"""

from __future__ import annotations

import struct

import nacl.bindings as sodium
import nacl.exceptions

from .errors import PayloadCorrupted

__all__ = ["CHUNK_SIZE", "SS_HEADER_BYTES", "ChunkOpener", "ChunkSealer", "FramingChecker"]

CHUNK_SIZE = 64 * 1024
ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
MAX_CHUNK_BYTES = CHUNK_SIZE + ABYTES
MIN_CHUNK_BYTES = 1 + ABYTES
SS_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_LEN = struct.Struct(">I")

_GENERIC = ("failed to decrypt and authenticate a payload chunk: the envelope is corrupted or "
            "was tampered with")


class ChunkSealer:
    """Seals plaintext chunks; the caller decides chunk boundaries (CHUNK_SIZE each, last short)."""

    def __init__(self, payload_key: bytes) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header = bytes(sodium.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, payload_key))
        self._done = False

    def seal(self, plaintext: bytes, *, final: bool) -> tuple[bytes, bytes]:
        """Return (length prefix, ciphertext) of one chunk."""
        if self._done:
            raise RuntimeError("the final chunk was already sealed")
        if not (len(plaintext) == CHUNK_SIZE or (final and 0 < len(plaintext) <= CHUNK_SIZE)):
            raise ValueError("wrong chunk size")
        ciphertext = sodium.crypto_secretstream_xchacha20poly1305_push(
            self._state, plaintext, None, TAG_FINAL if final else TAG_MESSAGE)
        self._done = final
        return _LEN.pack(len(ciphertext)), ciphertext


class _Framer:
    """Splits the payload byte stream into the secretstream header and length-prefixed chunks.

    Frames are cut straight out of each input block; only a frame that straddles two blocks is
    assembled in a small buffer, so each byte is copied once.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ss_header: bytes | None = None
        self.chunks_seen = 0
        self.last_length = 0

    def _item_size(self, head: bytes | bytearray | memoryview) -> int | None:
        """Size of the next item given its first bytes, or None if more are needed to know."""
        if self.ss_header is None:
            return SS_HEADER_BYTES
        if len(head) < 4:
            return None
        length: int = _LEN.unpack_from(head, 0)[0]
        if length > MAX_CHUNK_BYTES:
            raise PayloadCorrupted(f"a payload chunk is longer than the maximum "
                                   f"({length} > {MAX_CHUNK_BYTES} bytes)")
        if length < MIN_CHUNK_BYTES:
            raise PayloadCorrupted("a payload chunk is shorter than the minimum")
        if self.chunks_seen and self.last_length != MAX_CHUNK_BYTES:
            # Only the final chunk may be short, so a short chunk followed by another is bad.
            raise PayloadCorrupted("data follows the final payload chunk")
        return 4 + length

    def _emit(self, item: bytes, out: list[bytes]) -> None:
        if self.ss_header is None:
            self.ss_header = item
        else:
            out.append(item[4:])
            self.chunks_seen += 1
            self.last_length = len(item) - 4

    def frames(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        view = memoryview(data)
        pos = 0
        while self._buf and pos < len(view):
            size = self._item_size(self._buf)
            want = (size if size is not None else 4) - len(self._buf)
            take = min(want, len(view) - pos)
            self._buf += view[pos:pos + take]
            pos += take
            if size is not None and len(self._buf) == size:
                item = bytes(self._buf)
                self._buf.clear()
                self._emit(item, out)
        n = len(view)
        while pos < n:
            size = self._item_size(view[pos:pos + 4])
            if size is None or n - pos < size:
                self._buf += view[pos:]
                break
            if self.ss_header is None:
                self._emit(bytes(view[pos:pos + size]), out)
            else:
                out.append(bytes(view[pos + 4:pos + size]))
                self.chunks_seen += 1
                self.last_length = size - 4
            pos += size
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


class ChunkOpener:
    """Decrypts a payload incrementally. :meth:`feed` returns authenticated chunk plaintexts;
    after the last, :attr:`finished` is True. Truncation is only detectable at :meth:`close`."""

    def __init__(self, payload_key: bytes) -> None:
        self._key = payload_key
        self._framer = _Framer()
        self._state: sodium.crypto_secretstream_xchacha20poly1305_state | None = None
        self.finished = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.finished:
            if data:
                raise PayloadCorrupted("data follows the final payload chunk")
            return []
        out = []
        for frame in self._framer.frames(data):
            if self.finished:
                raise PayloadCorrupted("data follows the final payload chunk")
            if self._state is None:
                ss_header = self._framer.ss_header or b""
                self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
                try:
                    sodium.crypto_secretstream_xchacha20poly1305_init_pull(
                        self._state, ss_header, self._key)
                except nacl.exceptions.CryptoError as exc:
                    raise PayloadCorrupted(_GENERIC) from exc
            try:
                plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                    self._state, frame, None)
            except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError) as exc:
                raise PayloadCorrupted(_GENERIC) from exc
            if tag == TAG_FINAL:
                self.finished = True
            elif tag != TAG_MESSAGE or len(plaintext) != CHUNK_SIZE:
                raise PayloadCorrupted(_GENERIC)
            out.append(plaintext)
        if self.finished and self._framer.pending:
            raise PayloadCorrupted("data follows the final payload chunk")
        return out

    def close(self) -> None:
        if not self.finished:
            raise PayloadCorrupted("the envelope is truncated: its final chunk is missing")


class FramingChecker:
    """Checks the payload framing without a key: sizes only (what the server can verify)."""

    def __init__(self) -> None:
        self._need_header = SS_HEADER_BYTES
        self._prefix = bytearray()
        self._skip = 0
        self.chunks = 0
        self._last = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._need_header:
                take = min(self._need_header, len(view))
                self._need_header -= take
                view = view[take:]
            elif self._skip:
                take = min(self._skip, len(view))
                self._skip -= take
                view = view[take:]
            else:
                take = min(4 - len(self._prefix), len(view))
                self._prefix += view[:take]
                view = view[take:]
                if len(self._prefix) == 4:
                    (length,) = _LEN.unpack(self._prefix)
                    self._prefix.clear()
                    if length > MAX_CHUNK_BYTES:
                        raise PayloadCorrupted("a payload chunk is longer than the maximum")
                    if length < MIN_CHUNK_BYTES:
                        raise PayloadCorrupted("a payload chunk is shorter than the minimum")
                    if self.chunks and self._last != MAX_CHUNK_BYTES:
                        raise PayloadCorrupted("data follows the final payload chunk")
                    self.chunks += 1
                    self._last = length
                    self._skip = length

    def close(self) -> None:
        if self._need_header or self._skip or self._prefix or not self.chunks:
            raise PayloadCorrupted("the envelope is truncated")
