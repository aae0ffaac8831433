"""Choosing a language: the address prefix (/es/report), ?lang=, or Accept-Language; carried by
every link and form without a cookie; errors, the questionnaire and the envelope's manifest in
the chosen language."""

from __future__ import annotations

import html as htmllib
import re
from typing import Any

import pytest

from dropbox_server.i18n import LANGUAGES, negotiate
from dropbox_server.questionnaire import load_questionnaire
from tests.server.conftest import LABOUR, AgencyKeys, Client, backend_of
from tests.server.datafolder import envelope_files, open_envelope
from tests.server.forms import (
    BASIC_ANSWERS,
    MULTIPART,
    Part,
    code_from_receipt,
    get_csrf,
    multipart,
    report_parts,
)

PAGES = ["/", "/report", "/login"]
CODES = [lang.code for lang in LANGUAGES]
QUESTIONNAIRE = load_questionnaire()


async def post_report(client: Client, parts: list[Part], path: str) -> Any:
    return await client.post(path, data=multipart(parts), headers={"Content-Type": MULTIPART})


def links(page: str) -> list[str]:
    return re.findall(r'<(?:a|form)\b[^>]*?\b(?:href|action)="([^"]+)"', page)


def visible_text(page: str) -> str:
    body = page[page.index("<body"):]
    body = re.sub(r'<nav class="languages".*?</nav>', " ", body, flags=re.S)
    body = re.sub(r"<svg.*?</svg>", " ", body, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", body))


@pytest.mark.parametrize("header, expected", [
    (None, "en"), ("", "en"), ("es", "es"), ("pt-BR,pt;q=0.9,en;q=0.8", "pt"),
    ("en-US,en;q=0.5", "en"), ("de-DE, fr;q=0.7, ar;q=0.9", "ar"), ("xx, *", "en"),
    ("ro;q=0, bg;q=0.1", "bg"), ("PL", "pl"), ("fr;q=oops, es;q=0.2", "es"),
    ("a" * 2000, "en"), ("es;q=0.5, fr;q=0.5", "es"),
])
def test_accept_language_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("path", PAGES)
async def test_prefixed_pages_keep_their_language(client: Client, code: str, path: str) -> None:
    resp = await client.get(f"/{code}{path}")
    assert resp.status == 200
    page = await resp.text()
    direction = ' dir="rtl"' if code == "ar" else ""
    assert f'<html lang="{code}"{direction}>' in page
    # Every link and form of the site keeps the prefix (the selector links to the languages).
    outside_selector = re.sub(r'<nav class="languages".*?</nav>', "", page, flags=re.S)
    found = links(outside_selector)
    assert len(found) >= 3
    for url in found:
        if url != "https://www.bbc.co.uk/weather":  # quick exit
            assert url.startswith(f"/{code}/"), url
    # The language is remembered by the address only: no cookie carries it.
    for cookie in resp.cookies.values():
        assert cookie.key == "srdb_csrf"
    assert "Set-Cookie" not in resp.headers or "lang" not in resp.headers["Set-Cookie"]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", PAGES)
async def test_the_selector_is_on_every_page(client: Client, path: str) -> None:
    page = await (await client.get(f"/es{path}")).text()
    nav = page[page.index('<nav class="languages"'):page.index("</nav>")]
    found = re.findall(r'<a href="([^"]+)" lang="([a-z]+)" hreflang="\2"', nav)
    assert [lang for _href, lang in found] == CODES
    target = path if path != "/" else "/"
    assert [href for href, _lang in found] == [f"/{c}{target}" for c in CODES]
    assert re.search(r'lang="es" hreflang="es" aria-current="true">Español<', nav)
    assert re.search(r'lang="ar" hreflang="ar" dir="rtl">العربية<', nav)
    assert 'aria-label="Idioma"' in nav


@pytest.mark.asyncio
async def test_no_english_left_on_translated_pages(client: Client) -> None:
    english = {path: visible_text(await (await client.get(path)).text()) for path in PAGES}
    operator_words = ("Labour Inspectors", "City Police", "Unpaid wages", "Violence, threats")
    sentences = {s.strip() for text in english.values()
                 for s in re.split(r"(?<=[.?!:])\s+|\s{2,}", text)
                 if len(s.strip()) > 12 and not s.strip().startswith(operator_words)}
    assert len(sentences) > 40
    for code in CODES[1:]:
        for path in PAGES:
            text = visible_text(await (await client.get(f"/{code}{path}")).text())
            left = sorted(s for s in sentences if s in text)
            assert not left, f"/{code}{path} still says {left}"


@pytest.mark.asyncio
async def test_accept_language_without_a_prefix(client: Client) -> None:
    resp = await client.get("/report", headers={"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.5"})
    page = await resp.text()
    assert '<html lang="pl">' in page
    assert "Złóż zgłoszenie" in page
    assert QUESTIONNAIRE.in_language("pl").questions[0].label in page
    # Nothing was chosen: links stay plain, so the next page negotiates again.
    assert '<form method="post" action="/report"' in page
    assert '<input type="hidden" name="language" value="pl">' in page


@pytest.mark.asyncio
async def test_lang_query_value(client: Client) -> None:
    page = await (await client.get("/login?lang=fr")).text()
    assert '<html lang="fr">' in page
    assert 'action="/fr/login"' in page
    assert 'href="/fr/report"' in page
    page = await (await client.get("/login?lang=xx")).text()
    assert '<html lang="en">' in page


@pytest.mark.asyncio
async def test_unknown_prefix_is_not_a_page(client: Client) -> None:
    assert (await client.get("/de/report")).status == 404
    assert (await client.get("/EN/report")).status == 404


@pytest.mark.asyncio
async def test_report_form_in_arabic(client: Client) -> None:
    page = await (await client.get("/ar/report")).text()
    assert '<html lang="ar" dir="rtl">' in page
    arabic = QUESTIONNAIRE.in_language("ar")
    for question in arabic.questions:
        assert htmllib.escape(question.label, quote=False) in page
        for option in question.options:
            assert htmllib.escape(option.label, quote=False) in page
    assert '<input type="hidden" name="language" value="ar">' in page
    assert '<form method="post" action="/ar/report"' in page
    # Icons sit next to the tick-box options, inline (no extra request over Tor).
    assert page.count('<svg class="icon"') >= 26


@pytest.mark.asyncio
async def test_errors_are_in_the_chosen_language_next_to_the_field(client: Client) -> None:
    csrf = await get_csrf(client, "/es/report")
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers={},
                                                  language="es"), "/es/report")
    page = await resp.text()
    assert resp.status == 400
    assert '<html lang="es">' in page
    assert "Revise el formulario" in page
    error = '<p class="error" id="error-what_happening"><span class="visually-hidden">Error: ' \
            '</span>Marque al menos una casilla.</p>'
    assert error in page
    assert re.search(r'<fieldset class="field" id="field-what_happening"[^>]*'
                     r'aria-describedby="error-what_happening" aria-invalid="true"', page)
    assert "Please tick" not in page


