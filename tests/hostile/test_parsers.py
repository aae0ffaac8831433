"""Arbitrary input to the return-code parser and the staff-signature verifier gives a result or
the project's own error (``InvalidCode``, ``BadSignature``), never anything else; and the two
HTTP paths that take envelopes from outside (the browser's ``/submit/envelope`` and the staff
reply upload) answer mutated envelopes with a 4xx, or store them whole.

The envelope parser itself is fuzzed in tests/unit/test_envelope.py (and by the atheris target
tests/hostile/fuzz_envelope.py); here it is reached through the server's streaming paths.
"""

from __future__ import annotations

import asyncio
import io
import time

import pytest
import pytest_asyncio
from hypothesis import event, given
from hypothesis import strategies as st

from dropbox_envelope import Encryptor
from dropbox_envelope.codes import CODE_DIGITS, Code, generate_code, parse_code
from dropbox_envelope.errors import InvalidCode
from dropbox_envelope.keys import StaffSecretKey
from dropbox_envelope.staffauth import (
    EMPTY_BODY_SHA256,
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    BadSignature,
    NonceCache,
    sign_request,
    verify_request,
)
from tests.hostile.conftest import HOSTILE
from tests.server.conftest import LABOUR, AgencyKeys, Client, backend_of
from tests.server.datafolder import snapshot, stored_bytes
from tests.server.forms import get_csrf
from tests.staff.conftest import Api, create_source

TIMEOUT = 15.0

# --- return codes ----------------------------------------------------------------------------

CODE_LIKE = st.text(alphabet=st.sampled_from("0123456789 -_.\u0660\uff10\u00b2\t\n"),
                    max_size=80)


@st.composite
def edited_codes(draw: st.DrawFn) -> str:
    """A real code as a person might type or paste it, sometimes with a slip."""
    text = list(generate_code(lambda n: draw(st.binary(min_size=n, max_size=n))).display())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text.insert(at, draw(st.characters()))
        elif at < len(text):
            del text[at]
    return "".join(text)


@given(text=st.one_of(st.text(max_size=200), CODE_LIKE, edited_codes()))
def test_parse_code_only_raises_invalid_code(text: str) -> None:
    try:
        code = parse_code(text)
    except InvalidCode:
        event("refused")
        return
    event("accepted")
    assert isinstance(code, Code)
    assert len(code.digits) == CODE_DIGITS and code.digits.isascii() and code.digits.isdigit()
    assert parse_code(code.display()) == code


@given(seed=st.binary(min_size=64, max_size=64),
       separators=st.lists(st.sampled_from(["", " ", "-", ".", "_", "  "]), min_size=25,
                           max_size=25))
def test_a_code_typed_with_any_separators_parses_back(seed: bytes,
                                                      separators: list[str]) -> None:
    stream = io.BytesIO(seed * 8)
    code = generate_code(lambda n: stream.read(n))
    digits = code.display().replace(" ", "")
    typed = "".join(d + s for d, s in zip(digits, separators, strict=True))
    assert parse_code(typed) == code


@given(position=st.integers(0, CODE_DIGITS - 1), replacement=st.sampled_from("0123456789"))
def test_one_wrong_digit_is_a_typing_mistake(position: int, replacement: str) -> None:
    digits = list(generate_code().display().replace(" ", ""))
    if digits[position] == replacement:
        return
    digits[position] = replacement
    with pytest.raises(InvalidCode):  # the Damm digit catches every single-digit error
        parse_code("".join(digits))


# --- staff signatures ------------------------------------------------------------------------

STAFF = StaffSecretKey.generate()
AUTHORISED = {STAFF.public_key.encode(): "alice"}
NOW = 1_800_000_000
HEADERS = [HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE]


def _verify(headers: dict[str, str], method: str = "GET", path: str = "/staff/v1/envelopes",
            body: str = EMPTY_BODY_SHA256) -> str:
    return verify_request(headers, method, path, body, authorised=AUTHORISED,
                          nonces=NonceCache(), now=NOW, not_before=NOW - 1000)


@given(headers=st.dictionaries(st.one_of(st.sampled_from(HEADERS), st.text(max_size=20)),
                               st.text(max_size=200), max_size=6),
       method=st.text(max_size=10), path=st.text(max_size=100),
       body=st.one_of(st.just(EMPTY_BODY_SHA256), st.text(max_size=70)))
def test_random_staff_headers_only_raise_bad_signature(headers: dict[str, str], method: str,
                                                       path: str, body: str) -> None:
    with pytest.raises(BadSignature):
        _verify(headers, method, path, body)


@given(field=st.sampled_from(HEADERS), value=st.one_of(
    st.text(max_size=120), st.integers().map(str), st.sampled_from(
        ["", " 1800000000", "1800000000.0", "1e9", "\uff11" * 10, "9" * 5000, "=" * 88,
         "A" * 88, "srdb1-ed25519-", "-1"])))
