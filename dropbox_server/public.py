"""The public reporting site (placeholder until the public-site work lands)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["setup_routes"]


def setup_routes(app: web.Application) -> None:
    pass
