"""The staff API: signed JSON requests on their own port (and onion service).

Every request carries the staff headers of :mod:`dropbox_envelope.staffauth`; the signature
middleware checks them before any handler runs, for every path (so an unsigned caller learns
nothing, not even which paths exist). Requests with a body also send ``X-SRDB-Body-SHA256``,
which the signature covers; the handler that streams the body compares it at the end.

Endpoints, all under ``/staff/v1/``:

``GET  envelopes``                   new envelopes: id, source_id, recipient, day, size, sha256
``GET  envelopes/{id}``              the ciphertext; ``ETag: "sha256:<hex>"``; single byte ranges
``POST envelopes/{id}/ack``          delete it (204, also when it is already gone: idempotent)
``GET  sources?waiting=1``           sources with replies they have not read yet
``GET  sources/{id}``                the source's X25519 reply key
``POST sources/{id}/replies``        store a reply envelope (one stanza, at most 8 MiB) → 201

Errors are JSON ``{"error": "..."}`` with the usual status codes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn

from aiohttp import web

from dropbox_envelope.envelope import StructureChecker
from dropbox_envelope.errors import EnvelopeError, LimitExceeded, WrappedFileCorrupted
from dropbox_envelope.header import STANZA_X25519
from dropbox_envelope.staffauth import (
    API_PREFIX,
    EMPTY_BODY_SHA256,
    HEADER_BODY_SHA256,
    MAX_REPLY_BYTES,
    BadSignature,
    verify_request,
)

from .appkeys import BACKEND
from .backend import Backend
from .offload import run_to_the_end
from .storage import Upload
from .wrapping import StoredFile

__all__ = [
    "HEADER_BODY_SHA256",
    "MAX_REPLY_BYTES",
    "PREFIX",
    "STAFF_NAME",
    "parse_range",
    "setup_routes",
]

PREFIX = API_PREFIX

STAFF_NAME = web.RequestKey("staff_name", str)
"""The staff member whose key signed the request (set by the signature middleware)."""

SEND_BLOCK = 256 * 1024
RECEIVE_BLOCK = 64 * 1024
ALLOWED_METHODS = ("GET", "POST")
_ID = re.compile(r"[0-9a-f]{32}")
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_REPLY_ROUTE = "staff-reply"  # the only route that takes a request body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- errors ----------------------------------------------------------------------------------

def _fail(status: type[web.HTTPException], message: str, *,
          headers: dict[str, str] | None = None) -> NoReturn:
    raise status(text=json.dumps({"error": message}), content_type="application/json",
                 headers=headers)


def _too_large(actual: int) -> NoReturn:
    raise web.HTTPRequestEntityTooLarge(
        max_size=MAX_REPLY_BYTES, actual_size=actual, content_type="application/json",
        text=json.dumps({"error": f"a reply envelope is at most {MAX_REPLY_BYTES} bytes"}))


def _json_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, body too large...) as JSON like ours."""
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)


# --- the signature check ---------------------------------------------------------------------

