"""A catalogue of hand-written attacks against the running server (``dropbox-server run --dev``
in a subprocess, reached over loopback sockets, raw where a client library would tidy the
request up): each gets a refusal (4xx), never a 500, a hang, a file outside the store, a record
or the server's own files.

Where the server falls short, the test says so with ``xfail(strict=True)`` and the reason
(none at the moment).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import socket
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from dropbox_envelope.keys import StaffSecretKey
from dropbox_envelope.staffauth import EMPTY_BODY_SHA256, sign_request
from tests.e2e.test_product_loop import Server
from tests.hostile.live import (
    TIMEOUT,
    Running,
    browser,
    csrf,
    make_data,
    post_form,
    raw,
    status_of,
    still_serving,
)
from tests.server.datafolder import open_envelope
from tests.server.forms import (
    BOUNDARY,
    MULTIPART,
    Field,
    File,
    code_from_receipt,
    multipart,
    report_parts,
)
from tests.server.test_envelope_path import seal

RECIPIENT = "city-police"
ANSWERS = {"what_happening": ["threats"]}
# Text that must never come back from the public site: the server's own files.
SECRETS = [b"[server]", b"def load_config", b"root:x:0:0", b"srdb1-ed25519-"]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("catalogue")
    data, agency, staff = make_data(root)
    server = Server(data, root / "server.log")
    try:
        yield Running(server, data, root / "server.log", agency, staff)
    finally:
        server.stop()
    log = (root / "server.log").read_text()
    assert "internal error" not in log, log  # no 500 happened anywhere in the catalogue


# --- path traversal --------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../dropbox.toml", "/static/%2e%2e/dropbox.toml", "/static/%2e%2e%2fconfig.py",
    "/static/..%2f..%2fdropbox.toml", "/static/%252e%252e/config.py", "/static/....//config.py",
    "/static/..\\config.py", "/static/..%5cconfig.py", "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd", "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/style.css%00.py",
    "/static/./../../dropbox_server/config.py", "/es/../dropbox.toml", "/static/",
    "/static/..", "/static/%c0%ae%c0%ae/config.py", "/static/\u2025/config.py",
    "/../../../../etc/passwd", "/report/../../etc/passwd", "/static/../../../../../etc/passwd",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("target", TRAVERSALS)
async def test_path_traversal_in_urls(running: Running, target: str) -> None:
    response = await raw(running.public_port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                              "Connection: close\r\n\r\n".encode())
    status = status_of(response)
    assert status < 500
    for secret in SECRETS:
        assert secret not in response, target
    if status == 200:  # normalised to a page of the site, never a file outside static/
        assert b"text/html" in response or b"text/css" in response


@pytest.mark.asyncio
async def test_traversal_in_attachment_names(running: Running) -> None:
    before = running.store()
    async with browser() as session:
        for name in ("../../../../tmp/srdb-pwned.txt", "a/../../b.txt", "/etc/cron.d/x", ".."):
            token = await csrf(session, running)
            body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS,
                                          files=[File("attachments", name, b"x")]))
            status, _page = await post_form(session, running, body)
            assert status == 400, name
        # Names that only look like paths are kept as names, inside the ciphertext.
        token = await csrf(session, running)
        body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS, files=[
            File("attachments", "..%2F..%2Fpasswd", b"percent"),
            File("attachments", "....txt", b"dots"),
            # A quoted-string: the backslashes escape the dots, so this is "....x.txt".
            File("attachments", "..\\..\\x.txt", b"escaped")]))
        status, page = await post_form(session, running, body)
        assert status == 200, page
    assert not Path("/tmp/srdb-pwned.txt").exists()
    [new] = sorted(set(running.store()) - set(before))
    assert re.fullmatch(r"store/envelopes/[0-9a-f]{32}\.srdb", new)
    opened = open_envelope(running.data / new, running.agency)
    assert [a.name for a in opened.manifest.attachments] == [
        "..%2F..%2Fpasswd", "....txt", "....x.txt"]


@pytest.mark.asyncio
async def test_traversal_in_ids_and_recipients(running: Running) -> None:
    async with browser() as session:
        token = await csrf(session, running)
        for recipient in ("../../etc", "..%2f..", "city-police/../x"):
            async with session.post(f"{running.server.public}/submit/envelope",
                                    params={"recipient": recipient}, data=b"SRDB-ENV",
                                    headers={"Content-Type": "application/octet-stream",
                                             "X-CSRF-Token": token}) as resp:
                assert resp.status == 400
        for envelope_id in ("..%2f..%2fdropbox.toml", "../../dropbox.toml", "%2e%2e"):
            path = f"/staff/v1/envelopes/{envelope_id}"
            headers = sign_request(running.staff, "GET", path, EMPTY_BODY_SHA256,
                                   now=int(time.time())).as_dict()
            response = await raw(int(running.staff_url.rsplit(":", 1)[1]), (
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode())
            assert status_of(response) in (400, 401, 404)
            assert b"[server]" not in response


# --- headers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) +
    b"\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + b"srdb_csrf=" * 5000 + b"\r\n\r\n",
], ids=["100 KB header", "20 KB request line", "500 headers", "huge cookie"])
@pytest.mark.asyncio
async def test_oversize_headers_are_refused(running: Running, request_bytes: bytes) -> None:
    started = time.monotonic()
    response = await raw(running.public_port, request_bytes)
    assert 400 <= status_of(response) < 500
    assert time.monotonic() - started < 5
    await still_serving(running)


@pytest.mark.asyncio
async def test_a_malformed_request_is_not_quoted_in_the_log(running: Running) -> None:
    for request in (b"GET /CANARY-LINE\xe2\x80\xa5 HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: srdb_session=CANARY-COOKIE\r\n"
                    b"X-Long: " + b"a" * 10_000 + b"\r\n\r\n"):
        assert status_of(await raw(running.public_port, request)) == 400
    await still_serving(running)
    log = running.log.read_text()
    assert "CANARY-LINE" not in log and "CANARY-COOKIE" not in log


SLOWLORIS_DEADLINE = 10.0  # seconds: the default header_timeout_seconds (dropbox.toml)
QUICK_CUTOFF = 3  # header_timeout_seconds of the `quick_cutoff` server
QUICK_IDLE = 5  # its body_idle_timeout_seconds
# Bounds, not timings: a cut-off must come, and not before its timeout; how late it may come
# is generous, as this machine may be busy.
SLACK = 8.0


@pytest.fixture(scope="module")
def quick_cutoff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A second server whose connections must send their request head within QUICK_CUTOFF s,
    and whose uploads may not go QUICK_IDLE s without a byte."""
    root = tmp_path_factory.mktemp("quick-cutoff")
    data, agency, staff = make_data(root)
    config = data / "dropbox.toml"
    text = re.sub(r"(?m)^header_timeout_seconds = .*$",
                  f"header_timeout_seconds = {QUICK_CUTOFF}", config.read_text())
    config.write_text(re.sub(r"(?m)^body_idle_timeout_seconds = .*$",
                             f"body_idle_timeout_seconds = {QUICK_IDLE}", text))
    server = Server(data, root / "server.log")
    try:
        yield Running(server, data, root / "server.log", agency, staff)
    finally:
        server.stop()


