"""The public reporting site: plain server-rendered pages that work without JavaScript.

Handlers are thin: read the request, call the submission and storage verbs, render. Two
cookies only, both HttpOnly, SameSite=Strict, Path=/ and without Max-Age (gone when the browser
closes): ``srdb_csrf`` (a random value; forms carry its HMAC) and ``srdb_session`` (a returning
source's session, after logging in with a return code).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from dropbox_envelope import Decryptor, EnvelopeError
from dropbox_envelope.codes import MAX_CODE_INPUT, derive_credentials, parse_code, verify_code
from dropbox_envelope.errors import InvalidCode
from dropbox_envelope.keys import SecretKey

from .appkeys import BACKEND
from .backend import Backend, Busy, Session
from .config import Recipient
from .i18n import LANGUAGES, N_, Message
from .questionnaire import InvalidAnswers, ValidReport, triage, validate_report
from .render import gettext_for, page_language, render, setup_templates
from .storage import Storage
from .submission import (
    BLOCK,
    FormReader,
    Rejected,
    body_read,
    form_data_reader,
    prepare_source,
    receive_envelope,
    upload_slot,
)
from .wrapping import StoredFile

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "setup_routes"]

CSRF_COOKIE = "srdb_csrf"
SESSION_COOKIE = "srdb_session"
CSRF_HEADER = "X-CSRF-Token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,128}")
_REPLY_ID = re.compile(r"[0-9a-f]{32}")
NOT_KNOWN = Message(N_("This return code is not known here. Check each digit."))
# What parse_code says, as catalog entries (dropbox_envelope stays free of gettext).
_CODE_MESSAGES = {
    "This return code is too long. It has 25 digits.":
        N_("This return code is too long. It has 25 digits."),
    "A return code has only digits (0-9).": N_("A return code has only digits (0-9)."),
    "This return code has a typing mistake. Check each digit.":
        N_("This return code has a typing mistake. Check each digit."),
}
_WRONG_LENGTH = N_("A return code has 25 digits; this one has %(count)s.")
MAX_SMALL_FORM = 4096  # bytes: login, delete, logout
MAX_REPLY_BYTES = 16 * 1024 * 1024  # replies larger than this are not opened in the page
# Multipart framing and text fields on top of the files; anything announcing more than this
# over the limit is refused before a byte is read.
FORM_OVERHEAD = 1024 * 1024


def setup_routes(app: web.Application) -> None:
    """Every page at its plain address and under each language prefix (``/es/report``): the
    prefix is how a chosen language is remembered, without a cookie."""
    setup_templates(app)
    r = app.router
    prefix = "/{lang:" + "|".join(lang.code for lang in LANGUAGES) + "}"
    r.add_get("/", index, name="index")
    r.add_get(prefix, index)
    r.add_get(prefix + "/", index)
    for path, get, post in (
            ("/report", report_form, report_submit),
            ("/login", login_form, login_submit),
            ("/conversation", conversation, None),
            ("/conversation/send", None, conversation_send),
            ("/conversation/delete-reply", None, delete_reply),
            ("/logout", None, logout),
            ("/submit/envelope", None, submit_envelope)):
        for route in (path, prefix + path):
            if get is not None:
                r.add_get(route, get, name=path.strip("/") if route == path else None)
            if post is not None:
                r.add_post(route, post)


# -- helpers ----------------------------------------------------------------------------------

def _set_cookie(response: web.StreamResponse, name: str, value: str) -> None:
    # No Max-Age/Expires: a session cookie, gone when the browser (or private window) closes.
    response.set_cookie(name, value, path="/", httponly=True, samesite="Strict")


def _redirect(request: web.Request, location: str) -> web.Response:
    """303 See Other: after a POST, the browser loads ``location`` (in the request's chosen
    language) with GET."""
    return web.Response(status=303, headers={"Location": page_language(request).url(location)})


def _csrf_cookie(request: web.Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE)
    return value if value and _TOKEN.fullmatch(value) else None


def _csrf_ok(request: web.Request, token: str | None) -> bool:
    """The form's token matches this browser's CSRF cookie. Tokens are hex: other text (which
    ``hmac.compare_digest`` refuses with a TypeError if it is not ASCII) is simply wrong."""
    return token is not None and token.isascii() and \
        request.app[BACKEND].csrf_ok(_csrf_cookie(request), token)


def _session(request: web.Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or not _TOKEN.fullmatch(token):
        return None
    return request.app[BACKEND].sessions.get(token)


def _form_page(request: web.Request, template: str, *, status: int = 200,
               new_cookie: bool = False, **context: Any) -> web.Response:
    """A page with forms: (re)issue the CSRF cookie and put its token in the page."""
    backend = request.app[BACKEND]
    cookie = (None if new_cookie else _csrf_cookie(request)) or secrets.token_urlsafe(32)
    response = render(request, template, status=status, csrf=backend.csrf_token(cookie),
                      **context)
    _set_cookie(response, CSRF_COOKIE, cookie)
    return response


def _problem(request: web.Request, problem: str, status: int) -> web.Response:
    return render(request, "problem.html", status=status, problem=problem,
                  limits=request.app[BACKEND].config.limits, reuse=f"problem-{problem}")


def _limits_context(backend: Backend) -> dict[str, Any]:
    limits = backend.config.limits
    return {"limits": limits, "max_mb": max(1, limits.max_report_bytes // (1024 * 1024))}


def _text_limits(backend: Backend) -> dict[str, int]:
    # Bytes kept per text field: 4 per character (UTF-8) and CRLF newlines fit, so anything
    # cut off is still over its character limit and is reported as too long.
    limits = backend.config.limits
    field = 4 * limits.max_field_chars + 8
    out = {q.id: field for q in backend.questionnaire.questions}
    out["message"] = 4 * limits.max_message_chars + 8
    return out


def _max_text_parts(backend: Backend) -> int:
    return sum(max(1, len(q.options)) for q in backend.questionnaire.questions) + 8


def _too_big(request: web.Request, backend: Backend) -> bool:
    length = request.content_length
    return length is not None and length > backend.config.limits.max_report_bytes + FORM_OVERHEAD


def _first(fields: Mapping[str, Sequence[str]], name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


async def _read_checked_form(request: web.Request) -> dict[str, list[str]]:
    """A small urlencoded form whose CSRF token is valid; else :class:`Rejected`."""
    fields = await _read_small_form(request)
    if not _csrf_ok(request, _first(fields, "csrf")):
        raise Rejected(403, "csrf")
    return fields


async def _read_small_form(request: web.Request) -> dict[str, list[str]]:
    """A small urlencoded form, read into memory (never multipart: no files, no temp files)."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise Rejected(415, "unsupported")
    if (request.content_length or 0) > MAX_SMALL_FORM:
        raise Rejected(413, "malformed")
    body = bytearray()
    while chunk := await body_read(request.app[BACKEND], request.content.readany()):
        body.extend(chunk)
        if len(body) > MAX_SMALL_FORM:
            raise Rejected(413, "malformed")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "malformed") from None


