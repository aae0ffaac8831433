"""Blocking convenience on top of :mod:`.envelope`: file objects in, file objects out.

Memory stays bounded by ``block_size`` plus one chunk, whatever the envelope size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from .envelope import AttachmentData, AttachmentDone, Decryptor, Encryptor
from .keys import PublicKey, RandomSource, SecretKey
from .manifest import Kind, Manifest

__all__ = ["AttachmentSink", "AttachmentSource", "decrypt", "encrypt"]

BLOCK_SIZE = 1024 * 1024


class Writable(Protocol):
    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class AttachmentSource:
    """A file to put into an envelope."""

    name: str
    media_type: str
    reader: BinaryIO


class AttachmentSink(Protocol):
    """Where :func:`decrypt` puts attachment ``index``'s bytes.

    ``open`` is called once per attachment (also for an empty one) and ``done`` at its end; the
    sink owns what ``open`` returns and closes it in ``done``. If :func:`decrypt` raises, the
    caller must close and discard everything the sink opened.
    """

    def open(self, index: int) -> Writable: ...

    def done(self, index: int, size: int, sha256: str) -> None: ...


def encrypt(out: Writable, recipients: list[PublicKey], *,
            attachments: Iterable[AttachmentSource] = (),
            kind: Kind = "report", language: str = "", message: str = "",
            answers: Mapping[str, Any] | None = None,
            random: RandomSource = os.urandom, block_size: int = BLOCK_SIZE,
            progress: Callable[[int], None] | None = None) -> int:
    """Seal a whole submission into ``out``; returns the number of bytes written."""
    encryptor = Encryptor(recipients, random=random)
    written = 0

    def emit(pieces: Iterable[bytes]) -> None:
        nonlocal written
        for piece in pieces:
            out.write(piece)
            written += len(piece)

    for source in attachments:
        encryptor.begin_attachment(source.name, source.media_type)
        while block := source.reader.read(block_size):
            emit(encryptor.write(block))
            if progress is not None:
                progress(len(block))
        emit(encryptor.end_attachment())
    emit(encryptor.finish(kind=kind, language=language, message=message, answers=answers))
    return written


def decrypt(src: BinaryIO, identities: list[SecretKey], sink: AttachmentSink, *,
            block_size: int = BLOCK_SIZE,
            progress: Callable[[int], None] | None = None) -> Manifest:
    """Open an envelope from ``src``, streaming attachments into ``sink``.

    Everything written to the sink is provisional until this returns: on any exception the
    caller must discard it (see docs/PROTOCOL.md §6, "release of plaintext").
    """
    decryptor = Decryptor(identities)
    current: Writable | None = None
    while block := src.read(block_size):
        for event in decryptor.feed(block):
            if isinstance(event, AttachmentData):
                if current is None:
                    current = sink.open(event.index)
                current.write(event.data)
            elif isinstance(event, AttachmentDone):
                if current is None:
                    sink.open(event.index)
                current = None
                sink.done(event.index, event.size, event.sha256)
        if progress is not None:
            progress(len(block))
    return decryptor.close()
