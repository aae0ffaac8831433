"""Sealing and opening whole envelopes, sans I/O: callers push bytes in and get bytes or events
out, so the same code serves the asyncio server and the synchronous CLI.

Memory is bounded by the chunk size and the caller's block size, whatever the envelope size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import records
from .chunks import CHUNK_SIZE, ChunkOpener, ChunkSealer, FramingChecker
from .digest import Sha256
from .errors import EnvelopeError, HeaderCorrupted, LimitExceeded, PayloadCorrupted
from .header import FILE_KEY_BYTES, Header, HeaderParser, build_header, derive_keys
from .keys import PublicKey, RandomSource, SecretKey
from .manifest import MAX_ATTACHMENTS, MAX_NAME_CHARS, Attachment, Kind, Manifest
from .padding import padme

__all__ = [
    "AttachmentData",
    "AttachmentDone",
    "Decryptor",
    "Encryptor",
    "EnvelopeInfo",
    "ManifestReady",
    "StructureChecker",
]

_ZEROS = bytes(CHUNK_SIZE)


class Encryptor:
    """Builds one envelope. Call :meth:`begin_attachment`/:meth:`write`/:meth:`end_attachment`
    for each file, then :meth:`finish`. Every method returns ciphertext pieces to write in order.
    """

    def __init__(self, recipients: Sequence[PublicKey], *,
                 random: RandomSource = os.urandom) -> None:
        file_key = random(FILE_KEY_BYTES)
        header = build_header(recipients, file_key)
        payload_key, _mac_key = derive_keys(file_key)
        self._sealer = ChunkSealer(payload_key)
        self._out: list[bytes] = [header, self._sealer.header]
        self._pending: list[bytes | memoryview] = []  # plaintext not yet sealed
        self._pending_len = 0
        self._plain_total = 0
        self._attachments: list[Attachment] = []
        self._current: tuple[str, str, Sha256] | None = None
        self._finished = False

    # -- attachments --------------------------------------------------------------------------

    def begin_attachment(self, name: str, media_type: str = "application/octet-stream") -> None:
        if self._current is not None or self._finished:
            raise RuntimeError("end the previous attachment first")
        if len(self._attachments) >= MAX_ATTACHMENTS:
            raise LimitExceeded(f"at most {MAX_ATTACHMENTS} attachments per envelope")
        if not 0 < len(name) <= MAX_NAME_CHARS or len(media_type) > MAX_NAME_CHARS:
            raise ValueError("attachment names must be 1 to 255 characters")
        try:
            name.encode("utf-8")
            media_type.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("attachment names must be valid Unicode text") from None
        self._current = (name, media_type, Sha256())

    def write(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add bytes of the current attachment; ``data`` must not be changed during the call."""
        if self._current is None:
            raise RuntimeError("begin an attachment first")
        if not data:
            return self._take()
        digest = self._current[2]
        digest.update(data, background=True)
        view = memoryview(data)
        for start in range(0, len(view), records.MAX_DATA_BODY):
            piece = view[start:start + records.MAX_DATA_BODY]
            self._push(records.record_header(records.DATA, len(piece)))
            self._push(piece)
        self._seal_full_chunks()
        digest.wait()
        self._keep_pending()
        return self._take()

    def end_attachment(self) -> list[bytes]:
        if self._current is None:
            raise RuntimeError("no attachment is open")
        name, media_type, digest = self._current
        self._attachments.append(Attachment(name, media_type, digest.size, digest.hexdigest()))
        self._current = None
        self._push(records.record_header(records.ATTACHMENT_END, 0))
        self._seal_full_chunks()
        self._keep_pending()
        return self._take()

    def add_attachment(self, name: str, media_type: str, data: bytes) -> list[bytes]:
        """Convenience for a small attachment held in memory."""
        self.begin_attachment(name, media_type)
        return self.write(data) + self.end_attachment()

    # -- the end ------------------------------------------------------------------------------

    def finish(self, *, kind: Kind = "report", language: str = "", message: str = "",
               answers: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """Write the manifest, the end record, padding and the final chunk; yields ciphertext.

        The manifest is validated before this returns (ValueError or LimitExceeded), so a
        caller learns of a bad field before iterating.
        """
        if self._current is not None:
            raise RuntimeError("end the open attachment first")
        if self._finished:
            raise RuntimeError("the envelope is already finished")
        manifest = Manifest(kind, language, message, dict(answers or {}),
                            tuple(self._attachments), dict(extra or {}))
        try:
            body = manifest.to_json()
        except (UnicodeEncodeError, TypeError, ValueError) as exc:
            raise ValueError(f"the manifest cannot be encoded: {exc}") from None
        if len(body) > records.MAX_MANIFEST_BODY:
            raise LimitExceeded("the report text is too long to fit in one envelope")
        try:
            Manifest.from_json(body)  # refuse to seal what a receiver would reject
        except EnvelopeError as exc:
            raise ValueError(str(exc)) from None
        self._finished = True
        return self._finish_stream(body)

    def _finish_stream(self, body: bytes) -> Iterator[bytes]:
        self._push(records.record_header(records.MANIFEST, len(body)))
        self._push(body)
        self._push(records.record_header(records.END, 0))
        padding = padme(self._plain_total) - self._plain_total
        yield from self._take()
        while padding:
            take = min(padding, CHUNK_SIZE)
            self._push(_ZEROS[:take])
            padding -= take
            self._seal_full_chunks()
            self._keep_pending()
            yield from self._take()
        final = b"".join(self._pending)
        self._pending.clear()
        self._out.extend(self._sealer.seal(final, final=True))
        yield from self._take()

    # -- internals ----------------------------------------------------------------------------

    def _push(self, data: bytes | memoryview) -> None:
        self._pending.append(data)
        self._pending_len += len(data)
        self._plain_total += len(data)

    def _seal_full_chunks(self) -> None:
        # Seal only while more than a chunk is waiting: the last chunk must stay for TAG_FINAL.
        while self._pending_len > CHUNK_SIZE:
            parts: list[bytes | memoryview] = []
            need = CHUNK_SIZE
            while need:
                head = self._pending[0]
                if len(head) <= need:
                    parts.append(head)
                    need -= len(head)
                    self._pending.pop(0)
                else:
                    parts.append(head[:need])
                    self._pending[0] = head[need:]
                    need = 0
            self._pending_len -= CHUNK_SIZE
            chunk = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
            self._out.extend(self._sealer.seal(chunk, final=False))

    def _keep_pending(self) -> None:
        # Views into the caller's buffer must not outlive the call.
        if len(self._pending) > 1 or (self._pending and not isinstance(self._pending[0], bytes)):
            self._pending = [b"".join(self._pending)]

    def _take(self) -> list[bytes]:
        out, self._out = self._out, []
        return out


# -- opening ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttachmentData:
    """Plaintext bytes of attachment ``index``. Authenticated chunk by chunk, but the envelope as
    a whole is only authentic once :meth:`Decryptor.close` returns: keep it provisional."""

    index: int
    data: bytes


@dataclass(frozen=True)
class AttachmentDone:
    """Attachment ``index`` ended; ``size`` and ``sha256`` are what was actually received."""

    index: int
    size: int
    sha256: str


@dataclass(frozen=True)
class ManifestReady:
    """The manifest arrived and matches every attachment received."""

    manifest: Manifest


DecryptEvent = AttachmentData | AttachmentDone | ManifestReady


class Decryptor:
    """Opens one envelope incrementally with any of ``identities``."""

    def __init__(self, identities: Sequence[SecretKey]) -> None:
        if not identities:
            raise ValueError("at least one secret key is needed")
        self._identities = list(identities)
        self._header_parser: HeaderParser | None = HeaderParser()
        self.header: Header | None = None
        self._opener: ChunkOpener | None = None
        self._records = records.RecordParser()
        self._index = 0
        self._digest = Sha256()
        self._received: list[tuple[int, str]] = []
        self._manifest: Manifest | None = None

    def feed(self, data: bytes) -> list[DecryptEvent]:
        if self._opener is None:
            parser = self._header_parser or HeaderParser()
            header, data = parser.feed(data)
            if header is None:
                return []
            self.header = header
            self._header_parser = None
            payload_key, _mac_key = derive_keys(header.unwrap(self._identities))
            self._opener = ChunkOpener(payload_key)
        events: list[DecryptEvent] = []
        to_hash: list[bytes] = []  # this block's attachment bytes, hashed as one batch
        for plaintext in self._opener.feed(data):
            for event in self._records.feed(plaintext):
                if isinstance(event, records.DataPiece):
                    to_hash.append(event.data)
                    events.append(AttachmentData(self._index, event.data))
                elif isinstance(event, records.AttachmentClosed):
                    self._digest.update_many(to_hash)
                    to_hash = []
                    done = AttachmentDone(self._index, self._digest.size, self._digest.hexdigest())
                    self._received.append((done.size, done.sha256))
                    events.append(done)
                    self._index += 1
                    self._digest = Sha256()
                else:
                    self._manifest = self._check_manifest(event.body)
                    events.append(ManifestReady(self._manifest))
        if self._opener.finished:
            self._check_padding()
        # Hashed in the background while the caller writes these bytes and decrypts the next
        # block; joined at the next feed, at an attachment's end, or at close.
        self._digest.update_many(to_hash)
        return events

    def close(self) -> Manifest:
        """Declare the end of input; returns the manifest once everything is authenticated."""
        if self._opener is None:
            raise HeaderCorrupted("the envelope is truncated inside its header")
        self._digest.wait()
        self._opener.close()
        if self._manifest is None:  # unreachable: a finished stream passed _check_padding
            raise PayloadCorrupted("the envelope has no manifest")
        return self._manifest

    def _check_manifest(self, body: bytes) -> Manifest:
        manifest = Manifest.from_json(body)
        if len(manifest.attachments) != len(self._received):
            raise PayloadCorrupted("the manifest lists a different number of attachments than "
                                   "the envelope carries")
        for described, (size, sha256) in zip(manifest.attachments, self._received, strict=True):
            if described.size != size or described.sha256 != sha256:
                raise PayloadCorrupted(f"attachment {described.name!r} does not match its size "
                                       "or SHA-256 in the manifest")
        return manifest

    def _check_padding(self) -> None:
        ended = self._records.ended_at
        if ended is None or self._manifest is None:
            raise PayloadCorrupted("the payload ends before its manifest and end record")
        if self._records.total != padme(ended):
            raise PayloadCorrupted("the payload padding has the wrong length")


@dataclass
class EnvelopeInfo:
    """What can be learnt about an envelope without a key."""

    size: int = 0
    recipients: int = 0
    chunks: int = 0
    header_bytes: int = 0
    stanza_types: list[int] = field(default_factory=list)


class StructureChecker:
    """Validates an envelope's header and framing as bytes stream in, without any key."""

    def __init__(self, *, max_size: int | None = None) -> None:
        self._header_parser: HeaderParser | None = HeaderParser()
        self._framing = FramingChecker()
        self._max_size = max_size
        self.info = EnvelopeInfo()

    def feed(self, data: bytes) -> None:
        self.info.size += len(data)
        if self._max_size is not None and self.info.size > self._max_size:
            raise LimitExceeded(f"the envelope is larger than the limit of {self._max_size} bytes")
        if self._header_parser is not None:
            header, data = self._header_parser.feed(data)
            if header is None:
                return
            self._header_parser = None
            self.info.recipients = len(header.stanzas)
            self.info.header_bytes = header.size
            self.info.stanza_types = [s.type for s in header.stanzas]
        self._framing.feed(data)

    def close(self) -> EnvelopeInfo:
        if self._header_parser is not None:
            raise HeaderCorrupted("the envelope is truncated inside its header")
        self._framing.close()
        self.info.chunks = self._framing.chunks
        return self.info
