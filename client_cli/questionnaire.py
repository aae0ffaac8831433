"""The questionnaires the offline tools read reports with: which files, and which one a report
was answered with.

The questionnaire itself (the file format, its validation, the shipped files) is
:mod:`dropbox_questionnaire`, the same code the server checks its form with; it imports neither
the server nor the network stack. By default the staff tools use the files shipped with it (the
main file and its translations, checked against each other as the server checks them), or the
files given with ``--questionnaire``, each read on its own.

Each file holds one questionnaire version (``id``) in one language (``language``). Several
files with the same ``id`` and different languages are translations of each other.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_questionnaire import (
    DEFAULT_ID,
    DEFAULT_QUESTIONNAIRE,
    Questionnaire,
    QuestionnaireError,
    load_file,
    load_questionnaire,
)
from dropbox_questionnaire.format import translation_files

from .errors import CliError

__all__ = [
    "DEFAULT_ID",
    "Questionnaire",
    "QuestionnaireSet",
    "add_argument",
    "default_files",
    "from_args",
    "load_files",
]


@dataclass(frozen=True)
class QuestionnaireSet:
    """Every questionnaire file available, by (id, language)."""

    items: tuple[Questionnaire, ...] = ()

    def find(self, questionnaire_id: str, language: str = "en") -> Questionnaire | None:
        """The questionnaire ``questionnaire_id`` in ``language`` (``pt-BR`` also matches a
        ``pt`` file), or None."""
        wanted = language.lower()
        base = wanted.split("-", 1)[0]
        for candidate in (wanted, base):
            for item in self.items:
                if item.id == questionnaire_id and item.language.lower() == candidate:
                    return item
        return None

    def languages(self, questionnaire_id: str) -> list[str]:
        return sorted({q.language for q in self.items if q.id == questionnaire_id})

    def for_report(self, report: Mapping[str, Any]) -> tuple[Questionnaire | None, str]:
        """The English questionnaire to read ``report``'s answers with, and a note on how it
        was chosen ("" when the report named it and it was found)."""
        named = report.get("questionnaire")
        if isinstance(named, str) and named:
            found = self.find(named, "en")
            if found is not None:
                return found, ""
            return None, (f"the report was made with questionnaire {named!r}, which is not "
                          "available here (give its file with --questionnaire)")
        found = self.find(DEFAULT_ID, "en")
        if found is None:
            return None, "the report does not name its questionnaire"
        return found, (f"the report does not name its questionnaire; read with {DEFAULT_ID!r}")


def default_files() -> list[Path]:
    """The questionnaire files shipped with :mod:`dropbox_questionnaire`: the main file and its
    translations."""
    return [DEFAULT_QUESTIONNAIRE, *(path for _, path in translation_files(DEFAULT_QUESTIONNAIRE))]


def load_files(paths: Iterable[Path]) -> QuestionnaireSet:
    """Read every questionnaire file in ``paths``, each on its own; raises :class:`CliError`
    naming the file and the place in it on a bad one."""
    try:
        return QuestionnaireSet(tuple(load_file(path) for path in paths))
    except QuestionnaireError as exc:
        raise CliError(str(exc)) from None


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--questionnaire FILE`` (repeatable), shared by inbox, related and export."""
    parser.add_argument("--questionnaire", metavar="FILE", type=Path, action="append",
                        help="a questionnaire JSON file (repeat for translations); default: "
                             "the files shipped with the drop box")


def from_args(paths: Sequence[Path] | None) -> QuestionnaireSet:
    """The questionnaires named on the command line, else the shipped ones."""
    if paths:
        return load_files(paths)
    try:
        shipped = load_questionnaire()
    except QuestionnaireError as exc:
        raise CliError(str(exc)) from None
    return QuestionnaireSet((shipped, *shipped.translations.values()))
