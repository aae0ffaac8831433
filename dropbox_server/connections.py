"""The HTTP connections under both sites, before the app sees a request: how long a client may
take to send its request head, and what a request aiohttp cannot parse gets back.

* **Header timeout.** aiohttp's only connection timer is ``keepalive_timeout``: it closes a
  connection that has not delivered a complete request head within that many seconds of opening
  (or of its previous answer), and never one whose request is being handled (see
  ``RequestHandler._process_keepalive``: it closes only while the handler waits for a request).
  So it cuts off a client that trickles header lines (slowloris), and idle keep-alive
  connections, but not an upload that is sending its body, however slowly: a 2 GiB report over
  Tor can take an hour. It is 3630 s by default; :class:`SiteRunner` sets it from the
  configuration (``header_timeout_seconds``).
* **Parser errors.** aiohttp answers requests it cannot parse (bad request lines, oversize
  headers, unknown methods) itself, before the app and its ``on_response_prepare`` hook: with
  ``Server: Python/3.x aiohttp/3.x`` (exact versions, which fingerprint an onion service), without
  the security headers, and quoting the offending text. :class:`SiteRunner` makes those answers
  like every other one: the same headers (``Server: dropbox``), a fixed text, connection closed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .middlewares import SECURITY_HEADERS

__all__ = ["SiteRunner"]

_ERROR_TEXT = {
    400: "The request could not be read.\n",
    500: "Something went wrong on our side. Please try again.\n",
}


class _Connection(RequestHandler):
    """aiohttp's request handler, answering unparsable requests without telling who we are."""

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # aiohttp's own version logs the error (cli.main withholds the request data from that
        # log) and refuses when an answer has already started; its response is dropped: it
        # quotes ``message``, the text that could not be parsed.
        super().handle_error(request, status, exc, message)
        response = web.Response(status=status, text=_ERROR_TEXT.get(status, _ERROR_TEXT[400]),
                                content_type="text/plain", headers=SECURITY_HEADERS)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class SiteRunner(web.AppRunner):
    """``web.AppRunner`` for one site (public or staff): no access log, the header timeout, and
    parser errors answered like the site's other responses."""

    def __init__(self, app: web.Application, *, header_timeout: float) -> None:
        super().__init__(app, access_log=None, handle_signals=False,
                         keepalive_timeout=header_timeout)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        kwargs: dict[str, Any] = dict(server._kwargs)
        return _Server(server.request_handler, request_factory=server.request_factory,
                       handler_cancellation=server.handler_cancellation, loop=server._loop,
                       **kwargs)