# -- pages ------------------------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    return render(request, "index.html", recipients=backend.config.recipients,
                  logged_in=_session(request) is not None)


def _report_page(request: web.Request, *, status: int = 200,
                 values: Mapping[str, Sequence[str]] | None = None,
                 errors: Mapping[str, Message] | None = None, recipient: str = "",
                 files_lost: bool = False) -> web.Response:
    backend = request.app[BACKEND]
    recipients = backend.config.recipients
    # The empty form is the same for everyone: rendered once, reused (see render()).
    reuse = "" if values or errors or files_lost or recipient else "empty-report-form"
    if not recipient and len(recipients) == 1:
        recipient = recipients[0].id
    questionnaire = backend.questionnaire.in_language(page_language(request).code)
    return _form_page(request, "report.html", status=status, recipients=recipients,
                      questionnaire=questionnaire, values=values or {},
                      errors=errors or {}, chosen_recipient=recipient, files_lost=files_lost,
                      reuse=reuse, **_limits_context(backend))


def _refuse_upload(request: web.Request, backend: Backend) -> web.Response | None:
    """The page for a form upload refused before reading it (wrong type, declared too large)."""
    if request.content_type != "multipart/form-data":
        return _problem(request, "unsupported", 415)
    if _too_big(request, backend):
        return _problem(request, "too_large", 413)
    return None


