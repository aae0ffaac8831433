"""The application factory (aiohttp conventions: one factory, typed AppKeys, cleanup_ctx)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import public, staff
from .appkeys import BACKEND, CONFIG, STAFF_APP
from .backend import Backend
from .config import Config
from .middlewares import install_security_headers, make_error_middleware, methods_middleware

__all__ = ["create_app"]

# The public site streams uploads itself; nothing it serves reads a whole body into memory,
# so aiohttp's own buffered-body limit stays small.
CLIENT_MAX_SIZE = 1024 * 1024


def _backend_ctx(backend: Backend) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_app: web.Application) -> AsyncIterator[None]:
        await backend.acquire()
        yield
        await backend.release()
    return ctx


def create_app(config: Config, *, backend: Backend | None = None) -> web.Application:
    """The public reporting site. The staff API is ``app[STAFF_APP]``, sharing one Backend;
    serve each on its own port (and onion service)."""
    backend = backend or Backend(config)
    app = web.Application(middlewares=[methods_middleware, make_error_middleware(api=False)],
                          client_max_size=CLIENT_MAX_SIZE)
    app[CONFIG] = config
    app[BACKEND] = backend
    app.cleanup_ctx.append(_backend_ctx(backend))
    install_security_headers(app)
    public.setup_routes(app)
    app[STAFF_APP] = create_staff_app(config, backend)
    return app


def create_staff_app(config: Config, backend: Backend) -> web.Application:
    app = web.Application(middlewares=[make_error_middleware(api=True)],
                          client_max_size=CLIENT_MAX_SIZE)
    app[CONFIG] = config
    app[BACKEND] = backend
    app.cleanup_ctx.append(_backend_ctx(backend))
    install_security_headers(app)
    staff.setup_routes(app)
    return app
