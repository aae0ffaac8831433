"""The questionnaire: operator-editable data describing the report form, and the check of what a
person sent against it.

The questions live in a JSON file (``questionnaire.json`` next to this module, or the file named
by ``[server] questionnaire``) so that operators can edit and translate them without touching
code. Pure logic: no aiohttp, no database; the only I/O is reading that one file.

File format (``"format": 1``)::

    {"format": 1, "id": "default-en-1", "language": "en",
     "sections": [{"id": "...", "title": "...", "intro": "...",
                   "questions": [{"id": "...", "type": "checkboxes|radio|text|textarea|date",
                                  "label": "...", "hint": "...", "required": false,
                                  "max_chars": 500,
                                  "options": [{"id": "...", "label": "...", "hint": "...",
                                               "indicator": "...", "urgent": false,
                                               "icon": "..."}]}]}]}

Keys starting with ``_`` are comments and ignored anywhere. Any other unknown key is an error, so
that a typo ("requried") is caught at start-up rather than silently ignored. ``icon`` names a
picture shown next to the option: one of the files ``static/icons/<name>.svg``.

Translations. A file ``questionnaire.json`` may have translations beside it, one file per
language: ``questionnaire.es.json``, ``questionnaire.ar.json``... Each is a copy of the main file
with the same ``id``, its own ``language``, and every text (titles, intros, labels, hints)
translated. Everything else (ids, types, ``required``, ``max_chars``, options, ``indicator``,
``urgent``, ``icon``) must be exactly the same as in the main file, and a text given in one
must be given in the other: start-up fails and names the first difference otherwise. The form
is shown in the visitor's language when a translation exists, else in the main file's language.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .i18n import N_, Message

__all__ = [
    "DEFAULT_QUESTIONNAIRE",
    "ICONS_DIR",
    "QUESTION_TYPES",
    "RESERVED_FIELDS",
    "InvalidAnswers",
    "Option",
    "Question",
    "Questionnaire",
    "QuestionnaireError",
    "Section",
    "ValidReport",
    "check_translation",
    "load_questionnaire",
    "load_translation",
    "parse_questionnaire",
    "triage",
    "validate_answers",
    "validate_language",
    "validate_message",
    "validate_report",
]

DEFAULT_QUESTIONNAIRE = Path(__file__).with_name("questionnaire.json")
ICONS_DIR = Path(__file__).with_name("static") / "icons"
FORMAT = 1
QUESTION_TYPES = ("checkboxes", "radio", "text", "textarea", "date")
# Form fields the site itself uses; a question may not take one of these names.
RESERVED_FIELDS = frozenset({"csrf", "recipient", "message", "language", "attachments", "code",
                             "reply"})
MAX_LANGUAGE_CHARS = 35  # as in the envelope manifest
_ID = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ICON = re.compile(r"[a-z][a-z0-9-]{0,39}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NEWLINES = re.compile(r"\r\n?")


class QuestionnaireError(ConfigError):
    """The questionnaire file is malformed; the message names the file and the place in it."""


class InvalidAnswers(ValueError):
    """What a person sent does not fit the form.

    ``errors`` maps a field name to a message written for that person (shown next to the field);
    the key ``""`` holds problems with the form as a whole. Each message is a
    :class:`~dropbox_server.i18n.Message`: English text that pages show translated.
    """

    def __init__(self, errors: Mapping[str, Message]) -> None:
        super().__init__("; ".join(f"{k or 'form'}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class Option:
    id: str
    label: str
    hint: str = ""
    indicator: str = ""  # ILO forced-labour indicator or abuse category, for the agency's triage
    urgent: bool = False  # choosing it marks the report as urgent
    icon: str = ""  # a picture next to the option, for people who read with difficulty


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    label: str
    hint: str = ""
    required: bool = False
    options: tuple[Option, ...] = ()
    max_chars: int | None = None

    def option(self, option_id: str) -> Option | None:
        return next((o for o in self.options if o.id == option_id), None)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    intro: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Questionnaire:
    """A validated questionnaire. ``id`` names this version, so answers can be read later with
    the labels they were given under."""

    id: str
    language: str
    sections: tuple[Section, ...]
    # The same questionnaire in other languages, by language tag (see the module docstring).
    translations: Mapping[str, Questionnaire] = field(default_factory=dict, compare=False,
                                                      repr=False)

    @property
    def questions(self) -> tuple[Question, ...]:
        return tuple(q for s in self.sections for q in s.questions)

    @property
    def languages(self) -> tuple[str, ...]:
        return (self.language, *sorted(self.translations))

    def in_language(self, language: str) -> Questionnaire:
        """This questionnaire in ``language`` if translated, else in its own language."""
        if language == self.language:
            return self
        return self.translations.get(language, self)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


# -- loading ----------------------------------------------------------------------------------

def load_questionnaire(path: Path = DEFAULT_QUESTIONNAIRE) -> Questionnaire:
    """Read and validate a questionnaire file and every translation beside it
    (``<name>.<language>.json``); raises :class:`QuestionnaireError`."""
    main = _load_file(path)
    translations: dict[str, Questionnaire] = {}
    for other in sorted(path.parent.glob(f"{path.stem}.*{path.suffix}")):
        tag = other.name[len(path.stem) + 1:-len(path.suffix)]
        if not _LANGUAGE.fullmatch(tag):
            continue
        translation = load_translation(main, other)
        if translation.language != tag:
            raise QuestionnaireError(f"{other}: 'language' is {translation.language!r}, but the "
                                     f"file name says {tag!r}")
        translations[tag] = translation
    return replace(main, translations=translations)


def load_translation(main: Questionnaire, path: Path) -> Questionnaire:
    """Read a translation of ``main`` and check that only its texts differ."""
    translation = _load_file(path)
    check_translation(main, translation, str(path))
    return translation


def _load_file(path: Path) -> Questionnaire:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestionnaireError(f"questionnaire file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionnaireError(f"cannot read questionnaire file {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise QuestionnaireError(f"{path}: not valid JSON: {exc}") from None
    return parse_questionnaire(doc, str(path))


def parse_questionnaire(doc: Any, where: str = "questionnaire") -> Questionnaire:
    """Validate a decoded questionnaire document; raises :class:`QuestionnaireError`."""
    top = _object(doc, where, required={"format", "id", "language", "sections"})
    if top["format"] != FORMAT or isinstance(top["format"], bool):
        raise QuestionnaireError(f"{where}: 'format' must be {FORMAT}")
    qid = _text(top, "id", where, required=True)
    language = _text(top, "language", where, required=True)
    if not _LANGUAGE.fullmatch(language) or len(language) > MAX_LANGUAGE_CHARS:
        raise QuestionnaireError(f"{where}: 'language' must be a language tag such as \"en\"")
    sections_doc = top["sections"]
    if not isinstance(sections_doc, list) or not sections_doc:
        raise QuestionnaireError(f"{where}: 'sections' must be a non-empty list")
    sections = tuple(_section(s, f"{where}: sections[{i}]") for i, s in enumerate(sections_doc))
    _unique([s.id for s in sections], where, "section id")
    _unique([q.id for s in sections for q in s.questions], where, "question id")
    return Questionnaire(qid, language, sections)


def check_translation(main: Questionnaire, other: Questionnaire, where: str) -> None:
    """Raise :class:`QuestionnaireError` naming the first place where ``other`` is not a
    translation of ``main``: the same structure, a text wherever ``main`` has one."""
    if other.id != main.id:
        raise QuestionnaireError(f"{where}: 'id' must be {main.id!r}, as in the main file")
    if other.language == main.language:
        raise QuestionnaireError(f"{where}: a translation needs its own 'language'")
    if len(other.sections) != len(main.sections):
        raise QuestionnaireError(f"{where}: it has {len(other.sections)} sections, the main "
                                 f"file {len(main.sections)}")
    for i, (a, b) in enumerate(zip(main.sections, other.sections, strict=True)):
        here = f"{where}: sections[{i}] ({a.id})"
        _same(here, "id", a.id, b.id)
        _same_presence(here, "intro", a.intro, b.intro)
        _same(here, "number of questions", len(a.questions), len(b.questions))
        for j, (qa, qb) in enumerate(zip(a.questions, b.questions, strict=True)):
            there = f"{here}.questions[{j}] ({qa.id})"
            for key in ("id", "type", "required", "max_chars"):
                _same(there, key, getattr(qa, key), getattr(qb, key))
            _same_presence(there, "hint", qa.hint, qb.hint)
            _same(there, "number of options", len(qa.options), len(qb.options))
            for k, (oa, ob) in enumerate(zip(qa.options, qb.options, strict=True)):
                place = f"{there}.options[{k}] ({oa.id})"
                for key in ("id", "indicator", "urgent", "icon"):
                    _same(place, key, getattr(oa, key), getattr(ob, key))
                _same_presence(place, "hint", oa.hint, ob.hint)


def _same(where: str, key: str, expected: Any, found: Any) -> None:
    if expected != found:
        raise QuestionnaireError(f"{where}: {key} is {found!r} here but {expected!r} in the main "
                                 "file; a translation changes only texts")


def _same_presence(where: str, key: str, expected: str, found: str) -> None:
    if bool(expected.strip()) != bool(found.strip()):
        missing = "missing" if expected.strip() else "not in the main file"
        raise QuestionnaireError(f"{where}: {key!r} is {missing}")


def _section(doc: Any, where: str) -> Section:
    obj = _object(doc, where, required={"id", "title", "questions"}, optional={"intro"})
    sid = _identifier(obj, where)
    questions_doc = obj["questions"]
    if not isinstance(questions_doc, list) or not questions_doc:
        raise QuestionnaireError(f"{where} ({sid}): 'questions' must be a non-empty list")
    questions = tuple(_question(q, f"{where}.questions[{i}]") for i, q in enumerate(questions_doc))
    return Section(sid, _text(obj, "title", where, required=True), _text(obj, "intro", where),
                   questions)


def _question(doc: Any, where: str) -> Question:
    obj = _object(doc, where, required={"id", "type", "label"},
                  optional={"hint", "required", "options", "max_chars"})
    qid = _identifier(obj, where)
    where = f"{where} ({qid})"
    if qid in RESERVED_FIELDS:
        raise QuestionnaireError(f"{where}: the id {qid!r} is used by the form itself; "
                                 "choose another")
    qtype = obj["type"]
    if qtype not in QUESTION_TYPES:
        raise QuestionnaireError(f"{where}: 'type' must be one of {', '.join(QUESTION_TYPES)}")
    required = obj.get("required", False)
    if not isinstance(required, bool):
        raise QuestionnaireError(f"{where}: 'required' must be true or false")
    choice = qtype in ("checkboxes", "radio")
    options: tuple[Option, ...] = ()
    if choice:
        options_doc = obj.get("options")
        if not isinstance(options_doc, list) or not options_doc:
            raise QuestionnaireError(f"{where}: a {qtype} question needs a non-empty 'options' "
                                     "list")
        options = tuple(_option(o, f"{where}.options[{i}]") for i, o in enumerate(options_doc))
        _unique([o.id for o in options], where, "option id")
    elif "options" in obj:
        raise QuestionnaireError(f"{where}: only checkboxes and radio questions have 'options'")
    max_chars = obj.get("max_chars")
    if max_chars is not None:
        if qtype not in ("text", "textarea"):
            raise QuestionnaireError(f"{where}: only text and textarea questions have "
                                     "'max_chars'")
        if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
            raise QuestionnaireError(f"{where}: 'max_chars' must be a positive integer")
    return Question(qid, qtype, _text(obj, "label", where, required=True),
                    _text(obj, "hint", where), required, options, max_chars)


def _option(doc: Any, where: str) -> Option:
    obj = _object(doc, where, required={"id", "label"},
                  optional={"hint", "indicator", "urgent", "icon"})
    oid = _identifier(obj, where)
    where = f"{where} ({oid})"
    urgent = obj.get("urgent", False)
    if not isinstance(urgent, bool):
        raise QuestionnaireError(f"{where}: 'urgent' must be true or false")
    icon = _text(obj, "icon", where)
    if icon and not (_ICON.fullmatch(icon) and (ICONS_DIR / f"{icon}.svg").is_file()):
        raise QuestionnaireError(f"{where}: there is no icon {icon!r} (the icons are the files "
                                 f"in {ICONS_DIR})")
    return Option(oid, _text(obj, "label", where, required=True), _text(obj, "hint", where),
                  _text(obj, "indicator", where), urgent, icon)


def _object(doc: Any, where: str, *, required: set[str],
            optional: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise QuestionnaireError(f"{where}: must be a JSON object")
    missing = sorted(required - doc.keys())
    if missing:
        raise QuestionnaireError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
    known = required | (optional or set())
    unknown = sorted(k for k in doc if k not in known and not k.startswith("_"))
    if unknown:
        raise QuestionnaireError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                                 "(start a key with '_' to write a comment)")
    return doc


def _identifier(obj: Mapping[str, Any], where: str) -> str:
    value = obj["id"]
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise QuestionnaireError(f"{where}: 'id' must be 1-40 characters of a-z, 0-9 and _, "
                                 "starting with a letter")
    return value


def _text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise QuestionnaireError(f"{where}: {key!r} must be {'non-empty ' if required else ''}"
                                 "text")
    return value


def _unique(ids: Sequence[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise QuestionnaireError(f"{where}: {what} {item!r} is used twice")
        seen.add(item)


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
    if len(text) > MAX_LANGUAGE_CHARS or not _LANGUAGE.fullmatch(text):
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


def triage(questionnaire: Questionnaire, answers: Mapping[str, Any]) -> dict[str, Any]:
    """What the agency sorts reports by: ``urgent`` if any urgent option was chosen, and the
    indicators (ILO forced-labour indicators, abuse categories) of every chosen option."""
    urgent = False
    indicators: set[str] = set()
    for q in questionnaire.questions:
        value = answers.get(q.id)
        chosen = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for option_id in chosen:
            option = q.option(option_id) if q.options else None
            if option is not None:
                urgent = urgent or option.urgent
                if option.indicator:
                    indicators.add(option.indicator)
    return {"urgent": urgent, "indicators": sorted(indicators)}
