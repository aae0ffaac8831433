"""The questionnaire in every language of the site: translation files beside questionnaire.json,
checked to differ from it only in their texts, with every text translated."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dropbox_server.i18n import LANGUAGES
from dropbox_server.questionnaire import (
    DEFAULT_QUESTIONNAIRE,
    ICONS_DIR,
    Questionnaire,
    QuestionnaireError,
    load_questionnaire,
)

SHIPPED = load_questionnaire()
# Texts rightly spelt as in English.
SAME_AS_ENGLISH = {("es", "No")}


def texts(q: Questionnaire) -> Iterator[tuple[str, str]]:
    """(where, text) for every text of a questionnaire, in document order."""
    for s in q.sections:
        yield f"{s.id}.title", s.title
        yield f"{s.id}.intro", s.intro
        for question in s.questions:
            yield f"{question.id}.label", question.label
            yield f"{question.id}.hint", question.hint
            for o in question.options:
                yield f"{question.id}.{o.id}.label", o.label
                yield f"{question.id}.{o.id}.hint", o.hint


def test_shipped_in_every_site_language() -> None:
    assert set(SHIPPED.languages) == {lang.code for lang in LANGUAGES}
    assert SHIPPED.language == "en"
    for lang in LANGUAGES:
        assert SHIPPED.in_language(lang.code).language == lang.code


@pytest.mark.parametrize("code", [lang.code for lang in LANGUAGES if lang.code != "en"])
def test_every_text_is_translated(code: str) -> None:
    translated = SHIPPED.in_language(code)
    english = dict(texts(SHIPPED))
    count = 0
    for where, text in texts(translated):
        if not english[where]:
            assert not text, where
            continue
        count += 1
        assert text.strip(), f"{code}: {where} is empty"
        if (code, english[where]) not in SAME_AS_ENGLISH:
            assert text != english[where], f"{code}: {where} is still in English"
    assert count > 90


def test_structure_is_the_same_in_every_language() -> None:
    for code in SHIPPED.languages:
        q = SHIPPED.in_language(code)
        assert q.id == SHIPPED.id
        assert [(x.id, x.type, x.required, x.max_chars,
                 [(o.id, o.indicator, o.urgent, o.icon) for o in x.options])
                for x in q.questions] == \
               [(x.id, x.type, x.required, x.max_chars,
                 [(o.id, o.indicator, o.urgent, o.icon) for o in x.options])
                for x in SHIPPED.questions]


def test_tick_box_options_have_icons_that_exist() -> None:
    for question in SHIPPED.questions:
        if question.type == "checkboxes":
            for option in question.options:
                assert option.icon, f"{question.id}.{option.id} has no icon"
                assert (ICONS_DIR / f"{option.icon}.svg").is_file()


def test_an_untranslated_language_falls_back_to_the_main_file() -> None:
    main = load_questionnaire()
    bare = Questionnaire(main.id, main.language, main.sections)
    assert bare.in_language("ar") is bare


# -- operator mistakes are caught at start-up -------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped questionnaire and two of its translations."""
    for name in ("questionnaire.json", "questionnaire.es.json", "questionnaire.ar.json"):
        shutil.copy(DEFAULT_QUESTIONNAIRE.with_name(name), tmp_path / name)
    return tmp_path


def change(path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")


def first_choice(doc: dict[str, Any]) -> dict[str, Any]:
    question: dict[str, Any] = doc["sections"][0]["questions"][0]
    return question


def option(doc: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = doc["sections"][1]["questions"][0]["options"][0]
    return first


def test_a_copy_loads_with_its_translations(folder: Path) -> None:
    q = load_questionnaire(folder / "questionnaire.json")
    assert q.languages == ("en", "ar", "es")


@pytest.mark.parametrize("edit, message", [
    (lambda d: option(d).update(indicator="ilo:other"), "indicator is 'ilo:other' here"),
    (lambda d: option(d).update(urgent=True), "urgent is True here"),
    (lambda d: option(d).update(icon="lock"), "icon is 'lock' here"),
    (lambda d: option(d).update(id="unpaid"), "id is 'unpaid' here"),
    (lambda d: d["sections"][1]["questions"][0]["options"].pop(), "number of options"),
    (lambda d: first_choice(d).update(required=True), "required is True here"),
    (lambda d: first_choice(d).update(hint="Una pista"), "'hint' is not in the main file"),
    (lambda d: d["sections"][0].pop("intro"), "'intro' is missing"),
    (lambda d: d["sections"].pop(), "sections, the main file"),
    (lambda d: d.update(id="default-es-1"), "'id' must be 'default-en-1'"),
    (lambda d: d.update(language="pt"), "the file name says 'es'"),
    (lambda d: d.update(language="en"), "needs its own 'language'"),
    (lambda d: option(d).update(label=""), "'label' must be non-empty text"),
])
def test_a_translation_that_differs_is_refused(folder: Path, edit: Callable[[Any], object],
                                                message: str) -> None:
    change(folder / "questionnaire.es.json", edit)
    with pytest.raises(QuestionnaireError, match=message) as info:
        load_questionnaire(folder / "questionnaire.json")
    assert "questionnaire.es.json" in str(info.value)


def test_an_unknown_icon_is_refused(folder: Path) -> None:
    for name in ("questionnaire.json", "questionnaire.es.json", "questionnaire.ar.json"):
        change(folder / name, lambda d: option(d).update(icon="no-such-icon"))
    with pytest.raises(QuestionnaireError, match="there is no icon 'no-such-icon'"):
        load_questionnaire(folder / "questionnaire.json")
    change(folder / "questionnaire.json", lambda d: option(d).update(icon="../style"))
    with pytest.raises(QuestionnaireError, match="there is no icon"):
        load_questionnaire(folder / "questionnaire.json")


def test_files_that_are_not_translations_are_ignored(folder: Path) -> None:
    (folder / "questionnaire.backup.old.json").write_text("not json", encoding="utf-8")
    (folder / "questionnaire.1.json").write_text("not json", encoding="utf-8")
    assert load_questionnaire(folder / "questionnaire.json").languages == ("en", "ar", "es")