async def trickle_headers(port: int, seconds: float) -> float | None:
    """Send a request head one header line every 0.5 s for up to ``seconds``; how long until
    the server closed the connection (None: it never did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - started < seconds:
            writer.write(b"X-a: b\r\n")
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 0.5) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                continue
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()
    return None


@pytest.mark.asyncio
async def test_slowloris_headers_are_cut_off(running: Running) -> None:
    # The default configuration: cut off once header_timeout_seconds have passed.
    closed_after = await trickle_headers(running.public_port, SLOWLORIS_DEADLINE + SLACK + 2)
    assert closed_after is not None
    assert SLOWLORIS_DEADLINE - 0.5 <= closed_after <= SLOWLORIS_DEADLINE + SLACK
    await still_serving(running)


@pytest.mark.asyncio
async def test_slowloris_is_cut_off_on_both_ports(quick_cutoff: Running) -> None:
    staff_port = int(quick_cutoff.staff_url.rsplit(":", 1)[1])
    for port in (quick_cutoff.public_port, staff_port):
        closed_after = await trickle_headers(port, QUICK_CUTOFF + SLACK + 2)
        assert closed_after is not None
        assert QUICK_CUTOFF - 0.5 <= closed_after <= QUICK_CUTOFF + SLACK


async def slowly(body: bytes, pieces: int, pause: float) -> AsyncIterator[bytes]:
    step = -(-len(body) // pieces)
    for i in range(0, len(body), step):
        yield body[i:i + step]
        await asyncio.sleep(pause)


@pytest.mark.asyncio
async def test_a_slow_upload_that_keeps_sending_is_not_cut_off(quick_cutoff: Running) -> None:
    # Headers in time, then a body that takes 4 x the header timeout to arrive: the report is
    # stored (a large report over Tor can take many minutes). Twice, to show nothing was left
    # over. (Each request on its own connection: a connection reused after being idle for the
    # whole timeout could meet the server closing it, a race real browsers answer by retrying.)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT,
                                     connector=aiohttp.TCPConnector(force_close=True)) as session:
        token = await csrf(session, quick_cutoff)
        for _ in range(2):
            body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS, files=[
                File("attachments", "scan.pdf", b"%PDF-" + b"s" * 40_000)]))
            async with session.post(quick_cutoff.server.public + "/report",
                                    data=slowly(body, 9, QUICK_CUTOFF / 2),
                                    headers={"Content-Type": MULTIPART}) as resp:
                assert resp.status == 200
                page = await resp.text()
            code_from_receipt(page)
            token = await csrf(session, quick_cutoff)
    assert len(quick_cutoff.store()) == 2


async def stall_after(body: bytes, sent: int) -> AsyncIterator[bytes]:
    """Send the first ``sent`` bytes of ``body``, then nothing more (a client gone silent)."""
    yield body[:sent]
    await asyncio.sleep(3600)


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["head", "file", "envelope"])
async def test_a_stalled_upload_is_stopped_and_leaves_nothing(quick_cutoff: Running,
                                                              where: str) -> None:
    # A client that sends its head (and maybe part of a file) and then goes silent would hold
    # an upload slot for ever: the header timeout never cuts off a body being read. After
    # body_idle_timeout_seconds without a byte it gets a 408, and nothing is kept. (The slow
    # upload test above shows that pauses shorter than that are not cut off.)
    before = quick_cutoff.store()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT,
                                     connector=aiohttp.TCPConnector(force_close=True)) as session:
        token = await csrf(session, quick_cutoff)
        if where == "envelope":
            envelope = seal([quick_cutoff.agency.public_key], attachment=b"x" * 300_000)
            url = f"{quick_cutoff.server.public}/submit/envelope?recipient={RECIPIENT}"
            headers = {"Content-Type": "application/octet-stream", "X-CSRF-Token": token}
            data = stall_after(envelope, 200_000)
        else:
            body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS, files=[
                File("attachments", "scan.pdf", b"%PDF-" + b"s" * 300_000)]))
            url = quick_cutoff.server.public + "/report"
            headers = {"Content-Type": MULTIPART}
            data = stall_after(body, 2 if where == "head" else 200_000)
        started = time.monotonic()
        async with session.post(url, data=data, headers=headers) as resp:
            assert resp.status == 408
            await resp.read()
        assert QUICK_IDLE - 0.5 <= time.monotonic() - started < QUICK_IDLE + SLACK
    assert quick_cutoff.store() == before
    assert not list((quick_cutoff.data / "tmp").iterdir())


# --- forms -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_huge_numbers_of_fields(running: Running) -> None:
    before = running.store()
    async with browser() as session:
        token = await csrf(session, running)
        fields = [Field("csrf", token), Field("recipient", RECIPIENT)] + \
            [Field(f"f{i}", "x") for i in range(20_000)]
        started = time.monotonic()
        status, _page = await post_form(session, running, multipart(fields))
        assert status == 400 and time.monotonic() - started < 10
        fields = [Field("csrf", token)] + [Field("what_happening", "threats")] * 20_000
        status, _page = await post_form(session, running, multipart(fields))
        assert status == 400
        login = await csrf(session, running, "/login")
        status, _page = await post_form(
            session, running, (f"csrf={login}&" + "code=1&" * 20_000).encode(),
            "application/x-www-form-urlencoded", "/login")
        assert status == 413
        status, _page = await post_form(
            session, running, (f"csrf={login}&" + "a&" * 500).encode(),
            "application/x-www-form-urlencoded", "/login")
        assert status == 400
    async with browser() as session, session.get(
            running.server.public + "/", params={f"p{i}": "1" for i in range(5_000)}) as resp:
        assert resp.status in (200, 400, 414)
    assert running.store() == before


@pytest.mark.asyncio
async def test_duplicated_fields(running: Running) -> None:
    async with browser() as session:
        token = await csrf(session, running)
        cases = {
            "csrf twice": [Field("csrf", token), Field("csrf", token),
                           Field("recipient", RECIPIENT)],
            "recipient twice": [Field("csrf", token), Field("recipient", RECIPIENT),
                                Field("recipient", RECIPIENT)],
            "language twice": [Field("csrf", token), Field("recipient", RECIPIENT),
                               Field("what_happening", "threats"), Field("language", "en"),
                               Field("language", "es")],
            "message twice": [Field("csrf", token), Field("recipient", RECIPIENT),
                              Field("what_happening", "threats"), Field("message", "one"),
                              Field("message", "two")],
        }
        for name, fields in cases.items():
            before = running.store()
            status, _page = await post_form(session, running, multipart(fields))
            assert status in (200, 400, 403), (name, status)
            added = len(running.store()) - len(before)
            assert added == (1 if status == 200 else 0), name
            if status == 200:
                token = await csrf(session, running)
        login = await csrf(session, running, "/login")
        status, _page = await post_form(
            session, running, f"csrf={login}&code=1&code=2".encode(),
            "application/x-www-form-urlencoded", "/login")
        assert status == 400


@pytest.mark.asyncio
async def test_non_utf8_text(running: Running) -> None:
    before = running.store()
    async with browser() as session:
        token = await csrf(session, running)
        for fields in (
                [Field("csrf", token), Field("recipient", RECIPIENT),
                 Field("message", b"caf\xe9 \xff\xfe")],
                [Field("csrf", token), Field("recipient", b"city-police\xff")],
                [Field("csrf", b"\xff" * 64)]):
            status, _page = await post_form(session, running, multipart(fields))
            assert status in (400, 403)
        body = multipart([Field("csrf", token), Field("recipient", RECIPIENT)]).replace(
            b'name="recipient"', b'name="recipient"; filename="\xe9t\xe9.txt"')
        status, _page = await post_form(session, running, body)
        assert status in (400, 403)
        login = await csrf(session, running, "/login")
        for code in (b"%ff%fe", b"\xff\xfe", b"%C0%AE"):
            status, _page = await post_form(session, running, b"csrf=" + login.encode() +
                                            b"&code=" + code, "application/x-www-form-urlencoded",
                                            "/login")
            assert status == 400
    for target in (b"/?lang=%ff", b"/report?lang=\xff", b"/%ff%fe", b"/login?x=%80"):
        response = await raw(running.public_port, b"GET " + target +
                             b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(response) < 500
    response = await raw(running.public_port, b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Language: "
                         b"\xff\xfe\r\nCookie: srdb_session=\xe9\r\nConnection: close\r\n\r\n")
    assert status_of(response) < 500
    assert running.store() == before


# --- bombs -----------------------------------------------------------------------------------

def zip_bomb() -> bytes:
    """20 MiB of zeros per member, ten members, deflated: about 200 KiB of zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        zeros = bytes(20 * 1024 * 1024)
        for i in range(10):
            archive.writestr(f"evidence-{i}.txt", zeros)
    return out.getvalue()


