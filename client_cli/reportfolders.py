"""Decrypted report folders (what ``decrypt`` writes) as objects the staff tools work on.

A report folder holds ``report.json`` (the manifest plus ``envelope`` and ``server`` facts),
``report.txt``, ``attachments/`` and, when ``inbox`` decrypted it, ``custody.json`` (who
decrypted it and when; see :mod:`client_cli.inbox`). Everything in ``report.json`` except the
``envelope`` facts was chosen by an anonymous sender or reported by the server: it is read
defensively (wrong types become "not given"), never trusted to name files outside the folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CliError
from .fsutil import read_json_object

__all__ = [
    "CUSTODY_NAME",
    "REPORT_NAME",
    "ReportFolder",
    "find_report_folders",
    "load_report_folder",
    "short_references",
]

REPORT_NAME = "report.json"
CUSTODY_NAME = "custody.json"
MAX_REPORT_JSON_BYTES = 64 * 1024 * 1024
_ID = re.compile(r"[0-9a-f]{32}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class ReportFolder:
    """One decrypted report: its folder, ``report.json`` and ``custody.json`` (or None)."""

    path: Path
    doc: dict[str, Any]
    custody: dict[str, Any] | None = None
    reference: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def server(self) -> Mapping[str, Any]:
        server = self.doc.get("server")
        return server if isinstance(server, dict) else {}

    def _server_text(self, key: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.server.get(key)
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            return None
        return value

    @property
    def envelope_id(self) -> str | None:
        return self._server_text("envelope_id", _ID)

    @property
    def source_id(self) -> str | None:
        return self._server_text("source_id", _ID)

    @property
    def received_day(self) -> str | None:
        return self._server_text("received_day", _DAY)

    @property
    def recipient(self) -> str | None:
        return self._server_text("recipient")

    @property
    def source_public_key(self) -> str | None:
        return self._server_text("source_public_key")

    @property
    def kind(self) -> str:
        kind = self.doc.get("kind")
        return kind if isinstance(kind, str) else ""

    @property
    def language(self) -> str:
        language = self.doc.get("language")
        return language if isinstance(language, str) else ""

    @property
    def message(self) -> str:
        message = self.doc.get("message")
        return message if isinstance(message, str) else ""

    @property
    def answers(self) -> dict[str, Any]:
        answers = self.doc.get("answers")
        return answers if isinstance(answers, dict) else {}

    @property
    def attachments(self) -> list[dict[str, Any]]:
        """The attachment entries whose fields have the types ``decrypt`` writes."""
        items = self.doc.get("attachments")
        if not isinstance(items, list):
            return []
        return [a for a in items if isinstance(a, dict)
                and isinstance(a.get("name"), str) and isinstance(a.get("file"), str)
                and isinstance(a.get("size"), int) and isinstance(a.get("sha256"), str)
                and _SHA256.fullmatch(a["sha256"])]

    @property
    def envelope(self) -> Mapping[str, Any]:
        envelope = self.doc.get("envelope")
        return envelope if isinstance(envelope, dict) else {}

    def attachment_path(self, entry: Mapping[str, Any]) -> Path:
        """Where an attachment is stored, refusing anything that leaves ``attachments/``."""
        relative = str(entry.get("file", ""))
        parts = relative.split("/")
        if len(parts) != 2 or parts[0] != "attachments" or parts[1] in ("", ".", "..") or \
                "\\" in parts[1] or "\x00" in parts[1]:
            raise CliError(f"{self.path / REPORT_NAME}: attachment file {relative!r} is not "
                           "inside attachments/")
        return self.path / "attachments" / parts[1]


def load_report_folder(path: Path) -> ReportFolder:
    """Read one report folder; raises :class:`CliError` if it is not one."""
    report_json = path / REPORT_NAME
    if not report_json.is_file():
        raise CliError(f"{path} is not a decrypted report folder (no {REPORT_NAME})")
    doc = read_json_object(report_json, MAX_REPORT_JSON_BYTES)
    custody_path = path / CUSTODY_NAME
    custody = read_json_object(custody_path, 1024 * 1024) if custody_path.is_file() else None
    return ReportFolder(path, doc, custody, path.name[:8])


def find_report_folders(folders: Iterable[Path]) -> list[ReportFolder]:
    """Every report folder directly inside ``folders`` (hidden ones, such as a decrypt still in
    progress, are skipped), each loaded once, with unique short references."""
    seen: set[Path] = set()
    found: list[ReportFolder] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir(), key=lambda p: p.name):
            if child.name.startswith(".") or not (child / REPORT_NAME).is_file():
                continue
            resolved = child.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            found.append(load_report_folder(child))
    short_references(found)
    return found


def short_references(reports: list[ReportFolder], length: int = 8) -> None:
    """Give each report the shortest prefix (at least ``length`` characters) of its folder name
    that no other report shares."""
    names = [r.name for r in reports]
    for report in reports:
        size = length
        while size < len(report.name) and \
                sum(n.startswith(report.name[:size]) for n in names) > 1:
            size += 1
        report.reference = report.name[:size]