def test_a_signed_request_with_one_header_changed_is_refused(field: str, value: str) -> None:
    headers = sign_request(STAFF, "GET", "/staff/v1/envelopes", EMPTY_BODY_SHA256,
                           now=NOW).as_dict()
    if headers[field] == value:
        return
    headers[field] = value
    try:
        same_time = field == HEADER_TIMESTAMP and int(value) == NOW
    except ValueError:
        same_time = False
    if same_time:
        # Another spelling of the signed number ("01800000000", "+1800000000", " 18...",
        # "1_800_000_000"): the signature covers the value, so this is the same request.
        assert _verify(headers) == "alice"
        return
    with pytest.raises(BadSignature):
        _verify(headers)


@given(method=st.sampled_from(["GET", "POST", "get"]),
       path=st.sampled_from(["/staff/v1/envelopes", "/staff/v1/envelopes?", "/staff/v1/x",
                             "/staff/v1/envelopes/../sources", "/staff/v1/envelopes\n"]),
       skew=st.integers(-400, 400))
def test_a_signature_covers_method_path_and_time(method: str, path: str, skew: int) -> None:
    headers = sign_request(STAFF, "GET", "/staff/v1/envelopes", EMPTY_BODY_SHA256,
                           now=NOW + skew).as_dict()
    # Methods are signed in upper case (aiohttp refuses lower-case ones before any handler).
    if method.upper() == "GET" and path == "/staff/v1/envelopes" and abs(skew) <= 300:
        assert _verify(headers, method, path) == "alice"
    else:
        with pytest.raises(BadSignature):
            _verify(headers, method, path)


# --- envelopes from outside, through the server ----------------------------------------------

def _envelope(keys: AgencyKeys, size: int) -> bytes:
    encryptor = Encryptor([keys.labour.public_key, keys.labour_backup.public_key])
    out = encryptor.add_attachment("a.bin", "application/octet-stream", b"\x07" * size)
    return b"".join([*out, *encryptor.finish(kind="report", message="m")])


@st.composite
def mutated_envelope(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "length"]))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:at + draw(st.integers(1, 300))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=300))
        elif op == "truncate":
            del data[at:]
        elif op == "length" and at + 4 <= len(data):  # a chunk or stanza length field
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                                    b"\x00\x01\x00\x11"]))
    return bytes(data)


ENVELOPE_SIZES = [0, 100, 70_000]


@pytest.mark.asyncio
@HOSTILE
@given(index=st.sampled_from(range(len(ENVELOPE_SIZES))), data=st.data())
async def test_browser_envelopes_mutated(client: Client, agency_keys: AgencyKeys, index: int,
                                         data: st.DataObject) -> None:
    body = data.draw(mutated_envelope(_envelope(agency_keys, ENVELOPE_SIZES[index])))
    backend = backend_of(client)
    before = await snapshot(backend)
    resp = await asyncio.wait_for(client.post(
        f"/submit/envelope?recipient={LABOUR}", data=body,
        headers={"Content-Type": "application/octet-stream",
                 "X-CSRF-Token": await get_csrf(client)}), TIMEOUT)
    doc = await asyncio.wait_for(resp.json(), TIMEOUT)
    event(f"HTTP {resp.status}")
    assert resp.status in (200, 400, 413), doc
    after = await snapshot(backend)
    assert not list(backend.storage.tmp_dir.iterdir())
    if resp.status != 200:
        assert after == before
        return
    # The server checks structure, not content (it has no key): what it keeps is exactly
    # what was sent, all of it.
    [new] = after.files - before.files
    assert stored_bytes(backend.config.data_dir / new) == body


@pytest_asyncio.fixture
async def reply_to(api: Api) -> tuple[str, bytes]:
    """A source, and a valid reply envelope sealed to its reply key."""
    source_id, reply_key = await create_source(api.storage)
    encryptor = Encryptor([reply_key.public_key])
    return source_id, b"".join(encryptor.finish(kind="reply", message="Are you safe?"))


@pytest.mark.asyncio
@HOSTILE
@given(data=st.data())
async def test_staff_replies_mutated(api: Api, reply_to: tuple[str, bytes],
                                     data: st.DataObject) -> None:
    source, original = reply_to
    body = data.draw(mutated_envelope(original))
    path = f"/staff/v1/sources/{source}/replies"
    before = {p.name for p in api.world.replies_dir.iterdir()}
    resp = await asyncio.wait_for(api.request("POST", path, body, now=int(time.time())),
                                  TIMEOUT)
    doc = await asyncio.wait_for(resp.json(), TIMEOUT)
    event(f"HTTP {resp.status}")
    assert resp.status in (201, 400, 413), doc
    after = {p.name for p in api.world.replies_dir.iterdir()}
    if resp.status == 201:
        [new] = after - before
        assert stored_bytes(api.world.replies_dir / new) == body
    else:
        assert after == before