@pytest.mark.asyncio
async def test_a_zip_bomb_is_stored_as_ciphertext_never_unpacked(running: Running) -> None:
    bomb = zip_bomb()
    before = running.store()
    async with browser() as session:
        token = await csrf(session, running)
        body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS,
                                      files=[File("attachments", "evidence.zip", bomb,
                                                  "application/zip")]))
        status, page = await post_form(session, running, body)
    assert status == 200, page
    code_from_receipt(page)
    [new] = sorted(set(running.store()) - set(before))
    assert new.startswith("store/envelopes/")
    # Only the envelope: its size follows the zip, not what the zip would unpack to.
    assert len(bomb) < (running.data / new).stat().st_size < 1.2 * len(bomb) + 4096
    assert not list((running.data / "tmp").iterdir())
    opened = open_envelope(running.data / new, running.agency)
    assert opened.files == [bomb]


@pytest.mark.asyncio
async def test_a_compressed_request_body_is_bounded(running: Running) -> None:
    """``Content-Encoding: gzip`` on the request: aiohttp inflates it as it streams; the report
    limit applies to what comes out, so the bomb is refused early and nothing is kept."""
    before = running.store()
    async with browser() as session:
        token = await csrf(session, running)
        huge = bytes(64 * 1024 * 1024)  # 8x the report limit, about 64 KiB compressed
        body = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS,
                                      files=[File("attachments", "zeros.bin", huge)]))
        squeezed = gzip.compress(body, compresslevel=9)
        del huge, body
        started = time.monotonic()
        status, _page = await post_form(session, running, squeezed,
                                        headers={"Content-Encoding": "gzip"})
        assert status in (400, 413, 415)
        assert time.monotonic() - started < 20
    assert running.store() == before
    assert not list((running.data / "tmp").iterdir())
    await still_serving(running)


