"""Server-side HTML: one Jinja2 environment per application, autoescaping everything.

Pages need no JavaScript and load nothing from elsewhere: one stylesheet under ``/static/``.
Every string in the templates is a whole, simple sentence so that it can later be wrapped for
gettext without rewording.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

__all__ = ["QUICK_EXIT_URL", "STATIC_DIR", "TEMPLATES", "TEMPLATES_DIR", "render",
           "setup_templates"]

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
# Where "Quick exit" goes: a neutral, common page (GOV.UK's "Exit this page" uses the same).
QUICK_EXIT_URL = "https://www.bbc.co.uk/weather"

TEMPLATES = web.AppKey("templates", jinja2.Environment)


def build_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def setup_templates(app: web.Application) -> None:
    """Build the environment once and serve the stylesheet from the same origin."""
    app[TEMPLATES] = build_environment()
    app.router.add_static("/static/", STATIC_DIR, name="static", show_index=False,
                          follow_symlinks=False)


def render(request: web.Request, template: str, *, status: int = 200, lang: str = "en",
           **context: Any) -> web.Response:
    """Render ``template`` to an HTML response. Security headers (including
    ``Cache-Control: no-store``) are added to every response by the middleware."""
    env = request.app[TEMPLATES]
    html = env.get_template(template).render(lang=lang, quick_exit_url=QUICK_EXIT_URL,
                                             **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