@pytest.mark.asyncio
async def test_post_to_a_prefixed_address(client: Client) -> None:
    csrf = await get_csrf(client, "/ro/report")
    resp = await client.post("/ro/report", data=b"")
    page = await resp.text()
    assert resp.status in (400, 403, 415)
    assert '<html lang="ro">' in page
    assert 'href="/ro/report"' in page
    assert csrf


@pytest.mark.asyncio
async def test_login_error_in_bulgarian_and_redirects_keep_the_prefix(
        client: Client, agency_keys: AgencyKeys) -> None:
    csrf = await get_csrf(client, "/bg/login")
    resp = await client.post("/bg/login", data={"csrf": csrf, "code": "12345"})
    page = await resp.text()
    assert resp.status == 400
    assert "Кодът за достъп има 25 цифри. Броят на цифрите в този код: 5." in page
    assert re.search(r'<input type="text" id="code"[^>]*aria-describedby="code-help error-code"'
                     r' aria-invalid="true"', page)
    resp = await client.post("/bg/login", data={"csrf": csrf, "code": "1234567890 1234567890 "
                                                                      "12345"})
    assert "Проверете всяка цифра." in await resp.text()  # a typing mistake, or not known

    # A real code: the redirect after logging in keeps the language.
    report_csrf = await get_csrf(client, "/bg/report")
    receipt = await (await post_report(client, report_parts(
        report_csrf, recipient=LABOUR, answers=BASIC_ANSWERS, message="x", language="bg"),
        "/bg/report")).text()
    code = code_from_receipt(receipt)
    resp = await client.post("/bg/login", data={"csrf": await get_csrf(client, "/bg/login"),
                                                "code": code}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/bg/conversation"
    page = await (await client.get("/bg/conversation")).text()
    assert '<html lang="bg">' in page
    assert 'action="/bg/conversation/send"' in page
    assert 'action="/bg/logout"' in page


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["ar", "pt"])
async def test_manifest_language_is_the_chosen_one(client: Client, agency_keys: AgencyKeys,
                                                   code: str) -> None:
    page = await (await client.get(f"/{code}/report")).text()
    language = re.search(r'<input type="hidden" name="language" value="([^"]+)">', page)
    assert language and language.group(1) == code
    csrf = await get_csrf(client, f"/{code}/report")
    resp = await post_report(client, report_parts(csrf, recipient=LABOUR, answers=BASIC_ANSWERS,
                                                  message="m", language=language.group(1)),
                             f"/{code}/report")
    receipt = await resp.text()
    assert resp.status == 200, receipt
    assert f'<html lang="{code}"' in receipt
    assert '<p class="code" dir="ltr">' in receipt
    [path] = envelope_files(backend_of(client))
    manifest = open_envelope(path, agency_keys.labour).manifest
    assert manifest.language == code
    # The answers are option ids, whatever language the form was shown in.
    assert manifest.answers == {"what_happening": ["not_paid", "threats"]}


@pytest.mark.asyncio
async def test_envelope_errors_in_the_chosen_language(client: Client) -> None:
    resp = await client.post("/fr/submit/envelope?recipient=x", data=b"x",
                             headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    doc = await resp.json()
    assert doc == {"error": "Le signalement a été envoyé d'une façon que ce site n'accepte pas. "
                            "Rien n'a été enregistré.", "reason": "unsupported"}
    resp = await client.post("/submit/envelope?lang=pl", data=b"x",
                             headers={"Content-Type": "application/octet-stream"})
    assert (await resp.json())["error"] == "Formularz wygasł. Odśwież stronę i spróbuj ponownie."