# --- CSRF ------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_csrf_is_required_everywhere(running: Running) -> None:
    before = running.store()
    async with browser() as session:
        token = await csrf(session, running)
        no_token = multipart(report_parts(token, recipient=RECIPIENT, answers=ANSWERS)[1:])
        assert (await post_form(session, running, no_token))[0] == 403
        wrong = multipart(report_parts("0" * 64, recipient=RECIPIENT, answers=ANSWERS))
        assert (await post_form(session, running, wrong))[0] == 403
        not_ascii = multipart(report_parts("é" * 32, recipient=RECIPIENT, answers=ANSWERS))
        assert (await post_form(session, running, not_ascii))[0] == 403
        for path in ("/login", "/logout", "/conversation/delete-reply"):
            for body in (b"code=1", b"csrf=" + b"0" * 64, "csrf=é".encode()):
                status, _page = await post_form(session, running, body,
                                                 "application/x-www-form-urlencoded", path)
                assert status == 403, (path, body)
        for header in (None, "0" * 64, "\u00e9" * 64):
            async with session.post(
                    f"{running.server.public}/submit/envelope?recipient={RECIPIENT}",
                    data=b"SRDB-ENV", headers={"Content-Type": "application/octet-stream",
                                               **({"X-CSRF-Token": header} if header else {})}
                    ) as resp:
                assert resp.status == 403
    async with browser() as other:  # a token from one browser is worthless in another
        status, _page = await post_form(other, running, multipart(
            report_parts(token, recipient=RECIPIENT, answers=ANSWERS)))
        assert status == 403
    assert running.store() == before


