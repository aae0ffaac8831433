"""The questionnaire's wording, option indicators and urgent flags, read on the offline machine.

The report form's questions live in a JSON file shipped with the server (format 1, see
``dropbox_server/questionnaire.py``). The offline tools need the same file to show answers with
their wording and to recompute triage, but must not import the server's code (it pulls in
aiohttp and the database layer). So this module reads the file itself, by path: by default the
``questionnaire*.json`` files shipped as package data of ``dropbox_server`` (found with
:mod:`importlib.resources`, which imports only that package's empty ``__init__``), or the files
given with ``--questionnaire``.

Each file holds one questionnaire version (``id``) in one language (``language``). Several
files with the same ``id`` and different languages are translations of each other. Today the
project ships English only.

Pure: text in, objects out; :func:`load_files` is the only function that reads files.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CliError

__all__ = [
    "DEFAULT_ID",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireSet",
    "add_argument",
    "default_files",
    "from_args",
    "load_files",
    "parse",
]

DEFAULT_ID = "default-en-1"
"""The questionnaire the server uses unless its operator configured another one."""

MAX_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Option:
    id: str
    label: str
    indicator: str = ""
    urgent: bool = False


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    label: str
    section: str
    options: tuple[Option, ...] = ()

    def option(self, option_id: str) -> Option | None:
        return next((o for o in self.options if o.id == option_id), None)


@dataclass(frozen=True)
class Questionnaire:
    """One questionnaire version in one language."""

    id: str
    language: str
    questions: tuple[Question, ...]
    source: str = ""

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


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


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CliError(f"{where} must be text")
    return value


def parse(doc: Any, where: str = "questionnaire") -> Questionnaire:
    """A questionnaire document (format 1); only the parts the staff tools use are checked."""
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise CliError(f"{where}: not a questionnaire file (format 1)")
    sections = doc.get("sections")
    if not isinstance(sections, list):
        raise CliError(f"{where}: 'sections' must be a list")
    questions: list[Question] = []
    for s_index, section in enumerate(sections):
        if not isinstance(section, dict) or not isinstance(section.get("questions"), list):
            raise CliError(f"{where}: sections[{s_index}] is malformed")
        title = _text(section.get("title", ""), f"{where}: sections[{s_index}].title")
        for q_index, question in enumerate(section["questions"]):
            here = f"{where}: sections[{s_index}].questions[{q_index}]"
            if not isinstance(question, dict):
                raise CliError(f"{here} is not an object")
            options = []
            for o_index, option in enumerate(question.get("options", [])):
                if not isinstance(option, dict):
                    raise CliError(f"{here}.options[{o_index}] is not an object")
                urgent = option.get("urgent", False)
                if not isinstance(urgent, bool):
                    raise CliError(f"{here}.options[{o_index}].urgent must be true or false")
                options.append(Option(_text(option.get("id"), f"{here}.options[{o_index}].id"),
                                      _text(option.get("label", ""), f"{here} option label"),
                                      _text(option.get("indicator", ""), f"{here} indicator"),
                                      urgent))
            questions.append(Question(_text(question.get("id"), f"{here}.id"),
                                      _text(question.get("type", ""), f"{here}.type"),
                                      _text(question.get("label", ""), f"{here}.label"),
                                      title, tuple(options)))
    return Questionnaire(_text(doc.get("id"), f"{where}: id"),
                         _text(doc.get("language"), f"{where}: language"),
                         tuple(questions), where)


def default_files() -> list[Path]:
    """The questionnaire files shipped as package data of ``dropbox_server``, if installed.

    ``importlib.resources.files`` imports the package's ``__init__`` only, which has no
    dependencies; none of the server's modules are loaded.
    """
    try:
        folder = importlib.resources.files("dropbox_server")
    except ModuleNotFoundError:
        return []
    found = []
    for entry in folder.iterdir():
        if entry.name.startswith("questionnaire") and entry.name.endswith(".json") and \
                entry.is_file():
            found.append(Path(str(entry)))
    return sorted(found)


def load_files(paths: Iterable[Path]) -> QuestionnaireSet:
    """Read every questionnaire file in ``paths``; raises :class:`CliError` on a bad one."""
    items = []
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise CliError(f"{path}: too large for a questionnaire file")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise CliError(f"{path}: not a valid JSON file") from None
        items.append(parse(doc, str(path)))
    return QuestionnaireSet(tuple(items))


def add_argument(parser: argparse.ArgumentParser) -> None:
    """``--questionnaire FILE`` (repeatable), shared by inbox, related and export."""
    parser.add_argument("--questionnaire", metavar="FILE", type=Path, action="append",
                        help="a questionnaire JSON file (repeat for translations); default: "
                             "the files shipped with dropbox_server")


def from_args(paths: Sequence[Path] | None) -> QuestionnaireSet:
    """The questionnaires named on the command line, else the shipped ones."""
    return load_files(paths if paths else default_files())
