"""Triage: what the agency sorts reports by, computed from a report's answers and the
questionnaire they were given under.

The server computes it when it seals a form into an envelope (the manifest's ``triage``
member, :func:`triage`); the staff tools compute it again offline from the decrypted answers
(:func:`assess_answers`), because a report sealed in the browser carries whatever its sender
wrote there. Both use this one function, so the two can only disagree when the report's own
claim was not made by the server.

Answers are read leniently, as a report made with an older or edited questionnaire (or sealed
by a modified browser) may hold anything: a choice is an option id or a list of them, whatever
the question's type; an option id the questionnaire does not know is set aside and named in
:attr:`Triage.unknown_options`; answers to questions it does not have, to questions without
options, and values that are not option ids are not triage. Each option counts once, and the
result is in the questionnaire's order whatever order the answers came in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .format import Option, Questionnaire

__all__ = ["Triage", "assess_answers", "chosen_ids", "triage"]


@dataclass(frozen=True)
class Triage:
    """The urgent options chosen, the indicators of every option chosen, and what could not be
    read."""

    urgent_options: tuple[Option, ...]  # in the questionnaire's order
    indicators: tuple[str, ...]  # sorted: "ilo:..." forced-labour indicators, "abuse:...", ...
    unknown_options: tuple[tuple[str, str], ...] = ()  # (question id, option id) not known

    @property
    def urgent(self) -> bool:
        return bool(self.urgent_options)

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``triage`` member: ``{"urgent": bool, "indicators": [...]}``."""
        return {"urgent": self.urgent, "indicators": list(self.indicators)}


def chosen_ids(value: Any) -> list[str]:
    """The option ids in an answer, read leniently: one id, or the ids in a list; nothing
    else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def assess_answers(questionnaire: Questionnaire, answers: Mapping[str, Any]) -> Triage:
    """Triage ``answers`` (question id → option id, list of option ids, or text) with
    ``questionnaire``; see the module docstring for how odd answers are read."""
    urgent: list[Option] = []
    indicators: set[str] = set()
    unknown: list[tuple[str, str]] = []
    for question in questionnaire.questions:
        if not question.options or question.id not in answers:
            continue
        chosen = chosen_ids(answers[question.id])
        for option in question.options:
            if option.id in chosen:
                if option.urgent:
                    urgent.append(option)
                if option.indicator:
                    indicators.add(option.indicator)
        unknown += [(question.id, option_id) for option_id in dict.fromkeys(chosen)
                    if question.option(option_id) is None]
    return Triage(tuple(urgent), tuple(sorted(indicators)), tuple(unknown))


def triage(questionnaire: Questionnaire, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``triage`` member for ``answers``: ``urgent`` if any urgent option was
    chosen, and the indicators (ILO forced-labour indicators, abuse categories) of every chosen
    option."""
    return assess_answers(questionnaire, answers).manifest()