def _form_reader(request: web.Request, backend: Backend, *, recipient: Recipient | None = None,
                 text_limits: Mapping[str, int], max_text_parts: int) -> FormReader:
    try:
        reader = form_data_reader(request)
    except (ValueError, KeyError, AssertionError):
        raise Rejected(400, "malformed") from None
    return FormReader(backend, reader, recipient=recipient, text_limits=text_limits,
                      max_text_parts=max_text_parts)


async def report_form(request: web.Request) -> web.Response:
    return _report_page(request)


async def report_submit(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    if (refused := _refuse_upload(request, backend)) is not None:
        return refused
    form: FormReader | None = None
    try:
        async with upload_slot(backend):
            form = _form_reader(request, backend, text_limits=_text_limits(backend),
                                max_text_parts=_max_text_parts(backend))
            async with form:
                await form.check_csrf(_csrf_cookie(request))
                # Argon2 before reading the files: when the queue is full the person learns
                # it now, not after a long upload.
                source = await prepare_source(backend)
                await form.read_rest()
                report = _validate(backend, form)
                await form.seal(report, extra={
                    "questionnaire": backend.questionnaire.id,
                    "triage": triage(backend.questionnaire, report.answers)})
                await form.commit(new_source=source)
    except Busy:
        return _problem(request, "busy", 503)
    except Rejected as exc:
        if exc.errors and form is not None:
            return _report_page(request, status=exc.status, values=form.fields,
                                errors=exc.errors, files_lost=bool(form.attachments) or
                                "attachments" in exc.errors,
                                recipient=form.recipient.id if form.recipient else "")
        return _problem(request, exc.reason, exc.status)
    # The code is shown once, here, and kept nowhere: not in a log, not in a URL.
    groups = source.code.display().split(" ")
    return _form_page(request, "receipt.html", new_cookie=True, code_groups=groups,
                      recipient=form.recipient, files=len(form.attachments))


def _validate(backend: Backend, form: FormReader) -> ValidReport:
    limits = backend.config.limits
    errors: dict[str, Message] = {}
    report = ValidReport("", "en", {})
    try:
        report = validate_report(backend.questionnaire, form.fields,
                                 max_field_chars=limits.max_field_chars,
                                 max_message_chars=limits.max_message_chars)
    except InvalidAnswers as exc:
        errors.update(exc.errors)
    if form.recipient is None:
        errors["recipient"] = Message(N_("Choose who should receive your report."))
    if errors:
        raise Rejected(400, "invalid", errors)
    return report


# -- returning sources ------------------------------------------------------------------------

def _login_page(request: web.Request, *, status: int = 200, error: str = "",
                code: str = "") -> web.Response:
    return _form_page(request, "login.html", status=status, error=error, code=code)


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login_submit(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    try:
        fields = await _read_checked_form(request)
    except Rejected as exc:
        return _problem(request, exc.reason, exc.status)
    text = _first(fields, "code")
    if len(text) > MAX_CODE_INPUT:
        return _login_page(request, status=400,
                           error=Message(N_("This return code is too long. It has 25 digits.")))
    try:
        code = parse_code(text)
    except InvalidCode as exc:
        return _login_page(request, status=400, error=_code_problem(str(exc), text), code=text)
    if not backend.argon2_has_room("login"):
        # A flood of guessed codes is refused here, before it costs a database query.
        return _problem(request, "busy", 503)
    source = await backend.storage.source_by_locator(code.locator)
    try:
        if source is None:
            # Do the same work as for a known locator, so that timing does not tell which
            # locators exist.
            await backend.run_argon2(derive_credentials, code, secrets.token_bytes(16),
                                     backend.config.code_kdf)
            raise InvalidCode(NOT_KNOWN)
        secret_key = await backend.run_argon2(verify_code, code, source.salt, source.params,
                                              source.verifier)
    except Busy:
        return _problem(request, "busy", 503)
    except InvalidCode:
        return _login_page(request, status=400, error=NOT_KNOWN, code=text)
    await backend.storage.record_visit(source.id)
    token = backend.sessions.create(source.id, source.recipient, secret_key)
    response = _redirect(request, "/conversation")
    _set_cookie(response, SESSION_COOKIE, token)
    return response


def _code_problem(problem: str, text: str) -> Message:
    """What was wrong with a typed code, as a message that can be translated."""
    if problem in _CODE_MESSAGES:
        return Message(_CODE_MESSAGES[problem])
    if problem.startswith("A return code has 25 digits"):
        return Message(_WRONG_LENGTH, count=sum(c.isdigit() for c in text))
    return Message(N_("This return code is not valid. Check each digit."))


@dataclass(frozen=True)
class ReplyView:
    id: str
    day: str
    new: bool
    message: str = ""
    files: int = 0
    failed: bool = False


def _open_reply(stored: StoredFile, key: SecretKey) -> tuple[str, int] | None:
    """Decrypt a reply in memory (blocking: run in a thread); None if it cannot be opened.
    Attachment bytes are authenticated and dropped; only the message is shown."""
    with stored:
        if stored.size > MAX_REPLY_BYTES:
            return None
        decryptor = Decryptor([key])
        try:
            for first in range(0, stored.size, BLOCK):
                decryptor.feed(stored.read(first, min(first + BLOCK, stored.size) - 1))
            manifest = decryptor.close()
        except (OSError, EnvelopeError):
            return None
    if manifest.kind != "reply":
        return None
    return manifest.message, len(manifest.attachments)


async def _read_reply(storage: Storage, reply_id: str,
                      key: SecretKey) -> tuple[str, int] | None:
    try:
        stored = await storage.open_reply(reply_id)
    except (OSError, EnvelopeError):  # missing or damaged file
        return None
    if stored is None:
        return None
    return await asyncio.to_thread(_open_reply, stored, key)


async def _conversation_page(request: web.Request, session: Session, *, status: int = 200,
                             errors: Mapping[str, Message] | None = None, message: str = "",
                             files_lost: bool = False) -> web.Response:
    backend = request.app[BACKEND]
    storage = backend.storage
    replies: list[ReplyView] = []
    for row in await storage.list_replies(session.source_id):
        opened = await _read_reply(storage, row.id, session.secret_key)
        if opened is None:
            replies.append(ReplyView(row.id, row.day, not row.seen, failed=True))
        else:
            replies.append(ReplyView(row.id, row.day, not row.seen, opened[0], opened[1]))
    await storage.mark_replies_seen(session.source_id)
    return _form_page(request, "conversation.html", status=status, replies=replies,
                      recipient=backend.config.recipient(session.recipient),
                      sent=request.query.get("sent") == "1", errors=errors or {},
                      message=message, files_lost=files_lost, **_limits_context(backend))


async def conversation(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    if session is None:
        return _redirect(request, "/login")
    return await _conversation_page(request, session)


async def conversation_send(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    # Looked up once: the session may expire while a long upload runs; the upload still lands.
    session = _session(request)
    if session is None:
        return _problem(request, "session_ended", 403)
    recipient = backend.config.recipient(session.recipient)
    if recipient is None:
        return _problem(request, "recipient_gone", 400)
    if (refused := _refuse_upload(request, backend)) is not None:
        return refused
    limits = backend.config.limits
    form: FormReader | None = None
    try:
        async with upload_slot(backend):
            form = _form_reader(request, backend, recipient=recipient,
                                text_limits={"message": 4 * limits.max_message_chars + 8},
                                max_text_parts=4)
            async with form:
                await form.check_csrf(_csrf_cookie(request))
                await form.read_rest()
                try:
                    report = validate_report(None, form.fields,
                                             max_field_chars=limits.max_field_chars,
                                             max_message_chars=limits.max_message_chars)
                except InvalidAnswers as exc:
                    raise Rejected(400, "invalid", exc.errors) from None
                if not report.message and not form.attachments:
                    raise Rejected(400, "invalid", {"message": Message(N_(
                        "Write a message or choose a file to send."))})
                await form.seal(report)
                await form.commit(session.source_id)
    except Rejected as exc:
        if exc.errors and form is not None:
            return await _conversation_page(
                request, session, status=exc.status, errors=exc.errors,
                message=_first(form.fields, "message"),
                files_lost=bool(form.attachments) or "attachments" in exc.errors)
        return _problem(request, exc.reason, exc.status)
    return _redirect(request, "/conversation?sent=1")


async def delete_reply(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    try:
        fields = await _read_checked_form(request)
    except Rejected as exc:
        return _problem(request, exc.reason, exc.status)
    session = _session(request)
    if session is None:
        return _problem(request, "session_ended", 403)
    reply_id = _first(fields, "reply")
    if not _REPLY_ID.fullmatch(reply_id):
        return _problem(request, "malformed", 400)
    await backend.storage.delete_reply(session.source_id, reply_id)
    return _redirect(request, "/conversation")


async def logout(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    try:
        await _read_checked_form(request)
    except Rejected as exc:
        return _problem(request, exc.reason, exc.status)
    backend.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = _redirect(request, "/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- envelopes sealed in the browser ---------------------------------------------------------

# Shown by the page's script; in the language of the address the envelope was sent to
# (``/es/submit/envelope``, or ``?lang=es``).
_ENVELOPE_ERRORS = {
    "unsupported": N_("The report was sent in a way this site does not accept. Nothing was "
                      "saved."),
    "csrf": N_("The form has expired. Reload the page and try again."),
    "unknown_recipient": N_("Choose who should receive your report."),
    "wrong_session": N_("While you are signed in, information goes to the agency of your "
                        "report."),
    "busy": N_("The service is busy. Please try again in a minute."),
    "too_large": N_("The report is too large."),
    "malformed": N_("The report arrived damaged or incomplete. Nothing was saved."),
    "wrong_recipients": N_("The report is not locked for this agency. Nothing was saved."),
}


def _json_error(request: web.Request, reason: str, status: int) -> web.Response:
    text = gettext_for(request)(_ENVELOPE_ERRORS[reason])
    return web.json_response({"error": text, "reason": reason}, status=status)


async def submit_envelope(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    try:
        if request.content_type != "application/octet-stream":
            raise Rejected(415, "unsupported")
        if not _csrf_ok(request, request.headers.get(CSRF_HEADER)):
            raise Rejected(403, "csrf")
        recipient = backend.config.recipient(request.query.get("recipient", ""))
        if recipient is None:
            raise Rejected(400, "unknown_recipient")
        session = _session(request)
        if session is not None and session.recipient != recipient.id:
            raise Rejected(400, "wrong_session")
        length = request.content_length
        if length is not None and length > backend.config.limits.max_report_bytes:
            raise Rejected(413, "too_large")
        async with upload_slot(backend):
            source = None if session is not None else await prepare_source(backend)
            upload = await receive_envelope(backend, request.content, recipient)
            try:
                await backend.storage.commit_envelope(
                    upload, recipient=recipient.id,
                    source_id=None if session is None else session.source_id,
                    new_source=None if source is None else source.row)
            except BaseException:
                upload.discard()
                raise
    except Busy:
        return _json_error(request, "busy", 503)
    except Rejected as exc:
        return _json_error(request, exc.reason, exc.status)
    if source is None:
        return web.json_response({"status": "received"})
    return web.json_response({"status": "received", "code": source.code.display()})
