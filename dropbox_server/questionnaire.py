"""The report form's side of the questionnaire: the server's copy of it, and the check of what a
person sent against it.

The questionnaire itself (the operator-editable JSON file, its translations, their validation,
and triage) is :mod:`dropbox_questionnaire`, shared with the staff tools. This module adds what
only the server needs: the pictures it can draw next to options (``static/icons``), a broken
file as a configuration error that stops start-up, and the messages for a person whose form
does not fit, which pages show translated. Pure logic: no aiohttp, no database.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropbox_questionnaire import (
    DEFAULT_QUESTIONNAIRE,
    Option,
    Question,
    Questionnaire,
    QuestionnaireError,
    Section,
    parse_questionnaire,
    triage,
)
from dropbox_questionnaire import load_questionnaire as _load_questionnaire
from dropbox_questionnaire.format import is_language_tag

from .errors import ConfigError
from .i18n import N_, Message

__all__ = [
    "DEFAULT_QUESTIONNAIRE",
    "ICONS_DIR",
    "InvalidAnswers",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "QuestionnaireFileError",
    "Section",
    "ValidReport",
    "load_questionnaire",
    "parse_questionnaire",
    "triage",
    "validate_answers",
    "validate_language",
    "validate_message",
    "validate_report",
]

ICONS_DIR = Path(__file__).with_name("static") / "icons"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NEWLINES = re.compile(r"\r\n?")


class QuestionnaireFileError(ConfigError, QuestionnaireError):
    """The questionnaire file the server was given (or one of its translations) is missing or
    malformed; start-up stops, and the message names the file and the place in it."""


class InvalidAnswers(ValueError):
    """What a person sent does not fit the form.

    ``errors`` maps a field name to a message written for that person (shown next to the field);
    the key ``""`` holds problems with the form as a whole. Each message is a
    :class:`~dropbox_server.i18n.Message`: English text that pages show translated.
    """

    def __init__(self, errors: Mapping[str, Message]) -> None:
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


def load_questionnaire(path: Path = DEFAULT_QUESTIONNAIRE) -> Questionnaire:
    """The questionnaire in ``path`` with its translations, every icon one the server has;
    raises :class:`QuestionnaireFileError`."""
    try:
        return _load_questionnaire(path, icons_dir=ICONS_DIR)
    except QuestionnaireError as exc:
        raise QuestionnaireFileError(str(exc)) from None


# -- answers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidReport:
    """A checked form: what goes into the envelope manifest."""

    message: str
    language: str
    answers: dict[str, Any]


def _normalise(text: str) -> str:
    # A no-JS form POST sends textarea newlines as CRLF (browsers count them as one character
    # for maxlength): store LF, and count after normalising.
    return _NEWLINES.sub("\n", text)


def validate_answers(questionnaire: Questionnaire, fields: Mapping[str, Sequence[str]], *,
                     max_field_chars: int) -> dict[str, Any]:
    """Check questionnaire fields and return the answers for the envelope manifest.

    ``fields`` maps a form field name to every value sent under it. Only known question ids and
    option ids are accepted. The result maps a question id to a list of option ids
    (checkboxes), one option id (radio), or text (text, textarea, date); unanswered questions
    are left out. Raises :class:`InvalidAnswers`.
    """
    errors: dict[str, Message] = {}
    answers: dict[str, Any] = {}
    for name in fields:
        if questionnaire.question(name) is None:
            errors.setdefault("", Message(N_("The form contained a field this site does not know "
                                             "(%(name)s). Reload the page and try again."),
                                          name=repr(name[:40])))
    for q in questionnaire.questions:
        values = list(fields.get(q.id, ()))
        if q.type == "checkboxes":
            chosen = set(values)
            if any(q.option(v) is None for v in chosen):
                errors[q.id] = Message(N_("Choose only from the options shown."))
            elif chosen:
                answers[q.id] = [o.id for o in q.options if o.id in chosen]
        elif len(values) > 1:
            errors[q.id] = Message(N_("This answer was sent more than once. Reload the page and "
                                      "try again."))
        elif q.type == "radio":
            value = values[0] if values else ""
            if value and q.option(value) is None:
                errors[q.id] = Message(N_("Choose one of the options shown."))
            elif value:
                answers[q.id] = value
        else:
            text = _normalise(values[0]).strip() if values else ""
            limit = min(q.max_chars or max_field_chars, max_field_chars)
            if len(text) > limit:
                errors[q.id] = Message(N_("This answer is too long: please use at most "
                                          "%(limit)s characters."), limit=limit)
            elif q.type == "date" and text and not _valid_date(text):
                errors[q.id] = Message(N_("Write the date as year-month-day, for example "
                                          "2024-03-31."))
            elif text:
                answers[q.id] = text
        if q.required and q.id not in answers and q.id not in errors:
            errors[q.id] = Message(N_("Please tick at least one box.") if q.type == "checkboxes"
                                   else N_("Please answer this question."))
    if errors:
        raise InvalidAnswers(errors)
    return answers


def _valid_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def validate_message(text: str, *, max_chars: int) -> str:
    """The free-text account, newlines normalised; raises :class:`InvalidAnswers`."""
    message = _normalise(text).strip()
    if len(message) > max_chars:
        raise InvalidAnswers({"message": Message(N_(
            "Your message is too long: please use at most %(limit)s characters, or attach it "
            "as a file."), limit=max_chars)})
    return message


def validate_language(text: str) -> str:
    """The language tag the person used the form in; raises :class:`InvalidAnswers`."""
    if not is_language_tag(text):
        raise InvalidAnswers({"": Message(N_("The form's language setting is not valid. Reload "
                                             "the page and try again."))})
    return text


def validate_report(questionnaire: Questionnaire | None, fields: Mapping[str, Sequence[str]], *,
                    max_field_chars: int, max_message_chars: int,
                    default_language: str = "en") -> ValidReport:
    """Check a whole form (``message``, ``language`` and the questionnaire fields) and collect
    every problem at once, so the person can fix them all in one go.

    Without a questionnaire (sending more information later), only ``message`` and ``language``
    are accepted. Raises :class:`InvalidAnswers`.
    """
    errors: dict[str, Message] = {}
    rest = {k: v for k, v in fields.items() if k not in ("message", "language")}
    message, language, answers = "", default_language, {}
    for name in ("message", "language"):
        if len(fields.get(name, ())) > 1:
            errors.setdefault("", Message(N_("Part of the form was sent more than once. Reload "
                                             "the page and try again.")))
    try:
        message = validate_message(next(iter(fields.get("message", ())), ""),
                                   max_chars=max_message_chars)
    except InvalidAnswers as exc:
        errors.update(exc.errors)
    try:
        language = validate_language(next(iter(fields.get("language", ())), default_language))
    except InvalidAnswers as exc:
        errors.update(exc.errors)
    if questionnaire is not None:
        try:
            answers = validate_answers(questionnaire, rest, max_field_chars=max_field_chars)
        except InvalidAnswers as exc:
            for key, value in exc.errors.items():
                errors.setdefault(key, value)
    elif rest:
        errors.setdefault("", Message(N_("The form contained a field this site does not know. "
                                         "Reload the page and try again.")))
    if errors:
        raise InvalidAnswers(errors)
    return ValidReport(message, language, answers)

