"""Server-side HTML: one Jinja2 environment per language, autoescaping everything.

Pages need no JavaScript and load nothing from elsewhere: one stylesheet under ``/static/``,
icons inlined into the page. Every sentence in the templates goes through gettext
(``{% trans %}`` or ``_()``); each language's environment has its catalog installed once at
start-up, so rendering never swaps translations between requests.

The language of a request comes from its address prefix (``/es/report``), else a ``lang``
query value, else ``Accept-Language`` (see :mod:`dropbox_server.i18n`). Links and forms on a page
carry the prefix only when the request had one, so unprefixed addresses keep working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from .i18n import (
    LANGUAGES,
    Gettext,
    Language,
    language_of,
    load_translations,
    negotiate,
    supported,
    translate,
)
from .questionnaire import ICONS_DIR

__all__ = ["ICONS_DIR", "QUICK_EXIT_URL", "STATIC_DIR", "TEMPLATES", "TEMPLATES_DIR",
           "PageLanguage", "Templates", "page_language", "render", "setup_templates"]

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
# Where "Quick exit" goes: a neutral, common page (GOV.UK's "Exit this page" uses the same).
QUICK_EXIT_URL = "https://www.bbc.co.uk/weather"
_SVG_BODY = re.compile(r"<svg\b[^>]*>(.*)</svg>\s*\Z", re.S)
# The page a POST answers for, to link to it in another language (a POST address cannot be
# opened with a link).
_PAGE_OF_POST = {"/report": "/report", "/login": "/login", "/conversation/send": "/conversation",
                 "/conversation/delete-reply": "/conversation", "/logout": "/"}


@dataclass(frozen=True)
class Templates:
    """The per-language environments and their gettext functions, and the pages rendered
    once and reused (see ``render(..., reuse=...)``)."""

    environments: Mapping[str, jinja2.Environment]
    gettexts: Mapping[str, Gettext]
    pages: dict[tuple[str, ...], str] = field(default_factory=dict)


TEMPLATES = web.AppKey("templates", Templates)


def load_icons(directory: Path = ICONS_DIR) -> dict[str, Markup]:
    """Every ``<name>.svg`` in ``directory`` as inline, decorative SVG markup. Inlined rather
    than linked: each extra request costs seconds over Tor."""
    icons: dict[str, Markup] = {}
    for path in sorted(directory.glob("*.svg")):
        match = _SVG_BODY.search(path.read_text(encoding="utf-8"))
        if match is None:
            raise ValueError(f"{path}: not an SVG file")
        svg = ('<svg class="icon" viewBox="0 0 24 24" width="32" height="32" '
               'aria-hidden="true" focusable="false" fill="none" stroke="currentColor" '
               'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">'
               + match.group(1).strip() + "</svg>")
        icons[path.stem] = Markup(svg)  # noqa: S704 - the project's own files, read at start
    return icons


def build_environment(translations: Any, icons: Mapping[str, Markup]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        extensions=["jinja2.ext.i18n"],
    )
    # Whitespace inside {% trans %} is collapsed, as the extractor does (babel.cfg).
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]

    def icon(name: str) -> Markup:
        return icons.get(name, Markup(""))

    env.globals["icon"] = icon
    return env


def build_templates() -> Templates:
    translations = load_translations()
    icons = load_icons()
    return Templates(
        {code: build_environment(t, icons) for code, t in translations.items()},
        {code: t.gettext for code, t in translations.items()})


def setup_templates(app: web.Application) -> None:
    """Build the environments once and serve the stylesheet from the same origin."""
    app[TEMPLATES] = build_templates()
    app.router.add_static("/static/", STATIC_DIR, name="static", show_index=False,
                          follow_symlinks=False)


@dataclass(frozen=True)
class PageLanguage:
    """The language of one request, and whether the person chose it (prefix or ``lang``),
    in which case every link and form keeps it."""

    language: Language
    chosen: bool

    @property
    def code(self) -> str:
        return self.language.code

    def url(self, path: str) -> str:
        """``path`` (absolute, without prefix) as a link that keeps this language."""
        if not self.chosen:
            return path
        return f"/{self.code}{path}" if path != "/" else f"/{self.code}/"


def page_language(request: web.Request) -> PageLanguage:
    code = request.match_info.get("lang", "")
    if supported(code):
        return PageLanguage(language_of(code), True)
    query = request.query.get("lang", "")
    if supported(query):
        return PageLanguage(language_of(query), True)
    return PageLanguage(language_of(negotiate(request.headers.get("Accept-Language"))), False)


def gettext_for(request: web.Request) -> Gettext:
    """The gettext function of the request's language."""
    return request.app[TEMPLATES].gettexts[page_language(request).code]


def _page_path(request: web.Request, lang: PageLanguage) -> str:
    """This page's address without language prefix or query, for the language selector."""
    path = request.path
    if "lang" in request.match_info:
        path = path[len(lang.code) + 1:] or "/"
    if request.method == "POST":
        return _PAGE_OF_POST.get(path, "/")
    return path


def render(request: web.Request, template: str, *, status: int = 200, reuse: str = "",
           **context: Any) -> web.Response:
    """Render ``template`` to an HTML response in the request's language. Error messages
    (``errors`` values, ``error``) are translated here. Security headers (including
    ``Cache-Control: no-store``) are added to every response by the middleware.

    ``reuse`` names a page whose ``context`` is the same for every request but for ``csrf``
    (the report form, the "busy" page): it is rendered once per language and address and
    reused with each request's token. The report form takes some 2-3 ms to render, so a flood
    of requests for it would otherwise hold up the event loop (benchmarks/load.py)."""
    templates = request.app[TEMPLATES]
    lang = page_language(request)
    if not reuse:
        html = _render(request, templates, lang, template, context)
    else:
        key = (template, reuse, str(status), lang.code, str(lang.chosen),
               _page_path(request, lang))
        page = templates.pages.get(key)
        if page is None:
            page = _render(request, templates, lang, template,
                           (context | {"csrf": _CSRF_SLOT}) if "csrf" in context else context)
            if len(templates.pages) < _MAX_REUSED_PAGES:  # keys come from routes; a bound anyway
                templates.pages[key] = page
        html = page.replace(_CSRF_SLOT, context["csrf"]) if "csrf" in context else page
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


# Stands for the CSRF token in a reused page. Not hex, so no real token or page text has it.
_CSRF_SLOT = "csrf-token-slot-zq"
_MAX_REUSED_PAGES = 512


def _render(request: web.Request, templates: Templates, lang: PageLanguage, template: str,
            context: dict[str, Any]) -> str:
    gettext_ = templates.gettexts[lang.code]
    if "errors" in context:
        context["errors"] = {k: translate(v, gettext_) for k, v in context["errors"].items()}
    if context.get("error"):
        context["error"] = translate(context["error"], gettext_)
    page = _page_path(request, lang)
    languages = [(other, f"/{other.code}{page}" if page != "/" else f"/{other.code}/",
                  other.code == lang.code) for other in LANGUAGES]
    return templates.environments[lang.code].get_template(template).render(
        lang=lang.code, dir=lang.language.direction, url=lang.url, languages=languages,
        quick_exit_url=QUICK_EXIT_URL, **context)
