"""The gettext catalogs: the template (.pot) matches what the code and templates say, and every
language has a real translation of every message. A missing, empty or fuzzy entry fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from dropbox_server.i18n import DEFAULT_LANGUAGE, LANGUAGES, TRANSLATIONS_DIR, compile_po

ROOT = Path(__file__).resolve().parents[2]
POT = TRANSLATIONS_DIR / "messages.pot"
TRANSLATED = [lang.code for lang in LANGUAGES if lang.code != DEFAULT_LANGUAGE]
_PLACEHOLDER = re.compile(r"%\(\w+\)s")
# Messages that are rightly spelt the same as in English in a language.
SAME_AS_ENGLISH = {("es", "Error:")}


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def extracted() -> set[str]:
    """Every message in the code and templates, extracted as babel.cfg says."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    ids: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map):
        assert isinstance(message, str), f"plural message {message!r}: write a plain sentence"
        ids.add(message)
    return ids


def test_template_matches_the_sources() -> None:
    """Run ``pybabel extract`` (see translations/README.md) when this fails."""
    in_sources = extracted()
    in_template = {m.id for m in read(POT) if m.id}
    assert in_sources - in_template == set(), "messages missing from messages.pot"
    assert in_template - in_sources == set(), "messages.pot has messages no longer used"
    assert len(in_sources) > 100  # the check is live: every page's sentences are there


def test_python_messages_are_found() -> None:
    """Server messages (N_ in public.py, questionnaire.py, submission.py) are extracted too."""
    ids = extracted()
    for message in ("Choose who should receive your report.", "Please tick at least one box.",
                    "This return code is not known here. Check each digit.",
                    "You can send at most %(files)s files with one report."):
        assert message in ids


@pytest.mark.parametrize("code", TRANSLATED)
def test_every_message_is_translated(code: str) -> None:
    template = {m.id for m in read(POT) if m.id}
    path = TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po"
    catalog = read(path, code)
    entries = {m.id: m for m in catalog if m.id}
    assert template - entries.keys() == set(), f"{code}: messages not in the catalog"
    assert entries.keys() - template == set(), f"{code}: messages no longer used"
    assert not catalog.obsolete, f"{code}: obsolete entries"
    for msgid, entry in entries.items():
        assert isinstance(entry.string, str) and entry.string.strip(), f"{code}: {msgid!r}"
        assert not entry.fuzzy, f"{code}: fuzzy {msgid!r}"
        assert sorted(_PLACEHOLDER.findall(entry.string)) == \
            sorted(_PLACEHOLDER.findall(msgid)), f"{code}: placeholders of {msgid!r}"
        if (code, msgid) not in SAME_AS_ENGLISH:
            assert entry.string != msgid, f"{code}: {msgid!r} is not translated"
    assert str(catalog.locale) == code


@pytest.mark.parametrize("code", TRANSLATED)
def test_catalog_compiles_and_translates(code: str) -> None:
    translations = compile_po(TRANSLATIONS_DIR / code / "LC_MESSAGES" / "messages.po", code)
    assert translations.gettext("Quick exit") != "Quick exit"
    assert translations.gettext("Language") != "Language"


def test_every_site_language_has_a_catalog() -> None:
    found = {p.parent.parent.name for p in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")}
    assert found == set(TRANSLATED)
    assert {lang.code for lang in LANGUAGES} == {"en", "es", "pt", "pl", "ro", "bg", "fr", "ar"}