@web.middleware
async def signature_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse anything but GET/POST, then anything not signed by an authorised staff key."""
    try:
        if request.method not in ALLOWED_METHODS:
            raise web.HTTPMethodNotAllowed(request.method, ALLOWED_METHODS)
        backend = request.app[BACKEND]
        config = backend.config
        declared = request.headers.get(HEADER_BODY_SHA256, EMPTY_BODY_SHA256)
        try:
            request[STAFF_NAME] = verify_request(
                dict(request.headers), request.method, request.path_qs, declared,
                authorised=config.staff_keys, nonces=backend.nonces, now=int(time.time()),
                not_before=backend.started_at, window=config.limits.staff_signature_window)
        except BadSignature as exc:
            _fail(web.HTTPUnauthorized, str(exc), headers={"WWW-Authenticate": "SRDB-Staff-v1"})
        if request.match_info.route.name != _REPLY_ROUTE and (
                request.body_exists or declared != EMPTY_BODY_SHA256):
            _fail(web.HTTPBadRequest, "this request takes no body")
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _json_error(exc)


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        _fail(web.HTTPBadRequest, f"{name} must be 32 lowercase hex digits")
    return value


# --- envelopes -------------------------------------------------------------------------------

async def list_envelopes(request: web.Request) -> web.Response:
    rows = await request.app[BACKEND].storage.list_envelopes()
    return web.json_response({"envelopes": [
        {"id": r.id, "source_id": r.source_id, "recipient": r.recipient, "day": r.day,
         "size": r.size, "sha256": r.sha256} for r in rows]})


class RangeNotSatisfiable(Exception):
    """The requested byte range starts beyond the end of the file."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` byte positions (inclusive) for a single-range ``Range`` header, or
    None to send the whole file: no header, a syntax we ignore, or several ranges (RFC 9110
    lets a server ignore Range). Raises :class:`RangeNotSatisfiable`."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        if not last_text:
            return None
        length = int(last_text)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid, so ignored
    if first >= size:
        raise RangeNotSatisfiable()
    return first, min(int(last_text), size - 1) if last_text else size - 1


async def get_envelope(request: web.Request) -> web.StreamResponse:
    """The envelope as the client sent it: the stored file is unwrapped block by block (only the
    blocks a range touches are read), and every byte sent has been authenticated."""
    envelope_id = _id(request, "envelope_id")
    storage = request.app[BACKEND].storage
    row = await storage.envelope(envelope_id)
    if row is None:
        _fail(web.HTTPNotFound, "no such envelope (it may have been acknowledged already)")
    try:
        stored = await storage.open_envelope(envelope_id)
    except FileNotFoundError:
        stored = None
    except WrappedFileCorrupted:
        _fail(web.HTTPInternalServerError, "the envelope's file on the server is damaged")
    if stored is None:
        if await storage.envelope(envelope_id) is None:  # acknowledged meanwhile
            _fail(web.HTTPNotFound, "no such envelope (it was just acknowledged)")
        _fail(web.HTTPInternalServerError, "the envelope's file is missing on the server")
    try:
        return await _send_envelope(request, stored, row.size, f'"sha256:{row.sha256}"')
    finally:
        stored.close()


async def _send_envelope(request: web.Request, stored: StoredFile, size: int,
                         etag: str) -> web.StreamResponse:
    if stored.size != size:  # e.g. a file cut short at a block boundary
        _fail(web.HTTPInternalServerError, "the envelope's file on the server is damaged")
    headers = {"ETag": etag, "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream"}
    if_range = request.headers.get("If-Range")
    wanted = request.headers.get("Range") if if_range in (None, etag) else None
    try:
        span = parse_range(wanted, size)
    except RangeNotSatisfiable:
        _fail(web.HTTPRequestRangeNotSatisfiable, "the range starts beyond the end",
              headers={"Content-Range": f"bytes */{size}"})
    if span is None:
        first, last, status = 0, size - 1, 200
    else:
        first, last, status = span[0], span[1], 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if size == 0:  # never stored (envelopes are not empty), but not a reason to fail
        return web.Response(status=200, headers=headers)
    # The first block is opened before anything is sent, so a damaged file is a clean 500.
    try:
        block = await asyncio.to_thread(stored.read, first, min(first + SEND_BLOCK, last + 1) - 1)
    except WrappedFileCorrupted:
        _fail(web.HTTPInternalServerError, "the envelope's file on the server is damaged")
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = last - first + 1
    await response.prepare(request)
    position = first
    while True:
        await response.write(block)
        position += len(block)
        if position > last:
            break
        try:
            block = await asyncio.to_thread(stored.read, position,
                                            min(position + SEND_BLOCK, last + 1) - 1)
        except WrappedFileCorrupted:
            # Too late for an error status: break the connection (the client sees a short
            # body), never send unchecked bytes.
            if request.transport is not None:
                request.transport.close()
            raise ConnectionResetError("stored envelope damaged while sending") from None
    await response.write_eof()
    return response


