"""``dropbox-client inbox`` and ``dropbox-client related``: the triage view of decrypted
reports, offline.

``inbox DIR`` lists the report folders in ``DIR`` (the output of ``decrypt``) and in
``DIR/reports``. If ``DIR`` is a ``fetch`` inbox holding envelopes that were not decrypted yet,
they are decrypted first into ``DIR/reports`` (or ``--reports``) with ``--key-file``, using
exactly the code of ``decrypt``; for each, ``custody.json`` is written next to ``report.json``
recording the day it was decrypted and the fingerprint of the agency key that opened it (plain
``decrypt`` does not record this; ``export`` shows it when present).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropbox_envelope.keys import SecretKey

from . import questionnaire as qn
from .decrypt import ENVELOPE_SUFFIX, decrypt_envelope
from .errors import EXPECTED_ERRORS, CliError, describe_error, one_line
from .fsutil import write_new_file
from .keyfiles import unlock_key_file
from .related import Link, Thread, clusters, suggest_links, threads
from .reportfolders import CUSTODY_NAME, ReportFolder, find_report_folders
from .triage import Assessment, assess, matches, sort_key

__all__ = ["Row", "add_parsers", "build_rows", "custody_record", "decrypt_pending",
           "run_inbox", "run_related"]

REPORTS_SUBFOLDER = "reports"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _day(text: str) -> str:
    if not _DAY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a day like 2024-03-31")
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid day") from None
    return text


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inbox", help="triage table of decrypted reports, most urgent first (offline)",
        description="List decrypted reports most urgent first: reference, day received, "
                    "recipient, language, urgency, indicators (ILO forced-labour indicators "
                    "and abuse categories), attachments, and whether and how the reporter "
                    "can be contacted. Envelopes in DIR that are not decrypted yet are "
                    "decrypted first into DIR/reports when --key-file is given.")
    parser.add_argument("folder", metavar="DIR", type=Path,
                        help="a fetch inbox, or a folder of decrypted report folders")
    parser.add_argument("--key-file", metavar="K", type=Path,
                        help="the agency secret key, to decrypt envelopes not decrypted yet")
    parser.add_argument("--passphrase-file", metavar="F", type=Path,
                        help="read the key's passphrase from the first line of F")
    parser.add_argument("--reports", metavar="OUT", type=Path,
                        help="where to decrypt new envelopes (default: DIR/reports)")
    qn.add_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for case systems")
    parser.add_argument("--indicator", metavar="NAME", action="append", default=[],
                        help="only reports with this indicator, e.g. ilo:debt_bondage or "
                             "debt_bondage (repeat to require several)")
    parser.add_argument("--urgent", action="store_true", help="only urgent reports")
    parser.add_argument("--since", metavar="DAY", type=_day,
                        help="only reports received on or after DAY (YYYY-MM-DD)")
    parser.add_argument("--until", metavar="DAY", type=_day,
                        help="only reports received on or before DAY (YYYY-MM-DD)")
    parser.add_argument("--related", action="store_true",
                        help="also show possibly related reports and threads")
    parser.set_defaults(func=run_inbox)

    related = subparsers.add_parser(
        "related", help="suggest links between decrypted reports, with reasons (offline)",
        description="Suggest possibly related reports (never merged): shared business name, "
                    "postcode or address, phone number, vehicle registration, or identical "
                    "attachment. Reports from the same returning source are one thread.")
    related.add_argument("folders", metavar="DIR", type=Path, nargs="+",
                         help="folders of decrypted report folders (DIR/reports is read too)")
    related.add_argument("--json", action="store_true", help="print JSON")
    related.set_defaults(func=run_related)


# --- decrypting what is new ------------------------------------------------------------------

@dataclass
class DecryptSummary:
    decrypted: list[Path] = field(default_factory=list)
    pending: list[Path] = field(default_factory=list)  # not decrypted: no key given
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _pending_envelopes(folder: Path, report_dirs: Sequence[Path]) -> list[Path]:
    if not folder.is_dir():
        return []
    envelopes = sorted(p for p in folder.iterdir() if p.name.endswith(ENVELOPE_SUFFIX)
                       and not p.name.startswith(".") and p.is_file())
    return [e for e in envelopes
            if not any((d / e.name[:-len(ENVELOPE_SUFFIX)]).exists() for d in report_dirs)]


def custody_record(key: SecretKey, envelope: Path, now: dt.datetime) -> dict[str, Any]:
    """What ``custody.json`` holds: when this report was decrypted, and by which key."""
    return {"decrypted_day": now.date().isoformat(),
            "decrypted_with": {"agency_public_key": key.public_key.encode(),
                               "agency_key_fingerprint": key.public_key.fingerprint},
            "decrypted_by_tool": "dropbox-client inbox",
            "envelope_file": envelope.name}


def decrypt_pending(envelopes: Sequence[Path], key: SecretKey, out_dir: Path, *,
                    clock: Clock = _utcnow) -> DecryptSummary:
    """Decrypt each envelope into ``out_dir`` (as ``decrypt`` does) and write its custody
    record; one failure does not stop the others."""
    summary = DecryptSummary()
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for envelope in envelopes:
        try:
            outcome = decrypt_envelope(envelope, [key], out_dir)
            if outcome.out is None:  # pragma: no cover - decrypt_envelope raises instead
                raise CliError(f"{envelope}: not decrypted")
            record = custody_record(key, envelope, clock())
            write_new_file(outcome.out / CUSTODY_NAME,
                           (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        except EXPECTED_ERRORS as exc:
            summary.failed.append((envelope, describe_error(exc)))
            continue
        summary.decrypted.append(outcome.out)
    return summary


# --- the table -------------------------------------------------------------------------------

@dataclass
class Row:
    """One report in the triage view."""

    report: ReportFolder
    assessment: Assessment

    def to_json(self) -> dict[str, Any]:
        r = self.report
        return {"reference": r.reference, "folder": str(r.path), "envelope_id": r.envelope_id,
                "source_id": r.source_id, "received_day": r.received_day,
                "recipient": r.recipient, "language": r.language, "kind": r.kind,
                "attachments": len(r.attachments),
                "decrypted_day": (r.custody or {}).get("decrypted_day"),
                **self.assessment.to_json()}


def build_rows(reports: Sequence[ReportFolder], questionnaires: qn.QuestionnaireSet
               ) -> list[Row]:
    """Every report assessed, most urgent first."""
    rows = []
    for report in reports:
        questionnaire, note = questionnaires.for_report(report.doc)
        rows.append(Row(report, assess(report.doc, questionnaire, note)))
    rows.sort(key=lambda row: sort_key(row.assessment, row.report.received_day,
                                       row.report.reference))
    return rows


def _cell(text: str, limit: int = 40) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_table(rows: Sequence[Row]) -> str:
    header = ["REF", "RECEIVED", "RECIPIENT", "LANG", "URGENT", "INDICATORS", "FILES",
              "CONTACT"]
    lines = [header]
    for row in rows:
        r, a = row.report, row.assessment
        urgent = f"YES ({len(a.urgent_reasons)})" if a.urgent_reasons else \
            "YES (claimed)" if a.urgent else "no"
        if a.flags:
            urgent += " !"
        lines.append([r.reference, r.received_day or "?", _cell(r.recipient or "?", 24),
                      _cell(r.language or "?", 10), urgent,
                      ", ".join(a.indicators) or "-", str(len(r.attachments)),
                      a.contact.short])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
           + "  " + line[-1] for line in lines]
    return "\n".join(text.rstrip() for text in out)


def render_related(links: Sequence[Link], thread_list: Sequence[Thread],
                   groups: Sequence[Sequence[str]]) -> str:
    out = ["Threads (reports from the same returning source):"]
    out += [f"  source {t.source_id}: {' -> '.join(t.reports)}" for t in thread_list] or \
        ["  (none)"]
    out.append("Possibly related (suggestions only; check before linking cases):")
    for link in links:
        out.append(f"  {link.a} <-> {link.b}")
        out += [f"      {one_line(reason.describe())}" for reason in link.reasons]
    if not links:
        out.append("  (none)")
    if groups:
        out.append("Clusters:")
        out += [f"  {', '.join(group)}" for group in groups]
    return "\n".join(out)


def _related_json(links: Sequence[Link], thread_list: Sequence[Thread],
                  groups: Sequence[Sequence[str]]) -> dict[str, Any]:
    return {"threads": [t.to_json() for t in thread_list],
            "links": [link.to_json() for link in links],
            "clusters": [list(g) for g in groups]}


def _related(reports: Sequence[ReportFolder]) -> tuple[list[Link], list[Thread],
                                                         list[list[str]]]:
    pairs = [(r.reference, r.doc) for r in reports]
    links, thread_list = suggest_links(pairs), threads(pairs)
    return links, thread_list, clusters([r.reference for r in reports], links, thread_list)


# --- the commands ----------------------------------------------------------------------------

def run_inbox(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    reports_dir: Path = args.reports or folder / REPORTS_SUBFOLDER
    if args.since and args.until and args.since > args.until:
        raise CliError("--since is after --until")
    questionnaires = qn.from_args(args.questionnaire)

    pending = _pending_envelopes(folder, [folder, reports_dir])
    summary = DecryptSummary()
    if pending and args.key_file is not None:
        key = unlock_key_file(args.key_file, args.passphrase_file, kind="agency")
        if not isinstance(key, SecretKey):  # unreachable: the kind was checked
            raise CliError(f"{args.key_file} is not an agency secret key")
        summary = decrypt_pending(pending, key, reports_dir)
    elif pending:
        summary.pending = pending
    for envelope, message in summary.failed:
        print(f"error: {one_line(str(envelope))}: {message}", file=sys.stderr)
    if summary.pending:
        print(f"note: {len(summary.pending)} envelope(s) in {one_line(str(folder))} are not "
              "decrypted yet; give --key-file to decrypt them", file=sys.stderr)

    reports = find_report_folders([folder, reports_dir])
    rows = build_rows(reports, questionnaires)
    shown = [row for row in rows
             if matches(row.assessment, row.report.received_day, indicators=args.indicator,
                        urgent_only=args.urgent, since=args.since, until=args.until)]
    if args.json:
        doc: dict[str, Any] = {
            "reports": [row.to_json() for row in shown],
            "decrypted_now": [str(p) for p in summary.decrypted],
            "not_decrypted": [str(p) for p in summary.pending],
            "failed": [{"envelope": str(p), "error": m} for p, m in summary.failed]}
        if args.related:
            doc["related"] = _related_json(*_related(reports))
        print(json.dumps(doc, ensure_ascii=True, indent=2))
    else:
        if summary.decrypted:
            print(f"decrypted {len(summary.decrypted)} new envelope(s) into "
                  f"{one_line(str(reports_dir))}")
        print(render_table(shown) if shown else "no reports")
        if len(shown) != len(rows):
            print(f"({len(rows) - len(shown)} more not shown by the filters)")
        flagged = [row for row in shown if row.assessment.flags]
        if flagged:
            print("\nFlags ('!'):")
            for row in flagged:
                for flag in row.assessment.flags:
                    print(f"  {row.report.reference}: {one_line(flag)}")
        notes = sorted({row.assessment.note for row in shown
                        if row.assessment.note and row.assessment.verified})
        for note in notes:
            count = sum(row.assessment.note == note for row in shown)
            print(f"note: {count} report(s): {one_line(note)}")
        if args.related:
            print()
            print(render_related(*_related(reports)))
    return 1 if summary.failed else 0


def run_related(args: argparse.Namespace) -> int:
    folders: list[Path] = []
    for folder in args.folders:
        if not folder.is_dir():
            raise CliError(f"{folder} is not a folder")
        folders += [folder, folder / REPORTS_SUBFOLDER]
    reports = find_report_folders(folders)
    links, thread_list, groups = _related(reports)
    if args.json:
        doc = _related_json(links, thread_list, groups)
        doc["reports"] = {r.reference: str(r.path) for r in reports}
        print(json.dumps(doc, ensure_ascii=True, indent=2))
    else:
        print(render_related(links, thread_list, groups))
    return 0
