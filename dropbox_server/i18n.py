"""Languages of the public site: which ones it speaks, which one a request wants, and the
gettext catalogs that hold every sentence the pages and the server's messages show.

The language of a page is carried in its address, never in a cookie: ``/es/report`` is the
report form in Spanish, and every link and form on that page keeps the ``/es`` prefix. A request
without a prefix gets the language its browser asks for (``Accept-Language``), else English.
Tor Browser always asks for English, so every page also shows a language selector.

Catalogs are the ``.po`` files in ``translations/``; they are compiled in memory when the server
starts (no compiled ``.mo`` files to keep in step). Pure: no aiohttp.
"""

from __future__ import annotations

import gettext
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "N_",
    "TRANSLATIONS_DIR",
    "Gettext",
    "Language",
    "Message",
    "compile_po",
    "language_of",
    "load_translations",
    "negotiate",
    "supported",
    "translate",
]

TRANSLATIONS_DIR = Path(__file__).with_name("translations")
DOMAIN = "messages"


@dataclass(frozen=True)
class Language:
    """A language the site is offered in: its tag (also the address prefix), its own name for
    itself, and its writing direction."""

    code: str
    name: str
    direction: str = "ltr"


# The selector lists them in this order; English first as the source language.
LANGUAGES: tuple[Language, ...] = (
    Language("en", "English"),
    Language("es", "Español"),
    Language("pt", "Português"),
    Language("pl", "Polski"),
    Language("ro", "Română"),
    Language("bg", "Български"),
    Language("fr", "Français"),
    Language("ar", "العربية", "rtl"),
)
DEFAULT_LANGUAGE = "en"
_BY_CODE = {lang.code: lang for lang in LANGUAGES}
_RANGE = re.compile(r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*")
MAX_ACCEPT_LANGUAGE = 1024


def supported(code: str) -> Language | None:
    """The language for an address prefix or ``lang`` value (exact, lower case), or None."""
    return _BY_CODE.get(code)


def negotiate(accept_language: str | None) -> str:
    """The best supported language for an ``Accept-Language`` header (RFC 9110 weights;
    ``pt-BR`` matches ``pt``); the default language when nothing matches."""
    if not accept_language or len(accept_language) > MAX_ACCEPT_LANGUAGE:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")):
        match = _RANGE.fullmatch(item)
        if match is None:
            continue
        tag, weight = match.group(1).lower(), match.group(2)
        try:
            q = 1.0 if weight is None else float(weight)
        except ValueError:
            continue
        if q <= 0 or tag == "*":
            continue
        base = tag.split("-", 1)[0]
        if base in _BY_CODE:
            ranked.append((-q, index, base))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


def N_(text: str) -> str:
    """Mark ``text`` for the catalog without translating it here."""
    return text


class Message(str):
    """A message for a person, in English, that remembers its catalog entry and parameters so
    that a page can show it in the person's language: ``Message(N_("At most %(n)s."), n=3)``
    is the string ``"At most 3."`` and ``.localise(gettext)`` gives it in another language."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Message:
        self = super().__new__(cls, template % params if params else template)
        self.template = template
        self.params = params
        return self

    def localise(self, gettext_: Callable[[str], str]) -> str:
        text = gettext_(self.template)
        return text % self.params if self.params else text


Gettext = Callable[[str], str]


def translate(text: str, gettext_: Gettext) -> str:
    """``text`` in the language of ``gettext_``: a :class:`Message` through its catalog entry,
    any other string as a msgid."""
    if isinstance(text, Message):
        return text.localise(gettext_)
    return gettext_(text)


def load_translations(directory: Path = TRANSLATIONS_DIR) -> dict[str, gettext.NullTranslations]:
    """Every supported language's catalog, compiled from ``<directory>/<code>/LC_MESSAGES/
    messages.po``. English is the source language: its catalog may be missing (the msgids are
    the English text). Raises ``FileNotFoundError`` when another language has no catalog."""
    out: dict[str, gettext.NullTranslations] = {}
    for language in LANGUAGES:
        path = directory / language.code / "LC_MESSAGES" / f"{DOMAIN}.po"
        if language.code == DEFAULT_LANGUAGE and not path.exists():
            out[language.code] = gettext.NullTranslations()
            continue
        out[language.code] = compile_po(path, language.code)
    return out


def compile_po(path: Path, locale: str) -> gettext.GNUTranslations:
    """A ``.po`` file compiled in memory. Fuzzy and empty entries are left out, so they show
    the English text (the catalog test fails on them)."""
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=locale, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def language_of(code: str) -> Language:
    return _BY_CODE.get(code) or _BY_CODE[DEFAULT_LANGUAGE]
