"""The plaintext inside the payload: a sequence of records, then zero padding
(docs/PROTOCOL.md §4)::

    plaintext := (DATA* ATTACHMENT_END)* MANIFEST END zero-padding
    record    := type (1) || length (4, big-endian) || body (length)

The manifest comes last because a sender that streams (the server sealing a browser form as it
arrives) learns each attachment's size and SHA-256 only after its bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import PayloadCorrupted
from .manifest import MAX_ATTACHMENTS

__all__ = [
    "ATTACHMENT_END",
    "DATA",
    "END",
    "MANIFEST",
    "MAX_DATA_BODY",
    "MAX_MANIFEST_BODY",
    "RecordParser",
    "record_header",
]

END = 0x00
DATA = 0x01
ATTACHMENT_END = 0x02
MANIFEST = 0x03
MAX_DATA_BODY = 1024 * 1024
MAX_MANIFEST_BODY = 8 * 1024 * 1024
HEADER = struct.Struct(">BI")


def record_header(record_type: int, length: int) -> bytes:
    return HEADER.pack(record_type, length)


@dataclass(frozen=True)
class DataPiece:
    """Attachment bytes (part of a DATA record)."""

    data: bytes


@dataclass(frozen=True)
class AttachmentClosed:
    """An ATTACHMENT_END record."""


@dataclass(frozen=True)
class ManifestBytes:
    """The MANIFEST record's body."""

    body: bytes


RecordEvent = DataPiece | AttachmentClosed | ManifestBytes


class RecordParser:
    """Parses decrypted plaintext incrementally and enforces the record grammar and padding."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._type = -1
        self._remaining = 0
        self._manifest = bytearray()
        self._manifest_seen = False
        self._in_attachment = False
        self._attachments = 0
        self.ended_at: int | None = None  # plaintext length through the END record
        self.total = 0

    def feed(self, plaintext: bytes) -> list[RecordEvent]:
        events: list[RecordEvent] = []
        view = memoryview(plaintext)
        start_total = self.total
        self.total += len(plaintext)
        if self.ended_at is not None:
            if plaintext.count(0) != len(plaintext):
                raise PayloadCorrupted("non-zero bytes in the padding")
            return events
        pos = 0
        n = len(view)
        while pos < n:
            if self._remaining == 0 and self._type == -1:
                take = min(5 - len(self._head), n - pos)
                self._head += view[pos:pos + take]
                pos += take
                if len(self._head) < 5:
                    break
                rtype, length = HEADER.unpack(self._head)
                self._head.clear()
                self._start_record(rtype, length)
                if rtype == END:
                    self.ended_at = start_total + pos
                    if plaintext.count(0, pos) != n - pos:
                        raise PayloadCorrupted("non-zero bytes in the padding")
                    return events
                if length == 0:
                    self._finish_record(events)
                continue
            take = min(self._remaining, n - pos)
            piece = view[pos:pos + take]
            if self._type == DATA:
                # A chunk wholly inside a DATA record is passed on without a copy.
                events.append(DataPiece(plaintext if take == n else bytes(piece)))
            else:
                self._manifest += piece
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                self._finish_record(events)
        return events

    def _start_record(self, rtype: int, length: int) -> None:
        if self._manifest_seen and rtype != END:
            raise PayloadCorrupted("only the end record may follow the manifest")
        if rtype == DATA:
            if not 0 < length <= MAX_DATA_BODY:
                raise PayloadCorrupted("an attachment data record has an invalid length")
            if not self._in_attachment:
                if self._attachments >= MAX_ATTACHMENTS:
                    raise PayloadCorrupted("too many attachments")
                self._in_attachment = True
        elif rtype == ATTACHMENT_END:
            if length != 0:
                raise PayloadCorrupted("an attachment end record must be empty")
            if self._attachments >= MAX_ATTACHMENTS:
                raise PayloadCorrupted("too many attachments")
        elif rtype == MANIFEST:
            if self._in_attachment:
                raise PayloadCorrupted("the manifest follows an unterminated attachment")
            if not 0 < length <= MAX_MANIFEST_BODY:
                raise PayloadCorrupted("the manifest record has an invalid length")
            self._manifest_seen = True
        elif rtype == END:
            if length != 0:
                raise PayloadCorrupted("the end record must be empty")
            if not self._manifest_seen:
                raise PayloadCorrupted("the end record comes before the manifest")
        else:
            raise PayloadCorrupted(f"unknown record type {rtype}")
        self._type = rtype
        self._remaining = length

    def _finish_record(self, events: list[RecordEvent]) -> None:
        if self._type == ATTACHMENT_END:
            self._in_attachment = False
            self._attachments += 1
            events.append(AttachmentClosed())
        elif self._type == MANIFEST:
            events.append(ManifestBytes(bytes(self._manifest)))
            self._manifest.clear()
        self._type = -1
