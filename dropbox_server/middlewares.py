"""Middlewares: security headers on every response, allowed methods, errors without content."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["install_security_headers", "make_error_middleware", "methods_middleware"]

log = logging.getLogger("dropbox_server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
       "img-src 'self'; form-action 'self'; connect-src 'self'; worker-src 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Permissions-Policy": ("accelerometer=(), camera=(), geolocation=(), gyroscope=(), "
                           "magnetometer=(), microphone=(), payment=(), usb=(), "
                           "interest-cohort=()"),
    "Server": "dropbox",
}
ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD"})


def _apply(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value


async def _on_prepare(_request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare also covers streamed responses and errors raised by aiohttp itself.
    _apply(response)


def install_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(_on_prepare)


@web.middleware
async def methods_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ALLOWED_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(ALLOWED_METHODS),
                                       text="Method not allowed.")
    return await handler(request)


def make_error_middleware(*, api: bool) -> Middleware:
    """The last line of defence: a generic 500 (a page, or JSON for the staff API)."""

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            # Log the kind of failure and where, never the request or the exception text
            # (which may quote user input).
            route = request.match_info.route.name or request.match_info.route.resource
            log.error("internal error %s in %s", type(exc).__name__, route)
            if api:
                raise web.HTTPInternalServerError(
                    text='{"error": "internal server error"}',
                    content_type="application/json") from None
            raise web.HTTPInternalServerError(
                text="Something went wrong on our side. Your report was not saved; "
                     "please try again.") from None

    return error_middleware

