"""Possibly related reports: links suggested between reports, each with its reasons.

Pure logic over ``report.json`` documents. Links are only ever suggested, never acted on: two
reports naming the same phone number may be one person's two reports or two victims of one
employer, and only a person can tell. Every link says exactly which shared detail suggested it.

Details compared, after normalising:

- business or employer name (the ``business`` answer): case, accents, punctuation and legal
  suffixes such as "Ltd" ignored;
- UK postcodes anywhere in the answers or the message, and identical address answers;
- phone numbers anywhere in the answers or the message (``+44 7700 900123`` and
  ``07700900123`` are the same number);
- UK vehicle registrations (current ``AB12 CDE`` format anywhere; older formats in the
  ``vehicles`` answer, or written in capitals);
- identical attachments (same SHA-256; empty files ignored).

Reports from the same returning source (same ``server.source_id``) are one thread, not links.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Feature",
    "Link",
    "Thread",
    "clusters",
    "features",
    "normalise_business",
    "normalise_phone",
    "suggest_links",
    "threads",
]

BUSINESS_QUESTION = "business"
ADDRESS_QUESTIONS = ("location", "accommodation")
VEHICLE_QUESTION = "vehicles"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_LEGAL_WORDS = frozenset({"the", "ltd", "limited", "plc", "llp", "llc", "inc", "co", "company",
                          "corp", "uk"})
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_SPLIT_NAMES = re.compile(r"[,;/\n|]+")
_POSTCODE = re.compile(r"\b([A-Z]{1,2}[0-9][A-Z0-9]?)\s*([0-9][A-Z]{2})\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\d[\d \t().-]{6,}\d(?!\w)")
_PLATE_CURRENT = re.compile(r"\b([A-Z]{2}[0-9]{2})\s?([A-Z]{3})\b", re.IGNORECASE)
_PLATE_PREFIX = re.compile(r"\b([A-Z][0-9]{1,3})\s?([A-Z]{3})\b")
_PLATE_SUFFIX = re.compile(r"\b([A-Z]{3})\s?([0-9]{1,3}[A-Z])\b")

KIND_LABELS = {
    "business": "same business or employer name",
    "postcode": "same postcode",
    "address": "same address",
    "phone": "same phone number",
    "vehicle": "same vehicle registration",
    "attachment": "identical attachment (same SHA-256)",
}


@dataclass(frozen=True, order=True)
class Feature:
    """One normalised detail of a report: its kind and value."""

    kind: str
    value: str

    def describe(self) -> str:
        return f"{KIND_LABELS.get(self.kind, self.kind)}: {self.value}"


@dataclass(frozen=True)
class Link:
    """Two reports (by reference) that share details: the reasons for suggesting the link."""

    a: str
    b: str
    reasons: tuple[Feature, ...]

    def to_json(self) -> dict[str, Any]:
        return {"reports": [self.a, self.b],
                "reasons": [{"kind": r.kind, "value": r.value, "reason": r.describe()}
                            for r in self.reasons]}


@dataclass(frozen=True)
class Thread:
    """Reports sent by one returning source, oldest first."""

    source_id: str
    reports: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "reports": list(self.reports)}


# --- normalising -----------------------------------------------------------------------------

def _fold(text: str) -> str:
    """Lower case, accents removed, compatibility forms unified (full-width digits...)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalise_business(name: str) -> str:
    """``"The Sunny Farms Ltd."`` -> ``"sunny farms"``; "" if nothing distinctive is left."""
    words = [w for w in _NOT_ALNUM.split(_fold(name).replace("&", " and ")) if w]
    words = [w for w in words if w not in _LEGAL_WORDS]
    if words and words[-1] == "and":
        words.pop()
    joined = " ".join(words)
    return joined if len(joined.replace(" ", "")) >= 3 else ""


def normalise_phone(text: str) -> str:
    """Digits only, UK international prefixes folded: ``+44 (0)7700 900123`` ->
    ``07700900123``; "" if it does not look like a phone number (9 to 15 digits)."""
    international = text.lstrip().startswith(("+", "00"))
    digits = re.sub(r"\D", "", text)
    if text.lstrip().startswith("00"):
        digits = digits[2:]
    if international and digits.startswith("44"):
        digits = "0" + digits[2:].lstrip("0")
    elif international:
        digits = "+" + digits
    count = len(digits.lstrip("+"))
    return digits if 9 <= count <= 15 else ""