@pytest.mark.asyncio
async def test_a_malformed_disposition_is_not_logged(running: Running) -> None:
    """The header is request data (here a file name); the log must not quote it."""
    async with browser() as session:
        token = await csrf(session, running)
        body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"; "
                f"filename*=UTF-8''CANARY-DISPOSITION-maria-payslip.pdf;;\r\n\r\n{token}\r\n"
                f"--{BOUNDARY}--\r\n").encode()
        status, _page = await post_form(session, running, body)
        assert status in (400, 403)
        body = (f"--{BOUNDARY}\r\nContent-Disposition: CANARY-DISPOSITION::\r\n\r\nx\r\n"
                f"--{BOUNDARY}--\r\n").encode()
        status, _page = await post_form(session, running, body)
        assert status in (400, 403)
    await still_serving(running)
    assert "CANARY-" + "DISPOSITION" not in running.log.read_text()


# --- the staff API ---------------------------------------------------------------------------

async def staff_get(running: Running, path: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(
            running.staff_url + path, headers=headers) as resp:
        return resp.status


@pytest.mark.asyncio
async def test_replayed_and_expired_signatures(running: Running) -> None:
    path = "/staff/v1/envelopes"
    now = int(time.time())
    signed = sign_request(running.staff, "GET", path, EMPTY_BODY_SHA256, now=now).as_dict()
    assert await staff_get(running, path, signed) == 200
    assert await staff_get(running, path, signed) == 401  # replayed
    for when in (now - 301, now + 301, now - 86_400, 0):
        old = sign_request(running.staff, "GET", path, EMPTY_BODY_SHA256, now=when).as_dict()
        assert await staff_get(running, path, old) == 401
    other_path = sign_request(running.staff, "GET", "/staff/v1/sources?waiting=1",
                              EMPTY_BODY_SHA256, now=now).as_dict()
    assert await staff_get(running, path, other_path) == 401
    stranger = sign_request(StaffSecretKey.generate(), "GET", path, EMPTY_BODY_SHA256,
                            now=now).as_dict()
    assert await staff_get(running, path, stranger) == 401


@pytest.mark.asyncio
@pytest.mark.parametrize("method,path", [
    ("GET", "/staff/v1/envelopes"), ("GET", "/staff/v1/sources?waiting=1"),
    ("POST", f"/staff/v1/envelopes/{'ab' * 16}/ack"), ("GET", "/staff/v1/"),
    ("GET", "/staff"), ("POST", f"/staff/v1/sources/{'ab' * 16}/replies")])
async def test_staff_endpoints_are_not_on_the_public_port(running: Running, method: str,
                                                          path: str) -> None:
    signed = sign_request(running.staff, method, path, EMPTY_BODY_SHA256,
                          now=int(time.time())).as_dict()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for headers in ({}, signed):
            async with session.request(method, running.server.public + path,
                                       headers=headers, allow_redirects=False) as resp:
                assert resp.status in (404, 405), (path, resp.status)
                assert "application/json" not in resp.headers.get("Content-Type", "")


# --- methods ---------------------------------------------------------------------------------

# Methods aiohttp's parser knows reach the app, which answers 405; other tokens ("FOO", "get")
# are refused by the parser itself with 400.
METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "FOO", "get"]


