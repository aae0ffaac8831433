"""Typed keys for objects shared through the aiohttp applications (no module globals)."""

from __future__ import annotations

from aiohttp import web

from .backend import Backend
from .config import Config

__all__ = ["BACKEND", "CONFIG", "STAFF_APP"]

CONFIG = web.AppKey("config", Config)
BACKEND = web.AppKey("backend", Backend)
STAFF_APP = web.AppKey("staff_app", web.Application)
