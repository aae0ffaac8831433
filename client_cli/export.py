"""``dropbox-client export``: one decrypted report as evidence, offline.

Writes, for ``--out CASE.html``:

- ``CASE.html``: a self-contained page (no scripts, no external resources, a Content Security
  Policy forbidding any load except inline images; everything from the report escaped) that
  prints cleanly to PDF from any browser;
- ``CASE.json`` (or ``--json-out``): the same content as data, plus the SHA-256 of every file
  the export wrote;
- ``CASE-files/original/``: the attachments, byte for byte;
- ``CASE-files/safe-to-share/``: copies of images and PDFs with location and device metadata
  removed (:mod:`client_cli.sanitize`); other files get no safe copy, and the export says so.

The chain of custody lists what the tools recorded: the day the server received the envelope,
the day it was fetched and by which staff key (recorded by ``fetch`` in the sidecar), the day it
was decrypted and by which agency key (recorded by ``inbox`` in ``custody.json``; not by plain
``decrypt``), and hashes recomputed at export time (the envelope file, if found, and every
attachment). Nothing is asked of the server.

Answers are shown with the questionnaire's English wording, and with the wording in the
reporter's language when a translated questionnaire file with the same id is available (the
project ships English only today; the export says so).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import html
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import questionnaire as qn
from .errors import CliError, one_line
from .fsutil import fsync_dir, refuse_existing, write_new_file
from .report import render_json
from .reportfolders import ReportFolder, load_report_folder
from .sanitize import SanitizeError, make_safe_copy, pdf_supported
from .triage import CONTACT_DETAILS_QUESTION, assess

__all__ = ["ExportPaths", "add_parser", "build_bundle", "export_report", "render_html", "run"]

FORMAT = "srdb-export-1"
HASH_BLOCK = 1024 * 1024
MAX_INLINE_IMAGE = 3 * 1024 * 1024
CONTACT_QUESTIONS = (CONTACT_DETAILS_QUESTION, "organisation")
_RISKY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")
Clock = Callable[[], dt.datetime]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export", help="export one decrypted report as HTML + JSON evidence (offline)",
        description="Write a self-contained HTML report (prints to PDF from any browser), a "
                    "JSON bundle, the original attachments byte for byte, and 'safe to share' "
                    "copies of images and PDFs with location and device metadata removed. "
                    "Nothing is overwritten.")
    parser.add_argument("report", metavar="REPORT_DIR", type=Path,
                        help="a decrypted report folder (with report.json)")
    parser.add_argument("--out", metavar="FILE", type=Path, required=True,
                        help="the HTML file to write, e.g. case-123.html")
    parser.add_argument("--json-out", metavar="FILE", type=Path,
                        help="the JSON bundle (default: FILE with .json instead of .html)")
    parser.add_argument("--envelope", metavar="ENVELOPE", type=Path,
                        help="the envelope file, to re-check its SHA-256 (default: looked for "
                             "next to the report folder and one level up)")
    parser.add_argument("--omit-contact", action="store_true",
                        help="leave out the reporter's contact details and organisation")
    qn.add_argument(parser)
    parser.set_defaults(func=run)


# --- paths -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportPaths:
    html: Path
    json: Path
    files: Path  # CASE-files/

    @classmethod
    def for_out(cls, out: Path, json_out: Path | None = None) -> ExportPaths:
        stem = out.name[:-5] if out.name.lower().endswith(".html") else out.name
        return cls(out, json_out or out.with_name(stem + ".json"),
                   out.with_name(stem + "-files"))

    @property
    def originals(self) -> Path:
        return self.files / "original"

    @property
    def safe(self) -> Path:
        return self.files / "safe-to-share"


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _find_envelope(report: ReportFolder, given: Path | None) -> Path | None:
    if given is not None:
        return given
    name = report.envelope.get("file")
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    for folder in (report.path.parent, report.path.parent.parent):
        if (folder / name).is_file():
            return folder / name
    return None


# --- the bundle (data) -----------------------------------------------------------------------

@dataclass
class Attachment:
    entry: Mapping[str, Any]
    stored: Path
    size_now: int
    sha256_now: str
    original: str  # relative path of the copy in the export
    safe: str | None = None
    safe_sha256: str | None = None
    safe_size: int | None = None
    safe_kind: str = ""
    removed: tuple[str, ...] = ()
    safe_status: str = ""

    @property
    def verified(self) -> bool:
        return bool(self.sha256_now == self.entry["sha256"] and
                    self.size_now == self.entry["size"])


@dataclass
class Bundle:
    doc: dict[str, Any]
    attachments: list[Attachment] = field(default_factory=list)
    inline_images: dict[str, bytes] = field(default_factory=dict)


def _answer_rows(report: ReportFolder, english: qn.Questionnaire | None,
                 translated: qn.Questionnaire | None, omit_contact: bool
                 ) -> list[dict[str, Any]]:
    answers = dict(report.answers)
    if omit_contact:
        for key in CONTACT_QUESTIONS:
            answers.pop(key, None)
    order = [q.id for q in english.questions] if english else []
    keys = [k for k in order if k in answers] + [k for k in answers if k not in order]
    rows = []
    for key in keys:
        value = answers[key]
        question = english.question(key) if english else None
        section = english.section_of(key) if english else None
        local = translated.question(key) if translated else None
        row: dict[str, Any] = {"question_id": key, "value": value,
                               "section": section.title if section else "",
                               "question_en": question.label if question else None,
                               "question_reporter_language": local.label if local else None,
                               "answer_en": None, "answer_reporter_language": None}
        chosen = value if isinstance(value, list) else [value] if isinstance(value, str) \
            else None
        if question is not None and question.options and chosen is not None:
            row["answer_en"] = [
                (o.label if (o := question.option(v)) else f"(unknown option {v!r})")
                for v in chosen if isinstance(v, str)]
            if local is not None:
                row["answer_reporter_language"] = [
                    (o.label if (o := local.option(v)) else f"(unknown option {v!r})")
                    for v in chosen if isinstance(v, str)]
        rows.append(row)
    return rows


def _custody(report: ReportFolder, envelope: dict[str, Any], attachments: Sequence[Attachment],
             now: dt.datetime) -> list[dict[str, Any]]:
    server, custody = report.server, report.custody or {}
    events: list[dict[str, Any]] = []
    if report.doc.get("server") is None:
        events.append({"event": "received by the server", "day": None,
                       "detail": "not recorded (no server metadata file was next to the "
                                 "envelope when it was decrypted)"})
    else:
        events.append({"event": "received by the server", "day": report.received_day,
                       "detail": f"envelope ID {report.envelope_id}, recipient "
                                 f"{report.recipient}; the server recorded SHA-256 "
                                 f"{server.get('sha256')} and size {server.get('size')}"})
        fetched_by = server.get("fetched_by")
        events.append({"event": "fetched from the server",
                       "day": server.get("fetched_day") if isinstance(
                           server.get("fetched_day"), str) else None,
                       "detail": f"by the staff key with fingerprint {fetched_by}"
                       if isinstance(fetched_by, str) else
                       "the staff key was not recorded (fetched by an older dropbox-client)"})
    decrypted_with = custody.get("decrypted_with")
    fingerprint = decrypted_with.get("agency_key_fingerprint") \
        if isinstance(decrypted_with, dict) else None
    events.append({"event": "decrypted",
                   "day": custody.get("decrypted_day") if isinstance(
                       custody.get("decrypted_day"), str) else None,
                   "detail": f"with the agency key with fingerprint {fingerprint}"
                   if isinstance(fingerprint, str) else
                   "the day and key were not recorded (decrypted with `decrypt`; "
                   "`inbox --key-file` records them in custody.json)"})
    events.append({"event": "hashes verified at export", "day": now.date().isoformat(),
                   "detail": f"envelope: {envelope['verified_now']}; attachments: "
                             f"{sum(a.verified for a in attachments)} of "
                             f"{len(attachments)} match their SHA-256 and size"})
    events.append({"event": "exported", "day": now.date().isoformat(),
                   "detail": f"at {now.strftime('%Y-%m-%dT%H:%M:%SZ')} by dropbox-client "
                             "export"})
    return events


def _prepare_attachments(report: ReportFolder, paths: ExportPaths, base: Path
                         ) -> tuple[list[Attachment], dict[str, bytes], dict[str, bytes]]:
    """Read, hash and clean every attachment; returns them, the files to write (relative
    path -> bytes), and the inline images for the HTML."""
    attachments: list[Attachment] = []
    files: dict[str, bytes] = {}
    inline: dict[str, bytes] = {}
    for entry in report.attachments:
        stored = report.attachment_path(entry)
        data = stored.read_bytes()
        original = (paths.originals / stored.name).relative_to(base).as_posix()
        item = Attachment(entry, stored, len(data), hashlib.sha256(data).hexdigest(), original)
        files[original] = data
        try:
            copy = make_safe_copy(data)
        except SanitizeError as exc:
            item.safe_status = f"no safe copy: {exc}"
        else:
            if copy is None:
                item.safe_status = ("no safe copy: only JPEG, PNG and PDF files are cleaned; "
                                    "check this file by hand before sharing it")
            else:
                safe = (paths.safe / stored.name).relative_to(base).as_posix()
                files[safe] = copy.data
                item.safe, item.safe_kind, item.removed = safe, copy.kind, copy.removed
                item.safe_sha256 = hashlib.sha256(copy.data).hexdigest()
                item.safe_size = len(copy.data)
                item.safe_status = ("metadata removed" if copy.removed else
                                    "no metadata found; copy re-written")
                if copy.kind in ("jpeg", "png") and len(copy.data) <= MAX_INLINE_IMAGE:
                    inline[safe] = copy.data
        attachments.append(item)
    return attachments, files, inline


def build_bundle(report: ReportFolder, questionnaires: qn.QuestionnaireSet,
                 paths: ExportPaths, *, envelope_path: Path | None = None,
                 omit_contact: bool = False, now: dt.datetime | None = None
                 ) -> tuple[Bundle, dict[str, bytes]]:
    """The export's content and the attachment files to write (relative to the HTML's folder)."""
    now = now or dt.datetime.now(dt.UTC)
    base = paths.html.parent
    english, note = questionnaires.for_report(report.doc)
    language = report.language
    translated = None
    if english is not None and language and language.split("-")[0].lower() != "en":
        translated = questionnaires.find(english.id, language)
    if english is None:
        wording = f"Questionnaire wording unavailable: {note}. Answers are shown as raw ids."
    elif translated is not None:
        wording = (f"Questions are shown in English and in the reporter's language "
                   f"({language}), from questionnaire {english.id}.")
    elif language and language.split("-")[0].lower() != "en":
        wording = (f"The reporter used the form in {language!r}, but questionnaire "
                   f"{english.id} is available here in "
                   f"{', '.join(questionnaires.languages(english.id))} only: questions are "
                   "shown in English only.")
    else:
        wording = f"Questions are shown in English, from questionnaire {english.id}."
    if note and english is not None:
        wording += f" Note: {note}."

    attachments, files, inline = _prepare_attachments(report, paths, base)
    envelope: dict[str, Any] = {"file": report.envelope.get("file"),
                                "size": report.envelope.get("size"),
                                "sha256": report.envelope.get("sha256"),
                                "server_sha256": report.server.get("sha256")}
    found = _find_envelope(report, envelope_path)
    if found is None or not found.is_file():
        envelope["verified_now"] = "envelope file not found, not re-checked"
    else:
        size, digest = _sha256_file(found)
        envelope["verified_now"] = "matches" if (digest, size) == (
            envelope["sha256"], envelope["size"]) else \
            f"DIFFERS (the file now has SHA-256 {digest}, {size} bytes)"
    assessment = assess(report.doc, english, note)
    contact = assessment.to_json()["contact"]
    if omit_contact:
        contact["details"] = "(omitted from this export)"
    doc: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "report": {"folder": report.name, "kind": report.kind, "language": language,
                   "envelope_id": report.envelope_id, "source_id": report.source_id,
                   "received_day": report.received_day, "recipient": report.recipient},
        "questionnaire": {"id": english.id if english else report.doc.get("questionnaire"),
                          "reporter_language_available": translated is not None,
                          "wording": wording},
        "triage": {**assessment.to_json(), "contact": contact},
        "answers": _answer_rows(report, english, translated, omit_contact),
        "contact_omitted": omit_contact,
        "message": report.message,
        "attachments": [{
            "name": a.entry["name"], "type_claimed_by_sender": a.entry.get("type"),
            "size": a.entry["size"], "sha256": a.entry["sha256"],
            "original": {"file": a.original, "sha256_now": a.sha256_now,
                         "size_now": a.size_now, "verified": a.verified},
            "safe_copy": None if a.safe is None else {
                "file": a.safe, "kind": a.safe_kind, "sha256": a.safe_sha256,
                "size": a.safe_size, "removed": list(a.removed)},
            "safe_copy_status": a.safe_status} for a in attachments],
        "envelope": envelope,
        "custody": _custody(report, envelope, attachments, now),
        "pdf_cleaning_available": pdf_supported(),
    }
    return Bundle(doc, attachments, inline), files


# --- HTML ------------------------------------------------------------------------------------

def _e(value: Any) -> str:
    """Escaped text; control and bidi-override characters shown as visible escapes."""
    text = "" if value is None else str(value)
    text = _RISKY.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return html.escape(text, quote=True)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;
margin:2em auto;max-width:60em;color:#111;line-height:1.4;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #999;
margin-top:1.6em}table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eee;width:30%}.hash{font-family:ui-monospace,Consolas,monospace;
font-size:.85em;word-break:break-all}.sender{white-space:pre-wrap;unicode-bidi:isolate}
.warn{border:2px solid #a00;padding:.5em;background:#fee}.note{color:#444;font-size:.9em}
.urgent{color:#a00;font-weight:bold}img{max-width:100%;max-height:20em;border:1px solid #999}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}
tr,img,.keep{break-inside:avoid}a{color:#000;text-decoration:none}}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + \
        "</table>"


def _sender(value: Any) -> str:
    return f'<span class="sender" dir="auto">{_e(value)}</span>'


def _answer_html(row: Mapping[str, Any]) -> str:
    if row["answer_en"] is not None:
        english = "<br>".join(_e(a) for a in row["answer_en"])
        if row["answer_reporter_language"]:
            english += '<br><span class="note">' + "<br>".join(
                f'<span dir="auto">{_e(a)}</span>'
                for a in row["answer_reporter_language"]) + "</span>"
        return english
    value = row["value"]
    if isinstance(value, str):
        return _sender(value)
    return _sender(json.dumps(value, ensure_ascii=False, indent=1))


def render_html(bundle: Bundle) -> str:
    """The HTML page for a bundle; every value is escaped."""
    d = bundle.doc
    r, t = d["report"], d["triage"]
    title = f"Report {r['envelope_id'] or r['folder']}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Exported {_e(d["exported_at"])} by dropbox-client export. '
        "Everything below the headings was written by an anonymous reporter unless marked "
        "otherwise; it has not been verified.</p>",
    ]
    urgent = '<span class="urgent">URGENT</span>' if t["urgent"] else "not urgent"
    reasons = "".join(f"<br>{_e(x)}" for x in t["urgent_reasons"])
    parts += ["<h2>Summary</h2>", _kv([
        ("Received (day)", _e(r["received_day"] or "not recorded")),
        ("Recipient", _e(r["recipient"] or "not recorded")),
        ("Envelope ID", f'<span class="hash">{_e(r["envelope_id"] or "not recorded")}</span>'),
        ("Source ID (thread)", f'<span class="hash">{_e(r["source_id"] or "none")}</span>'),
        ("Reporter's language", _e(r["language"] or "not given")),
        ("Urgency", urgent + reasons),
        ("Indicators", "<br>".join(_e(i) for i in t["indicators"]) or "none"),
        ("Contact", _e(t["contact"]["label"] or t["contact"]["choice"] or "not said")),
    ])]
    if t["flags"]:
        parts.append('<div class="warn keep"><strong>Check by hand:</strong><ul>' +
                     "".join(f"<li>{_e(f)}</li>" for f in t["flags"]) + "</ul></div>")

    parts += ["<h2>Answers</h2>", f'<p class="note">{_e(d["questionnaire"]["wording"])}</p>']
    if d["contact_omitted"]:
        parts.append('<p class="note">The reporter\'s contact details and organisation are '
                     "left out of this export.</p>")
    elif any(a["question_id"] in CONTACT_QUESTIONS for a in d["answers"]):
        parts.append('<p class="warn">This export contains the reporter\'s contact details. '
                     "Do not share it outside the agency without the reporter's consent.</p>")
    if d["answers"]:
        rows = []
        for a in d["answers"]:
            label = _e(a["question_en"] or f"({a['question_id']}: not in the questionnaire)")
            if a["section"]:
                label = f'<span class="note">{_e(a["section"])}</span><br>{label}'
            if a["question_reporter_language"]:
                label += f'<br><span class="note" dir="auto">' \
                         f'{_e(a["question_reporter_language"])}</span>'
            rows.append((label, _answer_html(a)))
        parts.append(_kv(rows))
    else:
        parts.append("<p>(no answers)</p>")

    parts += ["<h2>The reporter's own words</h2>",
              f'<div class="keep">{_sender(d["message"]) if d["message"] else "(none)"}</div>']

    parts.append(f"<h2>Attachments ({len(d['attachments'])})</h2>")
    parts.append('<p class="note">"Original" files are exactly the bytes the reporter sent '
                 '(evidence). "Safe to share" copies of images and PDFs have location and '
                 "device metadata removed; use them when sharing, and the originals as "
                 "evidence.</p>")
    for number, a in enumerate(d["attachments"], 1):
        original = a["original"]
        safe = a["safe_copy"]
        verified = "matches" if original["verified"] else \
            '<span class="urgent">DOES NOT MATCH</span>'
        rows = [("Name (from the reporter)", _sender(a["name"])),
                ("Type (claimed by the reporter)", _e(a["type_claimed_by_sender"])),
                ("Size", f"{_e(a['size'])} bytes"),
                ("SHA-256", f'<span class="hash">{_e(a["sha256"])}</span>'),
                ("Original copy", f'{_e(original["file"])} (SHA-256 re-checked at export: '
                                  f"{verified})")]
        if safe is not None:
            removed = "; ".join(safe["removed"]) or "nothing found to remove"
            rows += [("Safe-to-share copy", _e(safe["file"])),
                     ("Safe copy SHA-256", f'<span class="hash">{_e(safe["sha256"])}</span>'),
                     ("Removed from the safe copy", _e(removed))]
        else:
            rows.append(("Safe-to-share copy", _e(a["safe_copy_status"])))
        parts.append(f"<h3>{number}.</h3>" + _kv(rows))
        if safe is not None and safe["file"] in bundle.inline_images:
            mime = "image/jpeg" if safe["kind"] == "jpeg" else "image/png"
            data = base64.b64encode(bundle.inline_images[safe["file"]]).decode("ascii")
            parts.append(f'<p class="keep"><img alt="safe-to-share copy of attachment '
                         f'{number}" src="data:{mime};base64,{data}"></p>')

    e = d["envelope"]
    parts += ["<h2>Envelope</h2>", _kv([
        ("File", _e(e["file"])), ("Size", f"{_e(e['size'])} bytes"),
        ("SHA-256", f'<span class="hash">{_e(e["sha256"])}</span>'),
        ("SHA-256 recorded by the server",
         f'<span class="hash">{_e(e["server_sha256"] or "not recorded")}</span>'),
        ("Re-checked at export", _e(e["verified_now"]))])]
    parts += ["<h2>Chain of custody</h2>",
              "<table><tr><th>Event</th><th>Day (UTC)</th><th>Detail</th></tr>" +
              "".join(f"<tr><td>{_e(c['event'])}</td><td>{_e(c['day'] or 'not recorded')}"
                      f"</td><td>{_e(c['detail'])}</td></tr>" for c in d["custody"]) +
              "</table>",
              '<p class="note">Days only: the drop box records no times of day, to protect '
              "reporters. The JSON bundle next to this file lists the SHA-256 of this page and "
              "of every copied file.</p>", "</body>", "</html>", ""]
    return "\n".join(parts)


# --- writing ---------------------------------------------------------------------------------

def export_report(report_dir: Path, paths: ExportPaths, questionnaires: qn.QuestionnaireSet, *,
                  envelope_path: Path | None = None, omit_contact: bool = False,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Write the whole export; returns the JSON bundle. Nothing is overwritten, and on a
    failure every file this call created is removed again."""
    report = load_report_folder(report_dir)
    bundle, files = build_bundle(report, questionnaires, paths, envelope_path=envelope_path,
                                 omit_contact=omit_contact, now=now)
    base = paths.html.parent
    for path in (paths.html, paths.json, paths.files):
        refuse_existing(path)
    created: list[Path] = []
    try:
        for folder in (paths.files, paths.originals, paths.safe):
            if folder == paths.safe and not any(a.safe for a in bundle.attachments):
                continue
            os.mkdir(folder, 0o700)
            created.append(folder)
        written: dict[str, str] = {}
        for relative, data in files.items():
            target = base / relative
            write_new_file(target, data)
            created.append(target)
            written[relative] = hashlib.sha256(data).hexdigest()
        page = render_html(bundle).encode("utf-8")
        write_new_file(paths.html, page)
        created.append(paths.html)
        written[paths.html.name] = hashlib.sha256(page).hexdigest()
        bundle.doc["files_sha256"] = written
        write_new_file(paths.json, render_json(bundle.doc))
        created.append(paths.json)
        fsync_dir(base)
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
        raise
    return bundle.doc


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if not out.parent.is_dir():
        raise CliError(f"{out.parent} is not a folder")
    paths = ExportPaths.for_out(out, args.json_out)
    doc = export_report(args.report, paths, qn.from_args(args.questionnaire),
                        envelope_path=args.envelope, omit_contact=args.omit_contact)
    safe = sum(a["safe_copy"] is not None for a in doc["attachments"])
    print(f"wrote {one_line(str(paths.html))} and {one_line(str(paths.json))}")
    print(f"{len(doc['attachments'])} original attachment(s) in "
          f"{one_line(str(paths.originals))}; {safe} safe-to-share copy(ies) in "
          f"{one_line(str(paths.safe))}")
    for a in doc["attachments"]:
        if not a["original"]["verified"]:
            print(f"warning: {one_line(a['name'])}: its SHA-256 no longer matches the report",
                  flush=True)
    if not doc["envelope"]["verified_now"].startswith(("matches", "envelope file not found")):
        print(f"warning: envelope: {doc['envelope']['verified_now']}")
    return 0
