"""The questionnaire file: what it may hold, how it is read, and the objects it becomes.

The questions of the report form live in a JSON file (``questionnaire.json`` in this package, or
the file named by the server's ``[server] questionnaire`` setting) so that operators can edit and
translate them without touching code. The server reads it to draw and check the form; the staff
tools read the same file, with this same code, to show answers with their wording and to
recompute triage offline. Pure: the standard library only; the only I/O is reading those files.

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
that a typo ("requried") is caught when the file is read rather than silently ignored. ``icon``
names a picture shown next to the option (``a-z``, ``0-9`` and ``-``); the server checks that it
has that picture (``static/icons/<name>.svg``), the staff tools, which draw none, do not.

Translations. A file ``questionnaire.json`` may have translations beside it, one file per
language: ``questionnaire.es.json``, ``questionnaire.ar.json``... Each is a copy of the main file
with the same ``id``, its own ``language``, and every text (titles, intros, labels, hints)
translated. Everything else (ids, types, ``required``, ``max_chars``, options, ``indicator``,
``urgent``, ``icon``) must be exactly the same as in the main file, and a text given in one
must be given in the other: reading fails and names the first difference otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import QuestionnaireError

__all__ = [
    "DEFAULT_ID",
    "DEFAULT_QUESTIONNAIRE",
    "FORMAT",
    "MAX_FILE_BYTES",
    "MAX_LANGUAGE_CHARS",
    "QUESTION_TYPES",
    "RESERVED_FIELDS",
    "Option",
    "Question",
    "Questionnaire",
    "Section",
    "check_translation",
    "is_language_tag",
    "load_file",
    "load_questionnaire",
    "parse_questionnaire",
    "translation_files",
]

DEFAULT_QUESTIONNAIRE = Path(__file__).with_name("questionnaire.json")
DEFAULT_ID = "default-en-1"
"""The ``id`` of :data:`DEFAULT_QUESTIONNAIRE`: the questionnaire the server uses unless its
operator configured another one, and the one a report that names none is read with."""
FORMAT = 1
QUESTION_TYPES = ("checkboxes", "radio", "text", "textarea", "date")
# Form fields the site itself uses; a question may not take one of these names.
RESERVED_FIELDS = frozenset({"csrf", "recipient", "message", "language", "attachments", "code",
                             "reply"})
MAX_LANGUAGE_CHARS = 35  # as in the envelope manifest
# A questionnaire is a few tens of KiB; anything far larger is not one (and is not read whole).
MAX_FILE_BYTES = 4 * 1024 * 1024
_ID = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ICON = re.compile(r"[a-z][a-z0-9-]{0,39}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


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

    def section_of(self, question_id: str) -> Section | None:
        """The section that asks ``question_id``, or None."""
        return next((s for s in self.sections for q in s.questions if q.id == question_id),
                    None)


def is_language_tag(text: str) -> bool:
    """Whether ``text`` is a language tag such as ``en`` or ``pt-BR`` (as the manifest allows)."""
    return len(text) <= MAX_LANGUAGE_CHARS and _LANGUAGE.fullmatch(text) is not None


# -- reading files ----------------------------------------------------------------------------

def load_questionnaire(path: Path = DEFAULT_QUESTIONNAIRE, *,
                       icons_dir: Path | None = None) -> Questionnaire:
    """Read and validate a questionnaire file and every translation beside it
    (``<name>.<language>.json``); raises :class:`QuestionnaireError`.

    With ``icons_dir``, every ``icon`` must be a file ``<icon>.svg`` in that folder."""
    main = load_file(path, icons_dir=icons_dir)
    translations: dict[str, Questionnaire] = {}
    for tag, other in translation_files(path):
        translation = load_file(other, icons_dir=icons_dir)
        check_translation(main, translation, str(other))
        if translation.language != tag:
            raise QuestionnaireError(f"{other}: 'language' is {translation.language!r}, but the "
                                     f"file name says {tag!r}")
        translations[tag] = translation
    return replace(main, translations=translations)


def translation_files(path: Path) -> list[tuple[str, Path]]:
    """(language tag, file) of every translation beside the questionnaire file ``path``, by
    name: ``questionnaire.es.json`` for ``questionnaire.json``. Other files are not named."""
    found = []
    for other in sorted(path.parent.glob(f"{path.stem}.*{path.suffix}")):
        tag = other.name[len(path.stem) + 1:-len(path.suffix)]
        if _LANGUAGE.fullmatch(tag):
            found.append((tag, other))
    return found


def load_file(path: Path, *, icons_dir: Path | None = None) -> Questionnaire:
    """Read and validate one questionnaire file, without its translations; raises
    :class:`QuestionnaireError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise QuestionnaireError(f"questionnaire file {path} does not exist") from None
    except OSError as exc:
        raise QuestionnaireError(f"cannot read questionnaire file {path}: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise QuestionnaireError(f"{path}: too large for a questionnaire file (at most "
                                 f"{MAX_FILE_BYTES // (1024 * 1024)} MiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuestionnaireError(f"cannot read questionnaire file {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise QuestionnaireError(f"{path}: not valid JSON: {exc}") from None
    return parse_questionnaire(doc, str(path), icons_dir=icons_dir)


# -- checking a document ----------------------------------------------------------------------

def parse_questionnaire(doc: Any, where: str = "questionnaire", *,
                        icons_dir: Path | None = None) -> Questionnaire:
    """Validate a decoded questionnaire document; raises :class:`QuestionnaireError`.

    With ``icons_dir``, every ``icon`` must be a file ``<icon>.svg`` in that folder."""
    top = _object(doc, where, required={"format", "id", "language", "sections"})
    if top["format"] != FORMAT or isinstance(top["format"], bool):
        raise QuestionnaireError(f"{where}: 'format' must be {FORMAT}")
    qid = _text(top, "id", where, required=True)
    language = _text(top, "language", where, required=True)
    if not is_language_tag(language):
        raise QuestionnaireError(f"{where}: 'language' must be a language tag such as \"en\"")
    sections_doc = top["sections"]
    if not isinstance(sections_doc, list) or not sections_doc:
        raise QuestionnaireError(f"{where}: 'sections' must be a non-empty list")
    sections = tuple(_section(s, f"{where}: sections[{i}]", icons_dir)
                     for i, s in enumerate(sections_doc))
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


def _section(doc: Any, where: str, icons_dir: Path | None) -> Section:
    obj = _object(doc, where, required={"id", "title", "questions"}, optional={"intro"})
    sid = _identifier(obj, where)
    questions_doc = obj["questions"]
    if not isinstance(questions_doc, list) or not questions_doc:
        raise QuestionnaireError(f"{where} ({sid}): 'questions' must be a non-empty list")
    questions = tuple(_question(q, f"{where}.questions[{i}]", icons_dir)
                      for i, q in enumerate(questions_doc))
    return Section(sid, _text(obj, "title", where, required=True), _text(obj, "intro", where),
                   questions)


def _question(doc: Any, where: str, icons_dir: Path | None) -> Question:
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
        options = tuple(_option(o, f"{where}.options[{i}]", icons_dir)
                        for i, o in enumerate(options_doc))
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


def _option(doc: Any, where: str, icons_dir: Path | None) -> Option:
    obj = _object(doc, where, required={"id", "label"},
                  optional={"hint", "indicator", "urgent", "icon"})
    oid = _identifier(obj, where)
    where = f"{where} ({oid})"
    urgent = obj.get("urgent", False)
    if not isinstance(urgent, bool):
        raise QuestionnaireError(f"{where}: 'urgent' must be true or false")
    icon = _text(obj, "icon", where)
    if icon and not _ICON.fullmatch(icon):
        raise QuestionnaireError(f"{where}: there is no icon {icon!r} (an icon name is 1-40 "
                                 "characters of a-z, 0-9 and -, starting with a letter)")
    if icon and icons_dir is not None and not (icons_dir / f"{icon}.svg").is_file():
        raise QuestionnaireError(f"{where}: there is no icon {icon!r} (the icons are the files "
                                 f"in {icons_dir})")
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
