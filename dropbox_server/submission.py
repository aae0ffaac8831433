"""Receiving submissions: a browser form sealed as it streams in, or a ready-made envelope.

The rule both paths keep: not one plaintext byte reaches the disk. Form text stays in memory
(bounded); attachments go through the Encryptor chunk by chunk and only ciphertext is written to
``tmp/``. Nothing becomes visible until :meth:`Storage.commit_envelope` has fsync'd it, and any
failure before that discards the temporary file, so the store is unchanged.

The event loop only receives and checks; sealing, hashing, wrapping and writing run on the
upload's own thread (:class:`~.offload.Offload`), fed in batches of about 1 MiB with at most two
in flight, so memory stays bounded however fast the client sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import BodyPartReader, MultipartReader, StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam

from dropbox_envelope import Encryptor, EnvelopeError, LimitExceeded, StructureChecker
from dropbox_envelope.codes import Code, SourceCredentials, generate_code, new_credentials
from dropbox_envelope.manifest import MAX_NAME_CHARS

from .backend import Backend
from .config import Recipient
from .i18n import N_, Message
from .offload import BATCH_SIZE, Offload
from .questionnaire import ValidReport
from .storage import Upload

__all__ = [
    "BLOCK",
    "FormReader",
    "NewSource",
    "Rejected",
    "form_data_reader",
    "prepare_source",
    "receive_envelope",
    "upload_slot",
]

BLOCK = 65536  # bytes read from the request at a time
# A file part's body is read in larger pieces: aiohttp copies each piece and the one before it
# to look for the boundary, so bigger reads cost the same copying but fewer turns of the loop.
FILE_READ = 256 * 1024
MAX_FIELD_NAME = 100
MAX_SMALL_FIELD = 256  # csrf, recipient, language
# Bidirectional controls can make "photo_gpj.exe" display as "photo_exe.jpg".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_BAD_NAME = N_("A file name is not valid. Rename the file and choose it again.")
_FORM_DATA = re.compile(r"\s*multipart\s*/\s*form-data\s*(?=;|$)", re.IGNORECASE)
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class Rejected(Exception):
    """A submission that cannot be accepted; nothing from it was stored.

    ``reason`` names the problem for the page shown (``busy``, ``csrf``, ``malformed``,
    ``too_large``, ``invalid``...); ``errors`` maps form fields to messages for the person, and
    when it is not empty the form can be shown again with them.
    """

    def __init__(self, status: int, reason: str,
                 errors: Mapping[str, Message] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.errors = dict(errors or {})


@contextlib.asynccontextmanager
async def upload_slot(backend: Backend) -> AsyncIterator[None]:
    """Count an upload in progress; refuse (503) when too many already are."""
    if backend.uploads_in_progress >= backend.config.limits.max_concurrent_uploads:
        raise Rejected(503, "busy")
    backend.uploads_in_progress += 1
    try:
        yield
    finally:
        backend.uploads_in_progress -= 1


T = TypeVar("T")


async def body_read(backend: Backend, read: Awaitable[T]) -> T:
    """Await one read of a request body; ``Rejected(408)`` when not one byte arrives within
    ``body_idle_timeout_seconds``.

    The header timeout never cuts off a request whose body is being read, so without this a
    client could send its head and stop, holding an upload slot for ever. Only silence counts:
    an upload that keeps sending, however slowly (a large report over Tor), is never cut off.
    """
    try:
        async with asyncio.timeout(backend.config.limits.body_idle_timeout_seconds):
            return await read
    except TimeoutError:
        raise Rejected(408, "malformed") from None


def filename_problem(name: str) -> Message | None:
    """Why an attachment's file name cannot be accepted, or None if it can."""
    if len(name) > MAX_NAME_CHARS:
        return Message(N_("A file name is too long (at most %(limit)s characters). Rename the "
                          "file."), limit=MAX_NAME_CHARS)
    if "/" in name or "\\" in name or name.strip() in ("", ".", ".."):
        return Message(_BAD_NAME)
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
            return Message(N_("A file name contains hidden characters. Rename the file and "
                              "choose it again."))
    return None


def _media_type(header: str | None) -> str:
    value = (header or "").split(";", 1)[0].strip().lower()
    return value if _MEDIA_TYPE.fullmatch(value) else "application/octet-stream"


