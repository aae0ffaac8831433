"""Round trips, recipients, mutations and misuse of the envelope (dropbox_envelope.envelope)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropbox_envelope import (
    AttachmentData,
    AttachmentDone,
    Decryptor,
    Encryptor,
    EnvelopeError,
    HeaderCorrupted,
    LimitExceeded,
    Manifest,
    ManifestReady,
    NotForMe,
    PayloadCorrupted,
    PublicKey,
    SecretKey,
    StructureChecker,
    UnsupportedVersion,
    streams,
)
from dropbox_envelope.errors import EnvelopeError as EnvelopeErrorFromErrors
from dropbox_envelope.padding import padme

CHUNK = 65536
FULL_CHUNK = CHUNK + 17
MIB = 1024 * 1024


def key(label: str) -> SecretKey:
    return SecretKey.from_seed(hashlib.sha256(label.encode()).digest())


ALICE, BOB, CAROL, MALLORY = key("alice"), key("bob"), key("carol"), key("mallory")

Attachments = Sequence[tuple[str, bytes]]


def seal(recipients: Sequence[PublicKey], attachments: Attachments = (), *,
         write_size: int | None = None, **finish: Any) -> bytes:
    encryptor = Encryptor(recipients)
    out: list[bytes] = []
    for name, data in attachments:
        encryptor.begin_attachment(name, "application/octet-stream")
        step = write_size or max(len(data), 1)
        for i in range(0, len(data), step):
            out += encryptor.write(data[i:i + step])
        out += encryptor.end_attachment()
    out += encryptor.finish(**finish)
    return b"".join(out)


def open_envelope(envelope: bytes, identities: Sequence[SecretKey], block: int | None = None,
                  ) -> tuple[Manifest, list[bytes], list[AttachmentDone]]:
    decryptor = Decryptor(identities)
    data: dict[int, bytearray] = {}
    done: list[AttachmentDone] = []
    manifests: list[Manifest] = []
    step = block or max(len(envelope), 1)
    for i in range(0, len(envelope), step):
        for event in decryptor.feed(envelope[i:i + step]):
            if isinstance(event, AttachmentData):
                assert event.data
                data.setdefault(event.index, bytearray()).extend(event.data)
            elif isinstance(event, AttachmentDone):
                done.append(event)
            else:
                assert isinstance(event, ManifestReady)
                manifests.append(event.manifest)
    manifest = decryptor.close()
    assert manifests == [manifest]
    return manifest, [bytes(data.get(i, b"")) for i in range(len(manifest.attachments))], done


def frames(envelope: bytes, header_size: int) -> list[int]:
    """The chunk lengths of a well-formed envelope."""
    pos, lengths = header_size + 24, []
    while pos < len(envelope):
        (length,) = struct.unpack_from(">I", envelope, pos)
        lengths.append(length)
        pos += 4 + length
    assert pos == len(envelope)
    return lengths


def content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# --- round trips ------------------------------------------------------------------------------

SIZES = st.one_of(
    st.integers(0, 8),
    st.integers(CHUNK - 5, CHUNK + 5),
    st.integers(2 * CHUNK - 5, 2 * CHUNK + 5),
    st.integers(0, 200_000),
)
BLOCKS = st.one_of(st.sampled_from([1000, 4096, CHUNK, FULL_CHUNK, FULL_CHUNK + 4]),
                   st.integers(97, 300_000))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(SIZES, max_size=3), seed=st.integers(0, 2**32), block=BLOCKS,
       write=st.one_of(st.none(), st.integers(1, 70_000)),
       message=st.text(max_size=50), kind=st.sampled_from(["report", "reply"]))
def test_round_trip(sizes: list[int], seed: int, block: int, write: int | None, message: str,
                    kind: str) -> None:
    attachments = [(f"file-{i}.bin", content(seed + i, size)) for i, size in enumerate(sizes)]
    write_size = None if write is None else max(write, max(sizes, default=0) // 50, 1)
    envelope = seal([ALICE.public_key], attachments, write_size=write_size, message=message,
                    kind=kind)
    manifest, data, done = open_envelope(envelope, [ALICE], block)

    assert data == [d for _n, d in attachments]
    assert manifest.kind == kind and manifest.message == message
    assert [(a.name, a.size, a.sha256) for a in manifest.attachments] == [
        (n, len(d), hashlib.sha256(d).hexdigest()) for n, d in attachments]
    assert [(e.index, e.size, e.sha256) for e in done] == [
        (i, a.size, a.sha256) for i, a in enumerate(manifest.attachments)]

    # Canonical encoding: the plaintext through END is L, padded to padme(L), cut into full
    # chunks while more than 65536 bytes remain, the final chunk carrying the rest.
    records = 0
    for _n, d in attachments:
        step = write_size or max(len(d), 1)
        records += sum(-(-len(d[i:i + step]) // MIB) for i in range(0, len(d), step))
    length = (5 * records + sum(len(d) for _n, d in attachments) + 5 * len(attachments)
              + 5 + len(manifest.to_json()) + 5)
    padded = padme(length)
    header_size = 10 + 83 + 32
    lengths = frames(envelope, header_size)
    assert len(lengths) == max(1, -(-padded // CHUNK))
    assert all(n == FULL_CHUNK for n in lengths[:-1])
    assert lengths[-1] == padded - CHUNK * (len(lengths) - 1) + 17
    assert len(envelope) == header_size + 24 + sum(4 + n for n in lengths)

    checker = StructureChecker()
    checker.feed(envelope)
    assert checker.close().chunks == len(lengths)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, MIB, MIB + 1])
def test_round_trip_edges(size: int) -> None:
    data = content(size, size)
    envelope = seal([ALICE.public_key], [("edge.bin", data)])
    _manifest, got, _done = open_envelope(envelope, [ALICE])
    assert got == [data]


def test_write_of_more_than_a_data_record() -> None:
    """One write over 1 MiB becomes several DATA records; the receiver joins them."""
    data = content(7, 2 * MIB + 3)
    envelope = seal([ALICE.public_key], [("big.bin", data)], write_size=len(data))
    manifest, got, _done = open_envelope(envelope, [ALICE], 1 << 20)
    assert got == [data] and manifest.attachments[0].size == len(data)


def test_empty_writes_are_harmless() -> None:
    encryptor = Encryptor([ALICE.public_key])
    out = []
    encryptor.begin_attachment("a")
    out += encryptor.write(b"")
    out += encryptor.write(b"xy")
    out += encryptor.write(b"")
    out += encryptor.end_attachment()
    out += encryptor.finish()
    _manifest, got, _done = open_envelope(b"".join(out), [ALICE], 5)
    assert got == [b"xy"]


def test_manifest_fields_round_trip() -> None:
    answers = {"q1": "yes", "n": 3, "list": [1, "two", None], "nested": {"ok": True}}
    envelope = seal([ALICE.public_key], [("ä 監視.txt", b"x")], language="fr-CA",
                    message="é\n" * 10, answers=answers, kind="report")
    manifest, _data, _done = open_envelope(envelope, [ALICE], 33)
    assert manifest.language == "fr-CA"
    assert manifest.message == "é\n" * 10
    assert dict(manifest.answers) == answers
    assert manifest.attachments[0].name == "ä 監視.txt"
    assert manifest.attachments[0].media_type == "application/octet-stream"


# --- recipients -------------------------------------------------------------------------------

def test_each_recipient_can_decrypt() -> None:
    data = content(1, 70_000)
    envelope = seal([ALICE.public_key, BOB.public_key, CAROL.public_key], [("f", data)])
    for identities in ([ALICE], [BOB], [CAROL], [MALLORY, CAROL], [CAROL, ALICE]):
        _manifest, got, _done = open_envelope(envelope, identities, 4096)
        assert got == [data]
    checker = StructureChecker()
    checker.feed(envelope)
    assert checker.close().recipients == 3


def test_non_recipient_gets_not_for_me() -> None:
    envelope = seal([ALICE.public_key, BOB.public_key], [("f", b"secret")])
    decryptor = Decryptor([MALLORY, CAROL])
    with pytest.raises(NotForMe):
        decryptor.feed(envelope)


def test_non_recipient_gets_nothing_even_in_pieces() -> None:
    envelope = seal([ALICE.public_key], [("f", b"secret")])
    decryptor = Decryptor([MALLORY])
    with pytest.raises(NotForMe):
        for i in range(len(envelope)):
            assert decryptor.feed(envelope[i:i + 1]) == []


def test_recipient_limits() -> None:
    keys = [key(f"r{i}").public_key for i in range(17)]
    envelope = seal(keys[:16], [("f", b"x")])
    _manifest, got, _done = open_envelope(envelope, [key("r15")])
    assert got == [b"x"]
    with pytest.raises(LimitExceeded):
        Encryptor(keys)
    with pytest.raises(ValueError):
        Encryptor([])
    with pytest.raises(ValueError):
        Encryptor([ALICE.public_key, ALICE.public_key])
    with pytest.raises(ValueError):
        Decryptor([])


# --- mutations --------------------------------------------------------------------------------

SMALL = seal([ALICE.public_key], [("a.txt", b"hello, world")], message="hi")
TWO_CHUNKS = seal([BOB.public_key, ALICE.public_key], [("b.bin", content(2, 70_000))],
                  message="two chunks")
HEADER_SIZES = {SMALL: 10 + 83 + 32, TWO_CHUNKS: 10 + 2 * 83 + 32}


def assert_rejected(envelope: bytes, block: int | None = None,
                    header_size: int | None = None) -> EnvelopeError:
    """Decrypting must fail with an EnvelopeError (anything else propagates and fails the test);
    when the damage is in the header, no event may come out before the failure."""
    decryptor = Decryptor([ALICE])
    step = block or max(len(envelope), 1)
    events = 0
    with pytest.raises(EnvelopeError) as info:
        for i in range(0, len(envelope), step):
            events += len(decryptor.feed(envelope[i:i + step]))
        decryptor.close()
    if header_size is not None:
        assert events == 0
    return info.value


def test_originals_are_accepted() -> None:
    for envelope in (SMALL, TWO_CHUNKS):
        manifest, _data, _done = open_envelope(envelope, [ALICE])
        assert manifest.message in ("hi", "two chunks")


def test_every_single_byte_flip_of_a_small_envelope_is_rejected() -> None:
    header = HEADER_SIZES[SMALL]
    for pos in range(len(SMALL)):
        for mask in (0x01, 0x80, 0xFF):
            mutated = bytearray(SMALL)
            mutated[pos] ^= mask
            error = assert_rejected(bytes(mutated), header_size=header if pos < header else None)
            if pos >= header:
                assert isinstance(error, PayloadCorrupted)


def test_every_truncation_of_a_small_envelope_is_rejected() -> None:
    header = HEADER_SIZES[SMALL]
    for cut in range(len(SMALL)):
        error = assert_rejected(SMALL[:cut])
        assert isinstance(error, HeaderCorrupted if cut < header else PayloadCorrupted)


def test_header_flips_of_a_two_recipient_envelope_are_rejected() -> None:
    header = HEADER_SIZES[TWO_CHUNKS]
    for pos in range(header):
        mutated = bytearray(TWO_CHUNKS)
        mutated[pos] ^= 0x04
        assert_rejected(bytes(mutated), 4096, header_size=header)


ENVELOPES = st.sampled_from([SMALL, TWO_CHUNKS])
MUTATION_SETTINGS = settings(max_examples=300, deadline=None)


@MUTATION_SETTINGS
@given(envelope=ENVELOPES, where=st.floats(0, 1, exclude_max=True),
       mask=st.integers(1, 255), block=st.one_of(st.none(), BLOCKS))
def test_random_byte_flip_is_rejected(envelope: bytes, where: float, mask: int,
                                      block: int | None) -> None:
    pos = int(where * len(envelope))
    mutated = bytearray(envelope)
    mutated[pos] ^= mask
    assert bytes(mutated) != envelope
    header = HEADER_SIZES[envelope]
    assert_rejected(bytes(mutated), block, header_size=header if pos < header else None)


@MUTATION_SETTINGS
@given(envelope=ENVELOPES, where=st.floats(0, 1, exclude_max=True),
       block=st.one_of(st.none(), BLOCKS))
def test_random_truncation_is_rejected(envelope: bytes, where: float, block: int | None) -> None:
    assert_rejected(envelope[:int(where * len(envelope))], block)


@MUTATION_SETTINGS
@given(envelope=ENVELOPES, where=st.floats(0, 1), insert=st.binary(min_size=1, max_size=40),
       block=st.one_of(st.none(), BLOCKS))
def test_random_insertion_is_rejected(envelope: bytes, where: float, insert: bytes,
                                      block: int | None) -> None:
    pos = int(where * len(envelope))
    assert_rejected(envelope[:pos] + insert + envelope[pos:], block)


@MUTATION_SETTINGS
@given(envelope=ENVELOPES, where=st.floats(0, 1, exclude_max=True), size=st.integers(1, 100),
       block=st.one_of(st.none(), BLOCKS))
def test_random_deletion_is_rejected(envelope: bytes, where: float, size: int,
                                     block: int | None) -> None:
    pos = int(where * len(envelope))
    assert_rejected(envelope[:pos] + envelope[pos + size:], block)


@MUTATION_SETTINGS
@given(envelope=ENVELOPES, where=st.floats(0, 1, exclude_max=True),
       junk=st.binary(min_size=1, max_size=64))
def test_random_overwrite_is_rejected(envelope: bytes, where: float, junk: bytes) -> None:
    pos = int(where * len(envelope))
    mutated = envelope[:pos] + junk + envelope[pos + len(junk):]
    if mutated != envelope:
        assert_rejected(mutated)


@MUTATION_SETTINGS
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"SRDB-ENV", b"SRDB-ENV\x01",
                                                             b"SRDB-ENV\x01\x01"]))
def test_garbage_only_raises_envelope_errors(data: bytes, prefix: bytes) -> None:
    """Decryptor and StructureChecker only ever raise EnvelopeError on arbitrary input."""
    assert_rejected(prefix + data)
    checker = StructureChecker()
    try:
        checker.feed(prefix + data)
        checker.close()
    except EnvelopeError:
        pass


def test_envelope_error_is_the_one_base_class() -> None:
    assert EnvelopeError is EnvelopeErrorFromErrors
    for cls in (HeaderCorrupted, PayloadCorrupted, NotForMe, UnsupportedVersion, LimitExceeded):
        assert issubclass(cls, EnvelopeError)


def record(rtype: int, body: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack(">BI", rtype, len(body) if length is None else length) + body


def seal_plaintext(plaintext: bytes) -> bytes:
    """An envelope around exactly ``plaintext`` (plus PADME padding), sealed with the package's
    own header builder and chunk sealer, for plaintexts the Encryptor would never produce."""
    from dropbox_envelope.chunks import ChunkSealer
    from dropbox_envelope.header import build_header, derive_keys

    file_key = bytes(range(32))
    plaintext += bytes(padme(len(plaintext)) - len(plaintext))
    sealer = ChunkSealer(derive_keys(file_key)[0])
    out = [build_header([ALICE.public_key], file_key), sealer.header]
    pieces = [plaintext[i:i + CHUNK] for i in range(0, len(plaintext), CHUNK)]
    for i, piece in enumerate(pieces):
        out += sealer.seal(piece, final=i == len(pieces) - 1)
    return b"".join(out)


def seal_manifest_body(body: bytes) -> bytes:
    return seal_plaintext(record(3, body) + record(0))


def manifest_for(count: int, data: bytes = b"") -> bytes:
    entry = {"name": "f", "type": "", "size": len(data),
             "sha256": hashlib.sha256(data).hexdigest()}
    return json.dumps({"version": 1, "kind": "report", "attachments": [entry] * count}).encode()


def test_seal_plaintext_helper_makes_valid_envelopes() -> None:
    body = Manifest("reply", message="ok").to_json()
    manifest, _data, _done = open_envelope(seal_manifest_body(body), [ALICE])
    assert manifest.kind == "reply" and manifest.message == "ok"


def test_manifest_with_an_unparseable_number_raises_an_envelope_error() -> None:
    """A manifest is attacker-controlled JSON: whatever is in it, the reader must answer with an
    EnvelopeError (or accept it), never leak a ValueError."""
    body = b'{"version":1,"kind":"report","answers":{"n":' + b"1" * 5000 + b"}}"
    envelope = seal_manifest_body(body)
    decryptor = Decryptor([ALICE])
    try:
        decryptor.feed(envelope)
        decryptor.close()
    except EnvelopeError:
        pass


def test_a_thousand_attachments_are_accepted() -> None:
    plaintext = record(2) * 1000 + record(3, manifest_for(1000)) + record(0)
    manifest, data, done = open_envelope(seal_plaintext(plaintext), [ALICE], 4096)
    assert len(manifest.attachments) == 1000 and len(done) == 1000 and set(data) == {b""}


@pytest.mark.parametrize("plaintext", [
    pytest.param(record(2) * 1001 + record(3, manifest_for(1000)) + record(0),
                 id="1001-attachments"),
    pytest.param(record(1, b"\x00" * (MIB + 1)) + record(2) + record(3, manifest_for(1))
                 + record(0), id="data-over-1MiB"),
    pytest.param(record(3, b"{", length=8 * MIB + 1) + b"{}", id="manifest-over-8MiB"),
    pytest.param(record(2, b"x") + record(3, manifest_for(1)) + record(0),
                 id="attachment-end-not-empty"),
    pytest.param(record(3, b"") + record(0), id="manifest-empty"),
    pytest.param(record(3, manifest_for(0)) + record(3, manifest_for(0)) + record(0),
                 id="two-manifests"),
    pytest.param(record(0) + record(3, manifest_for(0)) + record(0), id="end-before-manifest"),
    pytest.param(record(3, b'{"version":1,"kind":"report"') + record(0), id="manifest-cut"),
    pytest.param(record(3, b'{"version":1,"kind":"report","message":"\xff"}') + record(0),
                 id="manifest-not-utf8"),
])
def test_record_grammar_violations(plaintext: bytes) -> None:
    for block in (None, 1000):
        error = assert_rejected(seal_plaintext(plaintext), block)
        assert type(error) is PayloadCorrupted


# --- streams ----------------------------------------------------------------------------------

class MemorySink:
    """An AttachmentSink with plain attribute names (the protocol's ``done`` is a method)."""

    def __init__(self) -> None:
        self.files: dict[int, io.BytesIO] = {}
        self.finished: dict[int, tuple[int, str]] = {}

    def open(self, index: int) -> io.BytesIO:
        assert index not in self.files
        self.files[index] = io.BytesIO()
        return self.files[index]

    def done(self, index: int, size: int, sha256: str) -> None:
        self.finished[index] = (size, sha256)


@pytest.mark.parametrize("block_size", [1000, 65536, streams.BLOCK_SIZE])
def test_streams_round_trip(block_size: int) -> None:
    files = [("one.txt", b"one"), ("empty.bin", b""), ("big.bin", content(3, 200_003))]
    out = io.BytesIO()
    progress: list[int] = []
    written = streams.encrypt(
        out, [ALICE.public_key, BOB.public_key],
        attachments=[streams.AttachmentSource(n, "application/x-test", io.BytesIO(d))
                     for n, d in files],
        kind="report", language="nl", message="via streams", answers={"a": 1},
        block_size=block_size, progress=progress.append)
    envelope = out.getvalue()
    assert written == len(envelope)
    assert sum(progress) == sum(len(d) for _n, d in files)

    sink = MemorySink()
    seen: list[int] = []
    manifest = streams.decrypt(io.BytesIO(envelope), [BOB], sink, block_size=block_size,
                               progress=seen.append)
    assert sum(seen) == len(envelope)
    assert {i: f.getvalue() for i, f in sink.files.items()} == {
        i: d for i, (_n, d) in enumerate(files)}
    assert sink.finished == {i: (len(d), hashlib.sha256(d).hexdigest())
                             for i, (_n, d) in enumerate(files)}
    assert manifest.message == "via streams" and manifest.language == "nl"
    assert dict(manifest.answers) == {"a": 1}
    assert [a.media_type for a in manifest.attachments] == ["application/x-test"] * 3


def test_streams_decrypt_of_damaged_input_raises() -> None:
    out = io.BytesIO()
    streams.encrypt(out, [ALICE.public_key], message="x")
    with pytest.raises(PayloadCorrupted):
        streams.decrypt(io.BytesIO(out.getvalue()[:-1]), [ALICE], MemorySink())


# --- misuse -----------------------------------------------------------------------------------

def test_write_before_begin_attachment() -> None:
    encryptor = Encryptor([ALICE.public_key])
    with pytest.raises(RuntimeError):
        encryptor.write(b"data")


def test_end_attachment_without_begin() -> None:
    with pytest.raises(RuntimeError):
        Encryptor([ALICE.public_key]).end_attachment()


def test_begin_attachment_twice() -> None:
    encryptor = Encryptor([ALICE.public_key])
    encryptor.begin_attachment("a")
    with pytest.raises(RuntimeError):
        encryptor.begin_attachment("b")


def test_finish_with_open_attachment() -> None:
    encryptor = Encryptor([ALICE.public_key])
    encryptor.begin_attachment("a")
    with pytest.raises(RuntimeError):
        list(encryptor.finish())


def test_finish_twice_and_attachments_after_finish() -> None:
    encryptor = Encryptor([ALICE.public_key])
    list(encryptor.finish())
    with pytest.raises(RuntimeError):
        list(encryptor.finish())
    with pytest.raises(RuntimeError):
        encryptor.begin_attachment("late")


@pytest.mark.parametrize("name, media_type", [("", "text/plain"), ("x" * 256, "text/plain"),
                                              ("ok", "t" * 256)])
def test_bad_attachment_names(name: str, media_type: str) -> None:
    with pytest.raises(ValueError):
        Encryptor([ALICE.public_key]).begin_attachment(name, media_type)


def test_finish_refuses_a_manifest_a_reader_would_reject() -> None:
    encryptor = Encryptor([ALICE.public_key])
    with pytest.raises(ValueError, match="language"):
        encryptor.finish(language="x" * 36)  # eagerly, before any iteration
    # The encryptor is still usable after the refusal.
    assert list(encryptor.finish(language="en"))


def test_attachment_names_must_be_encodable() -> None:
    encryptor = Encryptor([ALICE.public_key])
    with pytest.raises(ValueError, match="Unicode"):
        encryptor.begin_attachment("bad\udcffname")


# --- manifest validation ----------------------------------------------------------------------

GOOD_ATTACHMENT = {"name": "a", "type": "text/plain", "size": 1, "sha256": "0" * 64}


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"version": 1, "kind": "report", "language": "en", "message": "m",
                            "answers": {}, "attachments": [dict(GOOD_ATTACHMENT)]}
    for k, v in changes.items():
        if v is _DROP:
            base.pop(k)
        else:
            base[k] = v
    return base