@pytest.mark.asyncio
@pytest.mark.parametrize("method", METHODS)
async def test_other_methods_are_405(running: Running, method: str) -> None:
    expected = 405 if method.isupper() and method != "FOO" else 400
    for port, path in ((running.public_port, "/report"), (running.public_port, "/"),
                       (running.public_port, "/nowhere"),
                       (int(running.staff_url.rsplit(":", 1)[1]), "/staff/v1/envelopes")):
        response = await raw(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0"
                                   f"\r\nConnection: close\r\n\r\n".encode())
        assert status_of(response) == expected, (method, path, response[:200])


@pytest.mark.asyncio
async def test_connect_and_head_on_the_staff_api(running: Running) -> None:
    # CONNECT asks for a tunnel: the connection stays open after the answer, so read only it.
    reader, writer = await asyncio.open_connection("127.0.0.1", running.public_port)
    try:
        writer.write(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        response = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    assert 400 <= status_of(response) < 500
    staff_port = int(running.staff_url.rsplit(":", 1)[1])
    response = await raw(staff_port, b"HEAD /staff/v1/envelopes HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert status_of(response) == 405


PARSER_ERRORS = [
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /CANARY" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-CANARY: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) +
    b"\r\n",
    b"GET /CANARY HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: CANARY\r\n\r\n",
    b"CANARY\x00\x01\x02\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", PARSER_ERRORS, ids=[
    "unknown method", "long request line", "long header", "500 headers", "bad version",
    "bad content-length", "not http"])
@pytest.mark.asyncio
async def test_parser_errors_look_like_the_site(running: Running, request_bytes: bytes) -> None:
    for port in (running.public_port, int(running.staff_url.rsplit(":", 1)[1])):
        response = await raw(port, request_bytes)
        assert status_of(response) == 400
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"aiohttp" not in response and b"Python/" not in response
        assert b"CANARY" not in response  # nothing of the request is quoted back
        assert b"\r\nServer: dropbox\r\n" in head
        assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head
        assert b"\r\nCache-Control: no-store\r\n" in head
        assert body == b"The request could not be read.\n"


@pytest.mark.asyncio
async def test_no_response_names_the_software(running: Running) -> None:
    # Pages, static files, redirects, refusals and errors of both sites.
    async with browser() as session:
        for url in (running.server.public + "/", running.server.public + "/report",
                    running.server.public + "/static/style.css",
                    running.server.public + "/nowhere", running.server.public + "/conversation",
                    running.staff_url + "/staff/v1/envelopes"):
            async with session.get(url, allow_redirects=False) as resp:
                assert resp.headers.getall("Server") == ["dropbox"], url


def test_nothing_listens_beyond_loopback(running: Running) -> None:
    for url in (running.server.public, running.staff_url):
        assert url.startswith("http://127.0.0.1:")
    addresses = {str(a[4][0]) for a in socket.getaddrinfo(socket.gethostname(), None)} - {
        "127.0.0.1", "::1"}
    for address in addresses:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.settimeout(1)
            assert probe.connect_ex((address, running.public_port)) != 0


@pytest.mark.asyncio
async def test_no_address_or_browser_detail_is_logged_or_stored(running: Running) -> None:
    # Whatever a browser or a proxy sends about the person never reaches the log (there is no
    # access log) or the data folder: address, user agent, referrer, forwarded-for, language.
    canaries = {"User-Agent": "CANARY-AGENT/1.0", "Referer": "http://canary-referer.example/",
                "X-Forwarded-For": "203.0.113.77", "Forwarded": "for=198.51.100.9",
                "Accept-Language": "x-canary-lang"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT,
                                     headers=canaries) as session:
        token = await csrf(session, running)
        status, page = await post_form(session, running, multipart(report_parts(
            token, recipient=RECIPIENT, answers=ANSWERS,
            files=[File("attachments", "a.txt", b"hello")])))
        assert status == 200
        code = code_from_receipt(page)
        login = await csrf(session, running, "/login")
        for attempt in (code, "1234"):
            async with session.post(running.server.public + "/login",
                                    data={"csrf": login, "code": attempt},
                                    allow_redirects=False) as resp:
                assert resp.status in (303, 400)
        async with session.get(running.server.public + "/nowhere") as resp:
            assert resp.status == 404
    await still_serving(running)
    needles = [v.encode() for v in canaries.values()] + [b"127.0.0.1", b"203.0.113", b"x-canary"]
    log = running.log.read_bytes()
    # Everything the server wrote (its configuration mentions 127.0.0.1 in a comment).
    files = [p for p in running.data.rglob("*") if p.is_file() and p.name != "dropbox.toml"]
    assert any(p.name == "dropbox.sqlite" for p in files)
    for needle in needles:
        assert needle not in log, needle
        for path in files:
            assert needle not in path.read_bytes(), (needle, path)
