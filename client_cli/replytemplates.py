"""Canned, translated replies (``reply --template NAME --language LANG``).

The texts live in ``reply_templates.json`` next to this module, so that translators can edit
them without touching code. A template may contain ``{name}`` placeholders, filled from
``--set name=value``; a reply is never sent with a placeholder left in it.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CliError

__all__ = ["Template", "TemplateSet", "load_templates", "parse_templates"]

DATA_FILE = "reply_templates.json"


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    texts: Mapping[str, str]  # language tag -> text

    @property
    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for text in self.texts.values():
            names |= {field for _lit, field, _spec, _conv in string.Formatter().parse(text)
                      if field}
        return names

    def language_for(self, language: str) -> str | None:
        """The template language to use for ``language`` (``pt-BR`` falls back to ``pt``)."""
        for candidate in (language, language.split("-", 1)[0]):
            for tag in self.texts:
                if tag.lower() == candidate.lower():
                    return tag
        return None

    def render(self, language: str, values: Mapping[str, str]) -> tuple[str, str]:
        """(text, language tag) of this template in ``language``, placeholders filled."""
        tag = self.language_for(language)
        if tag is None:
            raise CliError(f"template {self.name!r} has no {language!r} text; it has: "
                           f"{', '.join(sorted(self.texts))}")
        missing = sorted(self.placeholders - values.keys())
        if missing:
            raise CliError(f"template {self.name!r} needs "
                           f"{', '.join(f'--set {m}=...' for m in missing)}")
        text = self.texts[tag]
        # Plain replacement, not str.format: a value is staff text, never a format string.
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text, tag


@dataclass(frozen=True)
class TemplateSet:
    templates: Mapping[str, Template]
    reviewed: frozenset[str]

    def get(self, name: str) -> Template:
        template = self.templates.get(name)
        if template is None:
            raise CliError(f"there is no reply template {name!r}; see "
                           "`dropbox-client reply --list-templates`")
        return template

    def listing(self) -> str:
        lines = []
        for name, template in self.templates.items():
            languages = ", ".join(tag if tag in self.reviewed else f"{tag}*"
                                  for tag in sorted(template.texts))
            lines.append(f"{name:<18} {template.description}")
            lines.append(f"{'':<18} languages: {languages}")
        lines.append("* draft translation, not yet reviewed by a fluent speaker: have it "
                     "checked before relying on it")
        return "\n".join(lines)


_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def parse_templates(doc: Any) -> TemplateSet:
    if not isinstance(doc, dict) or doc.get("format") != 1 or \
            not isinstance(doc.get("templates"), dict):
        raise CliError(f"{DATA_FILE}: not a reply template file (format 1)")
    templates = {}
    for name, item in doc["templates"].items():
        if not _NAME.fullmatch(name) or not isinstance(item, dict) or \
                not isinstance(item.get("texts"), dict) or \
                not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                        for k, v in item["texts"].items()):
            raise CliError(f"{DATA_FILE}: template {name!r} is malformed")
        templates[name] = Template(name, str(item.get("description", "")), dict(item["texts"]))
    reviewed = doc.get("reviewed", [])
    return TemplateSet(templates, frozenset(r for r in reviewed if isinstance(r, str))
                       if isinstance(reviewed, list) else frozenset())


def load_templates() -> TemplateSet:
    """The templates shipped with the package."""
    text = importlib.resources.files("client_cli").joinpath(DATA_FILE).read_text("utf-8")
    try:
        return parse_templates(json.loads(text))
    except json.JSONDecodeError:
        raise CliError(f"{DATA_FILE} is not valid JSON") from None