_DROP = object()


def attachment(**changes: Any) -> dict[str, Any]:
    return {**GOOD_ATTACHMENT, **changes}


def test_manifest_good_and_defaults() -> None:
    manifest = Manifest.from_dict(doc())
    assert manifest.kind == "report" and manifest.attachments[0].size == 1
    minimal = Manifest.from_dict({"version": 1, "kind": "reply"})
    assert (minimal.language, minimal.message, dict(minimal.answers), minimal.attachments) == (
        "", "", {}, ())
    extra = Manifest.from_json(json.dumps(doc(future={"x": 1})).encode())
    assert extra.to_dict()["future"] == {"x": 1}
    assert Manifest.from_json(extra.to_json()) == extra


@pytest.mark.parametrize("version", [2, 0, "1", True, None, _DROP, [1]])
def test_manifest_unsupported_version(version: Any) -> None:
    with pytest.raises(UnsupportedVersion):
        Manifest.from_dict(doc(version=version))


@pytest.mark.parametrize("changes", [
    {"kind": "complaint"}, {"kind": None}, {"kind": _DROP},
    {"language": "x" * 36}, {"language": 5},
    {"message": "x" * 1_000_001}, {"message": ["m"]},
    {"answers": []}, {"answers": "yes"},
    {"attachments": {}}, {"attachments": [GOOD_ATTACHMENT] * 1001},
    {"attachments": ["a"]},
    {"attachments": [attachment(name="")]}, {"attachments": [attachment(name="n" * 256)]},
    {"attachments": [attachment(name=None)]},
    {"attachments": [attachment(type=3)]}, {"attachments": [attachment(type="t" * 256)]},
    {"attachments": [attachment(size=-1)]}, {"attachments": [attachment(size=True)]},
    {"attachments": [attachment(size=1.5)]}, {"attachments": [attachment(size="1")]},
    {"attachments": [attachment(sha256="A" * 64)]}, {"attachments": [attachment(sha256="0" * 63)]},
    {"attachments": [attachment(sha256=None)]},
], ids=repr)
def test_manifest_rejects_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(PayloadCorrupted):
        Manifest.from_dict(doc(**changes))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe{}",
                                 b"[" * 100_000 + b"]" * 100_000])
def test_manifest_rejects_non_objects(raw: bytes) -> None:
    with pytest.raises(PayloadCorrupted):
        Manifest.from_json(raw)


def test_manifest_limits_are_inclusive() -> None:
    manifest = Manifest.from_dict(doc(language="x" * 35, attachments=[
        attachment(name="n" * 255, type="t" * 255, size=0)] * 1000))
    assert len(manifest.attachments) == 1000
