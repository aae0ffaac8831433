"""Triage of a decrypted report: urgency, indicators, contact, and the order to read reports in.

Pure logic over a ``report.json`` document and the questionnaire it was answered with.

The server adds its own ``triage`` (``{"urgent": bool, "indicators": [...]}``) to the manifest of
every report made through its form, but a report sealed in the browser carries whatever its
sender wrote there. So triage is recomputed here from the answers and the questionnaire, with the
server's own code (:mod:`dropbox_questionnaire.triage`), and a difference from the report's own
claim is shown, as is every chosen option the questionnaire does not know. Urgency is never
lowered because of such a difference: a report that claims to be urgent stays urgent (and is
flagged), because missing a real emergency costs more than reading a false one early.
Indicators are the recomputed ones; any the claim adds are only listed in the flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dropbox_questionnaire import Questionnaire, assess_answers
from dropbox_questionnaire.triage import chosen_ids

__all__ = ["Assessment", "Contact", "assess", "contact_of", "matches", "sort_key"]

CONTACT_QUESTION = "contact"
CONTACT_DETAILS_QUESTION = "contact_details"
# Short labels for the table; the full wording is in the questionnaire.
_CONTACT_SHORT = {
    "return_code_only": "return code only",
    "safe_contact": "safe contact given",
    "support_organisation": "via support organisation",
}


@dataclass(frozen=True)
class Contact:
    """Whether and how the reporter can be contacted, as they answered."""

    choice: str = ""  # the option id, "" if not answered
    label: str = ""  # the questionnaire's wording of that option
    details: str = ""  # the free text they gave (safe times, a way to reach them)

    @property
    def short(self) -> str:
        if not self.choice:
            return "not said"
        return _CONTACT_SHORT.get(self.choice, self.choice)

    def to_json(self) -> dict[str, str]:
        return {"choice": self.choice, "label": self.label, "details": self.details}


@dataclass(frozen=True)
class Assessment:
    """What a report asks of the agency, recomputed from its answers."""

    urgent: bool
    urgent_reasons: tuple[str, ...]  # the wording of every urgent option chosen
    indicators: tuple[str, ...]  # sorted: "ilo:..." forced-labour indicators, "abuse:...", ...
    verified: bool  # computed from a questionnaire (False: only the report's own claim)
    claimed: Mapping[str, Any] | None  # the report's own "triage" member, if any
    flags: tuple[str, ...] = ()  # disagreements and other things to check by hand
    contact: Contact = field(default_factory=Contact)
    note: str = ""  # how the questionnaire was chosen, when the report did not name it

    @property
    def ilo_count(self) -> int:
        return sum(i.startswith("ilo:") for i in self.indicators)

    def to_json(self) -> dict[str, Any]:
        return {"urgent": self.urgent, "urgent_reasons": list(self.urgent_reasons),
                "indicators": list(self.indicators), "ilo_indicator_count": self.ilo_count,
                "verified": self.verified, "claimed": self.claimed, "flags": list(self.flags),
                "questionnaire_note": self.note, "contact": self.contact.to_json()}


def _claim(report: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool | None,
                                                 set[str] | None]:
    claimed = report.get("triage")
    if not isinstance(claimed, dict):
        return None, None, None
    urgent = claimed.get("urgent")
    indicators = claimed.get("indicators")
    return (claimed, urgent if isinstance(urgent, bool) else None,
            {i for i in indicators if isinstance(i, str)} if isinstance(indicators, list)
            else None)


def contact_of(report: Mapping[str, Any], questionnaire: Questionnaire | None) -> Contact:
    answers = report.get("answers")
    answers = answers if isinstance(answers, dict) else {}
    chosen = chosen_ids(answers.get(CONTACT_QUESTION))
    details = answers.get(CONTACT_DETAILS_QUESTION)
    details = details if isinstance(details, str) else ""
    if not chosen:
        return Contact("", "", details)
    label = ""
    question = questionnaire.question(CONTACT_QUESTION) if questionnaire else None
    option = question.option(chosen[0]) if question else None
    if option is not None:
        label = option.label
    return Contact(chosen[0], label, details)


def assess(report: Mapping[str, Any], questionnaire: Questionnaire | None,
           note: str = "") -> Assessment:
    """Triage ``report`` (a report.json document) with ``questionnaire`` (None if the one it
    was answered with is not available: the report's own claim is then used, unverified).
    ``note`` is a remark about how the questionnaire was chosen; without a questionnaire it is
    also a flag."""
    claimed, claimed_urgent, claimed_indicators = _claim(report)
    flags: list[str] = [note] if note and questionnaire is None else []
    answers = report.get("answers")
    answers = answers if isinstance(answers, dict) else {}

    if questionnaire is None:
        flags.append("triage not verified: only the report's own claim is available")
        return Assessment(bool(claimed_urgent), (), tuple(sorted(claimed_indicators or ())),
                          False, claimed, tuple(flags), contact_of(report, None), note)

    found = assess_answers(questionnaire, answers)
    flags += [f"answer {question_id!r} has an option the questionnaire does not know: "
              f"{option_id!r}" for question_id, option_id in found.unknown_options]
    urgent_reasons = [option.label for option in found.urgent_options]
    indicators = set(found.indicators)
    urgent = found.urgent

    if claimed is not None:
        if claimed_urgent is not None and claimed_urgent != urgent:
            flags.append("the report's own triage says "
                         f"{'urgent' if claimed_urgent else 'not urgent'}, its answers say "
                         f"{'urgent' if urgent else 'not urgent'}")
            if claimed_urgent:
                urgent = True  # never lowered on a disagreement; see the module docstring
        if claimed_indicators is not None and claimed_indicators != indicators:
            extra = sorted(claimed_indicators - indicators)
            missing = sorted(indicators - claimed_indicators)
            parts = []
            if extra:
                parts.append(f"claims {', '.join(extra)} not supported by the answers")
            if missing:
                parts.append(f"omits {', '.join(missing)}")
            flags.append("the report's own indicators differ: " + "; ".join(parts))
    return Assessment(urgent, tuple(urgent_reasons), tuple(sorted(indicators)), True, claimed,
                      tuple(flags), contact_of(report, questionnaire), note)


def sort_key(assessment: Assessment, received_day: str | None, reference: str
             ) -> tuple[Any, ...]:
    """Most urgent first: urgent reports, then more danger answers, more ILO indicators, more
    indicators of any kind; then the longest-waiting (earliest received day; unknown last)."""
    return (not assessment.urgent, -len(assessment.urgent_reasons), -assessment.ilo_count,
            -len(assessment.indicators), received_day or "9999-99-99", reference)


def matches(assessment: Assessment, received_day: str | None, *,
            indicators: Iterable[str] = (), urgent_only: bool = False,
            since: str | None = None, until: str | None = None) -> bool:
    """The inbox filters: every indicator in ``indicators`` (``withholding_of_wages`` matches
    ``ilo:withholding_of_wages``), urgency, and received day within [since, until]. A report
    without a received day never passes a day filter."""
    if urgent_only and not assessment.urgent:
        return False
    for wanted in indicators:
        if not any(have == wanted or have.split(":", 1)[-1] == wanted
                   for have in assessment.indicators):
            return False
    if since is not None or until is not None:
        if received_day is None:
            return False
        if since is not None and received_day < since:
            return False
        if until is not None and received_day > until:
            return False
    return True
