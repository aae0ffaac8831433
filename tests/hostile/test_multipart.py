"""Random and mutated multipart bodies against the real public app: ``/report`` and
``/conversation/send`` answer every one with a page (a 4xx, or success), never a 500 or a hang,
and either store one complete envelope (that decrypts) or leave the store exactly as it was.

The bodies are built from parts with hostile names, file names, headers and contents, and from
valid reports mutated byte by byte (flips, cuts, insertions, duplications, lost CRLFs, foreign
boundaries). A valid CSRF token is placed first in most of them, so the parser behind the CSRF
check is reached too. ``SRDB_HOSTILE_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import pytest_asyncio
from hypothesis import event, given
from hypothesis import strategies as st

from tests.hostile.conftest import HOSTILE
from tests.server.conftest import LABOUR, AgencyKeys, Client, backend_of
from tests.server.datafolder import Snapshot, open_envelope, snapshot
from tests.server.forms import (
    BASIC_ANSWERS,
    BOUNDARY,
    MULTIPART,
    File,
    code_from_receipt,
    get_csrf,
    multipart,
    report_parts,
)

pytestmark = pytest.mark.asyncio

TIMEOUT = 15.0  # seconds for a whole request; more is a hang
CSRF = b"@@CSRF-TOKEN-PLACEHOLDER@@"  # replaced by the current token when sent
_B = BOUNDARY.encode()

# --- strategies ------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["csrf", "recipient", "message", "language", "attachments",
                     "what_happening", "", "x" * 150, 'a"b', "a\r\nb"]),
    st.text(max_size=20))
FILENAMES = st.one_of(
    st.sampled_from(["a.txt", "../../etc/passwd", "..", ".", "", "a\x00b.txt",
                     "\u202egpj.exe", "C:\\boot.ini", "a" * 300, "photo.jpg", "CON",
                     "%2e%2e%2fpasswd", "é" * 10]),
    st.text(max_size=40))
HEADER_LINES = st.sampled_from([
    b"Content-Type: text/plain", b"Content-Type: image/jpeg", b"Content-Type: ",
    b"Content-Type: multipart/mixed; boundary=inner", b"Content-Transfer-Encoding: base64",
    b"Content-Encoding: gzip", b"Content-Length: 5", b"Content-Length: -1",
    b"X-Anything: \xff\xfe", b"Content-Disposition: attachment", b": empty name",
    b"no colon at all", b"Content-Type: text/plain; charset=\"utf-16\""])
MUTATIONS = st.sampled_from(["flip", "delete", "insert", "duplicate", "truncate", "crlf",
                             "boundary"])


def _text(value: str) -> bytes:
    # Lone surrogates become invalid UTF-8 on purpose.
    return value.encode("utf-8", "surrogatepass")


@st.composite
def raw_part(draw: st.DrawFn) -> bytes:
    name = draw(NAMES)
    disposition = b'Content-Disposition: form-data; name="' + _text(name) + b'"'
    if draw(st.booleans()):
        disposition += b'; filename="' + _text(draw(FILENAMES)) + b'"'
    if draw(st.integers(0, 5)) == 0:
        disposition += b"; filename*=UTF-8''" + _text(draw(FILENAMES))
    headers = [disposition, *draw(st.lists(HEADER_LINES, max_size=2))]
    if draw(st.integers(0, 4)) == 0:
        headers = draw(st.permutations(headers))
    body = draw(st.one_of(st.binary(max_size=3000), st.text(max_size=300).map(_text),
                          st.sampled_from([b"", b"\r\n", b"--" + _B, b"\x00" * 100])))
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


@st.composite
def part_bodies(draw: st.DrawFn) -> bytes:
    """Parts with hostile fields, usually after a valid CSRF part."""
    parts = draw(st.lists(raw_part(), max_size=8))
    if draw(st.integers(0, 4)) > 0:
        parts.insert(0, b'Content-Disposition: form-data; name="csrf"\r\n\r\n' + CSRF)
        if draw(st.booleans()):
            parts.insert(1, b'Content-Disposition: form-data; name="recipient"\r\n\r\n' +
                         LABOUR.encode())
    body = b"".join(b"--" + _B + b"\r\n" + p + b"\r\n" for p in parts)
    if draw(st.integers(0, 5)) > 0:
        body += b"--" + _B + b"--\r\n"
    return body


def valid_report(files: int, message: str) -> bytes:
    attachments = [File("attachments", f"f{i}.bin", bytes([i]) * (1000 * i), "image/png")
                   for i in range(files)]
    return multipart(report_parts(CSRF.decode(), recipient=LABOUR, answers=BASIC_ANSWERS,
                                  message=message, files=attachments))


def valid_message(files: int, message: str) -> bytes:
    attachments = [File("attachments", f"f{i}.bin", bytes([i]) * (1000 * i), "image/png")
                   for i in range(files)]
    return multipart(report_parts(CSRF.decode(), recipient=None, answers={}, message=message,
                                  files=attachments))


REPORTS = [valid_report(0, "hello"), valid_report(1, "a" * 500), valid_report(2, "héllo\r\n")]
MESSAGES = [valid_message(0, "hello"), valid_message(1, "a" * 500), valid_message(2, "")]


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(MUTATIONS)
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 200))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=100))
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 400))]
        elif op == "truncate":
            del data[at:]
        elif op == "crlf":
            index = data.find(b"\r\n", at)
            if index >= 0:
                del data[index:index + draw(st.integers(1, 2))]
        elif op == "boundary":
            data[at:at] = b"\r\n--" + _B + draw(st.sampled_from([b"", b"--", b"\r\n"]))
    return bytes(data)


CONTENT_TYPES = st.one_of(
    st.just(MULTIPART),
    st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=",
                     f'multipart/form-data; boundary="{BOUNDARY}"',
                     "multipart/form-data; boundary=" + "b" * 200,
                     "multipart/form-data; boundary=other", "multipart/mixed; boundary=x",
                     f"multipart/form-data; boundary={BOUNDARY}; charset=\u00ff"]))
REPORT_BODIES = st.one_of(part_bodies(), mutated(REPORTS), st.binary(max_size=2000))
SEND_BODIES = st.one_of(part_bodies(), mutated(MESSAGES), st.binary(max_size=2000))


# --- the check -------------------------------------------------------------------------------

@dataclass
class Target:
    client: Client
    path: str
    success: int
    csrf: str
    keys: AgencyKeys


async def send(target: Target, body: bytes, content_type: str) -> tuple[int, bytes]:
    client = target.client
    resp = await asyncio.wait_for(client.post(
        target.path, data=body.replace(CSRF, target.csrf.encode()),
        headers={"Content-Type": content_type}, allow_redirects=False), TIMEOUT)
    page = await asyncio.wait_for(resp.read(), TIMEOUT)
    event(f"HTTP {resp.status}")
    return resp.status, page


async def check_outcome(target: Target, before: Snapshot, status: int, page: bytes) -> None:
    backend = backend_of(target.client)
    after = await snapshot(backend)
    assert status < 500 or status == 503, f"HTTP {status}: {page[:300]!r}"
    assert not list(backend.storage.tmp_dir.iterdir()), "a temporary file was left behind"
    assert backend.uploads_in_progress == 0
    if status != target.success:
        assert after == before, "a refused submission changed the store"
        return
    # Accepted: exactly one more envelope, complete, that the agency can open.
    assert after.rows["envelopes"] == before.rows["envelopes"] + 1
    assert after.rows["replies"] == before.rows["replies"]
    [new] = after.files - before.files
    data_dir = backend.config.data_dir
    keys = target.keys
    opened = open_envelope(data_dir / new, keys.labour, keys.police)
    assert opened.manifest.kind == "report"
    if target.path == "/report":
        code_from_receipt(page.decode())
        target.csrf = await get_csrf(target.client)  # the receipt starts a new form session


@pytest_asyncio.fixture
async def report_target(client: Client, agency_keys: AgencyKeys) -> Target:
    return Target(client, "/report", 200, await get_csrf(client), agency_keys)


@pytest_asyncio.fixture
async def send_target(client: Client, agency_keys: AgencyKeys) -> Target:
    """A source logged in with the code of its first report."""
    token = await get_csrf(client)
    resp = await client.post("/report", data=multipart(report_parts(
        token, recipient=LABOUR, answers=BASIC_ANSWERS, message="first")),
        headers={"Content-Type": MULTIPART})
    code = code_from_receipt(await resp.text())
    token = await get_csrf(client, "/login")
    resp = await client.post("/login", data={"csrf": token, "code": code})
    assert resp.url.path == "/conversation"
    return Target(client, "/conversation/send", 303, await get_csrf(client, "/conversation"),
                  agency_keys)


@HOSTILE
@given(body=REPORT_BODIES, content_type=CONTENT_TYPES)
async def test_report_form(report_target: Target, body: bytes, content_type: str) -> None:
    before = await snapshot(backend_of(report_target.client))
    status, page = await send(report_target, body, content_type)
    await check_outcome(report_target, before, status, page)


@HOSTILE
@given(body=SEND_BODIES, content_type=CONTENT_TYPES)
async def test_conversation_send(send_target: Target, body: bytes, content_type: str) -> None:
    before = await snapshot(backend_of(send_target.client))
    status, page = await send(send_target, body, content_type)
    await check_outcome(send_target, before, status, page)
