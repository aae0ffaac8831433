"""Every page: security headers (on every route, errors and static included), neutral title,
quick exit, language, cookies; and the report form's field order."""

from __future__ import annotations

import re

import pytest

from dropbox_server.middlewares import SECURITY_HEADERS
from tests.server.conftest import LABOUR, POLICE, Client, backend_of
from tests.server.forms import MULTIPART, get_csrf, multipart

pytestmark = pytest.mark.asyncio

PAGES = ["/", "/report", "/login"]


def assert_security_headers(resp: object) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{name} on {resp.url}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("HEAD", "/"), ("GET", "/report"), ("GET", "/login"),
    ("GET", "/conversation"), ("GET", "/static/style.css"), ("HEAD", "/static/style.css"),
    ("GET", "/no-such-page"), ("GET", "/static/no-such-file.css"),
    ("GET", "/static/../dropbox_server/public.py"),
    ("GET", "/logout"), ("GET", "/submit/envelope"),
    ("POST", "/"), ("POST", "/report"), ("POST", "/login"), ("POST", "/logout"),
    ("POST", "/conversation/send"), ("POST", "/conversation/delete-reply"),
    ("POST", "/submit/envelope"),
    ("PUT", "/report"), ("DELETE", "/"), ("PATCH", "/login"), ("OPTIONS", "/"),
    ("TRACE", "/"),
])
async def test_security_headers_on_every_route(client: Client, method: str, path: str) -> None:
    resp = await client.request(method, path, allow_redirects=False)
    assert_security_headers(resp)
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"])
@pytest.mark.parametrize("path", ["/", "/report", "/submit/envelope", "/nowhere"])
async def test_only_get_post_head(client: Client, method: str, path: str) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405


async def test_wrong_method_on_a_known_route(client: Client) -> None:
    assert (await client.get("/logout")).status == 405
    assert (await client.post("/")).status == 405
    assert (await client.get("/no-such-page")).status == 404


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_is_neutral_with_a_quick_exit(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert re.search(r'<html lang="en">', html)
    assert "<title>Information</title>" in html
    exit_link = re.search(r'<a class="quick-exit" href="([^"]+)" rel="noreferrer">Quick exit</a>',
                          html)
    assert exit_link and exit_link.group(1) == "https://www.bbc.co.uk/weather"
    # Quick exit comes before anything else one can click.
    assert html.index("quick-exit") < html.index("<main")
    # Nothing from elsewhere; scripts only as same-origin files (the page works without them).
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert re.fullmatch(r'<script src="/static/[a-z]+\.js" defer>', tag), tag
    assert not re.search(r"<script\b[^>]*>[^<]", html)  # no inline script
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/") or url == "https://www.bbc.co.uk/weather", url


async def test_landing_page_says_what_matters(client: Client) -> None:
    html = await (await client.get("/")).text()
    for text in ("never record your IP address", "immigration status",
                 "Immigration enforcement never receives reports",
                 "Labour Inspectors", "City Police", "What happens next",
                 "private browsing", "delete only this site from your browser history",
                 'href="/report"', 'href="/login"'):
        assert text in html, text


async def test_stylesheet_is_served_same_origin(client: Client) -> None:
    resp = await client.get("/static/style.css")
    assert resp.status == 200
    assert resp.content_type == "text/css"
    assert ".quick-exit" in await resp.text()


async def test_form_pages_set_a_strict_session_csrf_cookie(client: Client) -> None:
    for path in ("/report", "/login"):
        resp = await client.get(path)
        cookie = resp.cookies["srdb_csrf"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert not cookie["max-age"] and not cookie["expires"]
        # The field is the HMAC of the cookie, not the cookie itself.
        token = await get_csrf(client, path)
        assert token != cookie.value
        assert backend_of(client).csrf_ok(cookie.value, token)
    # The landing page has no form, so no cookie.
    assert "srdb_csrf" not in (await client.get("/")).cookies


async def test_report_form_field_order(client: Client) -> None:
    html = await (await client.get("/report")).text()
    form = html[html.index('<form method="post" action="/report"'):]
    form = form[:form.index("</form>")]
    assert 'enctype="multipart/form-data"' in form
    names = []
    for name in re.findall(r'<(?:input|textarea)[^>]*\bname="([^"]+)"', form):
        if not names or names[-1] != name:
            names.append(name)
    questionnaire = [q.id for q in backend_of(client).questionnaire.questions]
    assert names == ["csrf", "recipient", *questionnaire, "message", "language", "attachments"]
    assert re.search(r'<input type="file" id="attachments" name="attachments" multiple>', form)
    assert re.search(r'<input type="hidden" name="language" value="en">', form)
    for rid in (LABOUR, POLICE):
        assert f'value="{rid}"' in form


async def test_a_bad_submission_still_gets_headers(client: Client) -> None:
    body = multipart([])
    resp = await client.post("/report", data=body, headers={"Content-Type": MULTIPART})
    assert resp.status == 403
    assert_security_headers(resp)


async def test_the_reused_report_form_has_each_browsers_own_token(client: Client) -> None:
    # The empty form is rendered once per language and reused (dropbox_server.render): each
    # browser still gets the token for its own cookie, and each language its own page.
    backend = backend_of(client)
    pages, tokens = [], []
    for _ in range(2):
        client.session.cookie_jar.clear()  # another browser
        resp = await client.get("/report")
        html = await resp.text()
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
        assert token and backend.csrf_ok(resp.cookies["srdb_csrf"].value, token.group(1))
        pages.append(html.replace(token.group(1), "TOKEN"))
        tokens.append(token.group(1))
    assert tokens[0] != tokens[1] and pages[0] == pages[1]
    assert "csrf-token-slot" not in pages[0]
    spanish = await (await client.get("/es/report")).text()
    assert '<html lang="es"' in spanish and spanish.count('name="csrf"') == 1