def _normalise_address(text: str) -> str:
    folded = " ".join(w for w in _NOT_ALNUM.split(_fold(text)) if w)
    return folded if len(folded) >= 10 else ""


def _texts(report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(question id or "message", text) for every piece of free text in the report."""
    message = report.get("message")
    if isinstance(message, str):
        yield "message", message
    answers = report.get("answers")
    if isinstance(answers, dict):
        for key, value in answers.items():
            if isinstance(value, str):
                yield str(key), value


def features(report: Mapping[str, Any]) -> set[Feature]:
    """Every comparable detail of one report.json document."""
    found: set[Feature] = set()
    answers = report.get("answers")
    answers = answers if isinstance(answers, dict) else {}
    business = answers.get(BUSINESS_QUESTION)
    if isinstance(business, str):
        for part in _SPLIT_NAMES.split(business):
            if name := normalise_business(part):
                found.add(Feature("business", name))
    for key in ADDRESS_QUESTIONS:
        value = answers.get(key)
        if isinstance(value, str) and (address := _normalise_address(value)):
            found.add(Feature("address", address))
    for key, text in _texts(report):
        folded = unicodedata.normalize("NFKC", text)
        for match in _POSTCODE.finditer(folded):
            found.add(Feature("postcode", f"{match[1].upper()} {match[2].upper()}"))
        for match in _PHONE.finditer(folded):
            if phone := normalise_phone(match.group()):
                found.add(Feature("phone", phone))
        plates = [_PLATE_CURRENT]
        if key == VEHICLE_QUESTION:
            plates += [re.compile(p.pattern, re.IGNORECASE) for p in (_PLATE_PREFIX,
                                                                      _PLATE_SUFFIX)]
        else:
            plates += [_PLATE_PREFIX, _PLATE_SUFFIX]
        for pattern in plates:
            for match in pattern.finditer(folded):
                found.add(Feature("vehicle", f"{match[1].upper()} {match[2].upper()}"))
    attachments = report.get("attachments")
    for entry in attachments if isinstance(attachments, list) else []:
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(digest, str) and digest != EMPTY_SHA256:
            found.add(Feature("attachment", digest))
    return found


def _source_id(report: Mapping[str, Any]) -> str | None:
    server = report.get("server")
    source_id = server.get("source_id") if isinstance(server, dict) else None
    return source_id if isinstance(source_id, str) and source_id else None


def _day(report: Mapping[str, Any]) -> str:
    server = report.get("server")
    day = server.get("received_day") if isinstance(server, dict) else None
    return day if isinstance(day, str) else "9999-99-99"


# --- suggestions -----------------------------------------------------------------------------

def threads(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Thread]:
    """Reports grouped by returning source; only sources with two or more reports."""
    by_source: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for reference, report in reports:
        if (source_id := _source_id(report)) is not None:
            by_source[source_id].append((_day(report), reference))
    return [Thread(source_id, tuple(ref for _day_, ref in sorted(items)))
            for source_id, items in sorted(by_source.items()) if len(items) > 1]


def suggest_links(reports: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Link]:
    """Every pair of reports (references) sharing at least one detail, with all the shared
    details as reasons. Reports in the same thread are not linked to each other."""
    index: dict[Feature, list[str]] = defaultdict(list)
    sources = {reference: _source_id(report) for reference, report in reports}
    for reference, report in reports:
        for feature in features(report):
            index[feature].append(reference)
    shared: dict[tuple[str, str], set[Feature]] = defaultdict(set)
    for feature, references in index.items():
        unique = sorted(set(references))
        for i, a in enumerate(unique):
            for b in unique[i + 1:]:
                if sources[a] is not None and sources[a] == sources[b]:
                    continue
                shared[(a, b)].add(feature)
    return [Link(a, b, tuple(sorted(reasons))) for (a, b), reasons in sorted(shared.items())]


def clusters(references: Sequence[str], links: Sequence[Link],
             thread_list: Sequence[Thread] = ()) -> list[list[str]]:
    """Groups of two or more reports connected by links or threads ("possibly related")."""
    parent = {r: r for r in references}

    def root(r: str) -> str:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    def join(a: str, b: str) -> None:
        if a in parent and b in parent:
            parent[root(a)] = root(b)

    for link in links:
        join(link.a, link.b)
    for thread in thread_list:
        for other in thread.reports[1:]:
            join(thread.reports[0], other)
    groups: dict[str, list[str]] = defaultdict(list)
    for reference in references:
        groups[root(reference)].append(reference)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