async def ack_envelope(request: web.Request) -> web.Response:
    """Forget an envelope the staff member has stored safely. Idempotent: acknowledging one that
    is already gone is also 204, so a retry after a lost response just succeeds."""
    envelope_id = _id(request, "envelope_id")
    await request.app[BACKEND].storage.delete_envelope(envelope_id)
    return web.Response(status=204)


# --- sources and replies ---------------------------------------------------------------------

async def waiting_sources(request: web.Request) -> web.Response:
    if request.query.get("waiting") != "1" or len(request.query) != 1:
        _fail(web.HTTPBadRequest, "only ?waiting=1 (sources with unread replies) is supported")
    sources = await request.app[BACKEND].storage.sources_with_unseen_replies()
    return web.json_response({"sources": sources})


async def get_source(request: web.Request) -> web.Response:
    source_id = _id(request, "source_id")
    row = await request.app[BACKEND].storage.source(source_id)
    if row is None:
        _fail(web.HTTPNotFound, "no source with this ID")
    return web.json_response({"source_id": row.id, "public_key": row.public_key,
                              "recipient": row.recipient})


def _absorb(checker: StructureChecker, upload: Upload, block: bytes) -> None:
    checker.feed(block)
    upload.write(block)


async def _receive_reply(request: web.Request, backend: Backend, declared: str,
                         upload: Upload) -> None:
    checker = StructureChecker(max_size=MAX_REPLY_BYTES)
    try:
        async for block in request.content.iter_chunked(RECEIVE_BLOCK):
            await run_to_the_end(_absorb, checker, upload, block)  # see post_reply's discard
        info = checker.close()
    except LimitExceeded:
        _too_large(checker.info.size)
    except EnvelopeError as exc:
        _fail(web.HTTPBadRequest, f"not a valid envelope: {exc}")
    if upload.sha256 != declared:
        _fail(web.HTTPBadRequest, "the body does not match its signed SHA-256; nothing stored")
    if info.stanza_types != [STANZA_X25519]:
        _fail(web.HTTPBadRequest, "a reply envelope must be sealed to exactly one key: the "
                                  "source's reply key")


async def post_reply(request: web.Request) -> web.Response:
    source_id = _id(request, "source_id")
    declared = request.headers.get(HEADER_BODY_SHA256)
    if declared is None:
        _fail(web.HTTPBadRequest, f"a reply needs the {HEADER_BODY_SHA256} header")
    if request.content_type != "application/octet-stream":
        _fail(web.HTTPUnsupportedMediaType, "send the reply as application/octet-stream")
    if request.content_length is not None and request.content_length > MAX_REPLY_BYTES:
        _too_large(request.content_length)
    backend = request.app[BACKEND]
    if await backend.storage.source(source_id) is None:
        _fail(web.HTTPNotFound, "no source with this ID")
    upload = backend.storage.new_upload()
    try:
        await _receive_reply(request, backend, declared, upload)
        reply_id = await backend.storage.commit_reply(upload, source_id=source_id)
    except BaseException:
        upload.discard()
        raise
    return web.json_response({"reply_id": reply_id}, status=201)


def setup_routes(app: web.Application) -> None:
    app.middlewares.append(signature_middleware)
    router = app.router
    router.add_get(f"{PREFIX}/envelopes", list_envelopes, allow_head=False)
    router.add_get(f"{PREFIX}/envelopes/{{envelope_id}}", get_envelope, allow_head=False)
    router.add_post(f"{PREFIX}/envelopes/{{envelope_id}}/ack", ack_envelope)
    router.add_get(f"{PREFIX}/sources", waiting_sources, allow_head=False)
    router.add_get(f"{PREFIX}/sources/{{source_id}}", get_source, allow_head=False)
    router.add_post(f"{PREFIX}/sources/{{source_id}}/replies", post_reply, name=_REPLY_ROUTE)