def form_data_reader(request: web.BaseRequest) -> MultipartReader:
    """The parts of a ``multipart/form-data`` request (``ValueError``/``KeyError`` if its
    Content-Type has no usable boundary).

    Unlike ``request.multipart()``, the reader skips RFC 7578's ``_charset_`` field (our forms
    never send one): to look for it, aiohttp parses the first part's Content-Disposition
    inside ``next()``, where a malformed one is reported with ``warnings.warn`` quoting the
    header, which is request data (a file name, say) that must not reach a log, and which
    cannot be silenced there without changing the process's warning filters across an
    ``await``. :meth:`FormReader._name` reads names with those warnings silenced instead.
    """
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    if not _FORM_DATA.match(content_type):
        raise ValueError("not multipart/form-data")
    mixed = _FORM_DATA.sub("multipart/mixed", content_type, count=1)
    return MultipartReader({hdrs.CONTENT_TYPE: mixed}, request.content)


class FormReader:
    """A ``multipart/form-data`` submission read part by part.

    Text fields are kept in memory, each bounded; each file part is sealed as it arrives. Use as
    an async context manager: leaving it without :meth:`commit` discards the ciphertext.
    Call :meth:`check_csrf` first, then :meth:`read_rest`, then :meth:`seal` and :meth:`commit`.
    """

    def __init__(self, backend: Backend, reader: MultipartReader, *,
                 recipient: Recipient | None = None, text_limits: Mapping[str, int],
                 max_text_parts: int) -> None:
        self._backend = backend
        self._reader = reader
        self._fixed_recipient = recipient is not None
        self._text_limits = text_limits
        self._max_text_parts = max_text_parts
        self.recipient = recipient
        self.fields: dict[str, list[str]] = {}
        self.attachments: list[str] = []
        self.received = 0  # bytes of part bodies read so far
        self._text_parts = 0
        self._encryptor: Encryptor | None = None
        self._upload: Upload | None = None
        # The encryptor and the upload belong to this thread while it runs (until sealed).
        self._offload: Offload | None = None
        self._committed = False

    async def __aenter__(self) -> FormReader:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.discard()

    async def discard(self) -> None:
        """Delete the ciphertext written so far, unless committed (after the upload's thread
        has stopped, so nothing writes to the file any more)."""
        upload = self._upload
        if upload is None or self._committed:
            return
        if self._offload is not None:
            await self._offload.abort(then=upload.discard)
        else:
            upload.discard()

    # -- reading ------------------------------------------------------------------------------

    async def check_csrf(self, cookie: str | None) -> None:
        """The first part must be the ``csrf`` field matching the cookie (403 otherwise)."""
        part = await self._next_part()
        if part is None or self._name(part) != "csrf" or self._filename(part) is not None:
            raise Rejected(403, "csrf")
        token, _ = await self._read_text(part, MAX_SMALL_FIELD)
        # A token is hex; hmac.compare_digest raises TypeError on non-ASCII text.
        if not token.isascii() or not self._backend.csrf_ok(cookie, token):
            raise Rejected(403, "csrf")

    async def read_rest(self) -> None:
        """Read every remaining part: text into :attr:`fields`, files sealed to the recipient."""
        while (part := await self._next_part()) is not None:
            name = self._name(part)
            filename = self._filename(part)
            if filename is not None:
                await self._read_file(part, name, filename)
            elif name == "recipient" and not self._fixed_recipient:
                await self._read_recipient(part)
            else:
                await self._read_field(part, name)

    async def _read_field(self, part: BodyPartReader, name: str) -> None:
        self._text_parts += 1
        if self._text_parts > self._max_text_parts:
            raise Rejected(400, "malformed")
        limit = self._text_limits.get(name, MAX_SMALL_FIELD)
        value, _ = await self._read_text(part, limit)
        self.fields.setdefault(name, []).append(value)

    async def _read_recipient(self, part: BodyPartReader) -> None:
        value, _ = await self._read_text(part, MAX_SMALL_FIELD)
        if self.recipient is not None:
            raise Rejected(400, "malformed")
        recipient = self._backend.config.recipient(value)
        if recipient is None:
            raise Rejected(400, "invalid", {"recipient": Message(N_(
                "Choose who should receive your report from the list."))})
        self.recipient = recipient

    async def _read_file(self, part: BodyPartReader, name: str, filename: str) -> None:
        if name != "attachments":
            raise Rejected(400, "malformed")
        if filename == "":
            # An empty file input ("no file chosen") still sends a part with an empty name.
            if await self._read_chunk(part):
                raise Rejected(400, "invalid", {"attachments": Message(N_(
                    "A file has no name. Rename it and choose it again."))})
            return
        problem = filename_problem(filename)
        if problem is not None:
            raise Rejected(400, "invalid", {"attachments": problem})
        if self.recipient is None:
            # Files are sealed as they arrive, so whom to seal them to must come first.
            raise Rejected(400, "invalid", {"recipient": Message(N_(
                "Choose who should receive your report."))})
        if len(self.attachments) >= self._backend.config.limits.max_files:
            raise Rejected(400, "invalid", {
                "attachments": Message(N_("You can send at most %(files)s files with one "
                                          "report."),
                                       files=self._backend.config.limits.max_files)})
        encryptor, offload = self._ensure_encryptor()
        media_type = _media_type(part.headers.get(hdrs.CONTENT_TYPE))
        try:
            await offload.call(lambda: encryptor.begin_attachment(filename, media_type))
        except ValueError:
            raise Rejected(400, "invalid", {"attachments": Message(_BAD_NAME)}) from None
        while chunk := await self._read_chunk(part, FILE_READ):
            await offload.write(chunk)
        await offload.call(lambda: self._write(encryptor.end_attachment()))
        self.attachments.append(filename)

    async def _read_text(self, part: BodyPartReader, limit: int) -> tuple[str, bool]:
        """A text part's value, keeping at most ``limit`` bytes; True if it was longer."""
        buf = bytearray()
        too_long = False
        while chunk := await self._read_chunk(part):
            room = limit - len(buf)
            if len(chunk) > room:
                too_long = True
                chunk = chunk[:max(room, 0)]
            buf.extend(chunk)
        try:
            # A cut-off value may end inside a character; it is over its limit anyway.
            return buf.decode("utf-8", errors="ignore" if too_long else "strict"), too_long
        except UnicodeDecodeError:
            raise Rejected(400, "malformed") from None

    async def _next_part(self) -> BodyPartReader | None:
        try:
            part = await body_read(self._backend, self._reader.next())
        except (ValueError, RuntimeError, HttpProcessingError, ConnectionError):
            raise Rejected(400, "malformed") from None
        if part is None:
            return None
        if not isinstance(part, BodyPartReader) or hdrs.CONTENT_ENCODING in part.headers or \
                hdrs.CONTENT_TRANSFER_ENCODING in part.headers:
            raise Rejected(400, "malformed")
        return part

    async def _read_chunk(self, part: BodyPartReader, size: int = BLOCK) -> bytes:
        try:
            chunk = await body_read(self._backend, part.read_chunk(size))
        except (ValueError, RuntimeError, HttpProcessingError, ConnectionError):
            raise Rejected(400, "malformed") from None
        self.received += len(chunk)
        limit = self._backend.config.limits.max_report_bytes
        if self.received > limit:
            raise Rejected(413, "too_large", {
                "attachments": Message(N_("Your files are too large: together they can be "
                                          "at most %(mb)s MB. Please choose fewer or smaller "
                                          "files."), mb=max(1, limit // (1024 * 1024)))})
        return chunk

    @staticmethod
    def _name(part: BodyPartReader) -> str:
        with warnings.catch_warnings():
            # A malformed Content-Disposition makes aiohttp warn and return None.
            warnings.simplefilter("ignore", BadContentDispositionHeader)
            warnings.simplefilter("ignore", BadContentDispositionParam)
            name = part.name
        if not name or len(name) > MAX_FIELD_NAME:
            raise Rejected(400, "malformed")
        return name

    @staticmethod
    def _filename(part: BodyPartReader) -> str | None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadContentDispositionHeader)
            warnings.simplefilter("ignore", BadContentDispositionParam)
            return part.filename

    # -- sealing ------------------------------------------------------------------------------

    def _ensure_encryptor(self) -> tuple[Encryptor, Offload]:
        if self._encryptor is None or self._offload is None:
            if self.recipient is None:
                raise Rejected(400, "invalid", {"recipient": Message(N_(
                    "Choose who should receive your report."))})
            encryptor = Encryptor(self.recipient.keys)
            self._upload = self._backend.storage.new_upload()
            self._encryptor = encryptor
            self._offload = Offload(lambda batch: self._write(encryptor.write(batch)))
        return self._encryptor, self._offload

    def _write(self, pieces: Iterable[bytes]) -> None:
        # On the upload's thread. Written in groups of about a batch: one hash update, wrap
        # and os.write per megabyte instead of per small piece, and memory stays bounded where
        # ``pieces`` is long (finish() yields the padding, about 3 % of the envelope, a chunk
        # at a time).
        upload = self._upload
        if upload is None:  # unreachable: created with the encryptor
            raise RuntimeError("no upload")
        group: list[bytes] = []
        size = 0
        for piece in pieces:
            group.append(piece)
            size += len(piece)
            if size >= BATCH_SIZE:
                upload.write(b"".join(group))
                group.clear()
                size = 0
        if group:
            upload.write(b"".join(group))

    async def seal(self, report: ValidReport, *,
                   extra: Mapping[str, Any] | None = None) -> None:
        """Write the manifest and the end of the envelope, and wait until every byte of it is
        in the file (not yet fsync'd: :meth:`commit` does that)."""
        encryptor, offload = self._ensure_encryptor()
        try:
            await offload.call(lambda: self._write(encryptor.finish(
                kind="report", language=report.language, message=report.message,
                answers=report.answers, extra=extra)))
        except EnvelopeError:
            raise Rejected(400, "invalid", {"message": Message(N_(
                "Your report is too long to send in one go. Please shorten it."))}) from None
        await offload.close()

    async def commit(self, source_id: str | None = None,
                     new_source: NewSource | None = None) -> str:
        """Make the envelope durable and listed (fsync'd), creating ``new_source`` in the same
        transaction; returns the envelope's id."""
        if self._upload is None or self.recipient is None:
            raise RuntimeError("seal the envelope first")
        envelope_id, _source_id = await self._backend.storage.commit_envelope(
            self._upload, recipient=self.recipient.id, source_id=source_id,
            new_source=None if new_source is None else new_source.row)
        self._committed = True
        return envelope_id


# -- envelopes sealed by the browser --------------------------------------------------------

async def receive_envelope(backend: Backend, content: StreamReader,
                           recipient: Recipient) -> Upload:
    """Stream a ready-made envelope into ``tmp/``, checking its structure (no key needed) and
    that it is sealed to every key of ``recipient``. The caller commits or discards it."""
    checker = StructureChecker(max_size=backend.config.limits.max_report_bytes)
    upload = backend.storage.new_upload()
    try:
        offload = Offload(upload.write)  # hashing, wrapping and writing, off the event loop
    except BaseException:
        upload.discard()  # no thread started (say, too many threads): nothing else to wait for
        raise
    try:
        try:
            # Whatever has arrived, in one piece: fewer turns of this loop than 64 KiB reads.
            while chunk := await body_read(backend, content.readany()):
                checker.feed(chunk)
                await offload.write(chunk)
            info = checker.close()
        except LimitExceeded:
            raise Rejected(413, "too_large") from None
        except (EnvelopeError, HttpProcessingError, ConnectionError):
            raise Rejected(400, "malformed") from None
        if info.recipients != len(recipient.keys):
            raise Rejected(400, "wrong_recipients")
        await offload.close()
    except BaseException:
        await offload.abort(then=upload.discard)
        raise
    return upload


# -- sources (people who can come back with a return code) -----------------------------------

@dataclass(frozen=True, repr=False)
class NewSource:
    """A return code and its credentials, before anything is stored."""

    code: Code
    credentials: SourceCredentials

    @property
    def row(self) -> tuple[str, SourceCredentials]:
        """What :meth:`Storage.commit_envelope` stores: the locator and the credentials."""
        return self.code.locator, self.credentials


async def prepare_source(backend: Backend) -> NewSource:
    """Pick an unused return code and run Argon2id on it. Raises ``Busy`` when the Argon2 queue
    is full; nothing is stored either way."""
    code = generate_code()
    while await backend.storage.locator_taken(code.locator):
        code = generate_code()
    credentials = await backend.run_argon2(new_credentials, code, backend.config.code_kdf,
                                           lane="new_report")
    return NewSource(code, credentials)

