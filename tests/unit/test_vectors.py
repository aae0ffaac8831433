"""Every committed test vector (tests/vectors/*.vec) through the reference reader."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropbox_envelope import (
    AttachmentData,
    AttachmentDone,
    Decryptor,
    EnvelopeError,
    HeaderCorrupted,
    LimitExceeded,
    ManifestReady,
    NotForMe,
    PayloadCorrupted,
    SecretKey,
    StructureChecker,
    UnsupportedVersion,
)

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILES = sorted(VECTOR_DIR.glob("*.vec"))

OUTCOMES: dict[str, type[EnvelopeError] | None] = {
    "success": None,
    "no match": NotForMe,
    "header failure": HeaderCorrupted,
    "payload failure": PayloadCorrupted,
    "unsupported version": UnsupportedVersion,
}

# Each case the format's reject rules and the brief call for, by file name.
REQUIRED = {
    "success_empty_attachment": "success",
    "success_no_attachments": "success",
    "success_one_byte_attachment": "success",
    "success_attachment_65536": "success",
    "success_attachment_65537": "success",
    "success_padded_one_full_chunk": "success",
    "success_three_attachments": "success",
    "success_report_answers_language": "success",
    "success_reply": "success",
    "success_two_recipients": "success",
    "success_independent_encoder": "success",
    "success_unknown_stanza_skipped": "success",
    "no_match_wrong_key": "no match",
    "no_match_unknown_stanza_type": "no match",
    "header_unsupported_version": "unsupported version",
    "header_bad_magic": "header failure",
    "header_truncated": "header failure",
    "header_stanza_tampered": "header failure",
    "header_mac_tampered": "header failure",
    "header_mac_missing": "header failure",
    "header_stanza_stripped": "header failure",
    "header_stanzas_swapped": "header failure",
    "header_zero_stanzas": "header failure",
    "header_too_many_stanzas": "header failure",
    "header_stanza_wrong_length": "header failure",
    "payload_chunk_tampered": "payload failure",
    "payload_truncated_mid_chunk": "payload failure",
    "payload_missing_final_chunk": "payload failure",
    "payload_last_chunk_not_final": "payload failure",
    "payload_data_after_final": "payload failure",
    "payload_chunk_over_max": "payload failure",
    "payload_chunk_under_min": "payload failure",
    "payload_short_nonfinal_chunk": "payload failure",
    "payload_chunks_reordered": "payload failure",
    "payload_padding_nonzero": "payload failure",
    "payload_padding_wrong_length": "payload failure",
    "payload_manifest_missing": "payload failure",
    "payload_attachment_sha256_mismatch": "payload failure",
    "payload_unknown_record_type": "payload failure",
    "payload_manifest_unsupported_version": "unsupported version",
}

# Framing-level failures a keyless StructureChecker must catch, with what it raises.
STRUCTURE_REJECTS: dict[str, type[EnvelopeError]] = {
    "header_bad_magic": HeaderCorrupted,
    "header_truncated": HeaderCorrupted,
    "header_truncated_in_mac": HeaderCorrupted,
    "header_zero_stanzas": HeaderCorrupted,
    "header_too_many_stanzas": HeaderCorrupted,
    "header_stanza_wrong_length": HeaderCorrupted,
    "header_stanza_too_long": HeaderCorrupted,
    "header_unsupported_version": UnsupportedVersion,
    "payload_truncated_after_header": PayloadCorrupted,
    "payload_truncated_in_ss_header": PayloadCorrupted,
    "payload_truncated_mid_chunk": PayloadCorrupted,
    "payload_data_after_final": PayloadCorrupted,
    "payload_trailing_byte": PayloadCorrupted,
    "payload_chunk_over_max": PayloadCorrupted,
    "payload_chunk_under_min": PayloadCorrupted,
    "payload_short_nonfinal_chunk": PayloadCorrupted,
}


@dataclass(frozen=True)
class Vec:
    name: str
    expect: str
    identity: SecretKey
    comment: str
    manifest: str | None
    attachment_sha256: tuple[str, ...]
    envelope_sha256: str
    envelope: bytes


def load(path: Path) -> Vec:
    raw = path.read_bytes()
    head, sep, envelope = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the header lines"
    fields: dict[str, list[str]] = {}
    for line in head.decode("ascii").split("\n"):
        key, colon, value = line.partition(": ")
        assert colon, f"{path.name}: malformed line {line!r}"
        fields.setdefault(key, []).append(value)
    for key in ("expect", "identity", "comment", "envelope-sha256"):
        assert len(fields.get(key, [])) == 1, f"{path.name}: needs exactly one {key!r} line"
    return Vec(
        name=path.stem,
        expect=fields["expect"][0],
        identity=SecretKey(bytes.fromhex(fields["identity"][0])),
        comment=fields["comment"][0],
        manifest=fields.get("manifest", [None])[0],
        attachment_sha256=tuple(fields.get("attachment-sha256", [])),
        envelope_sha256=fields["envelope-sha256"][0],
        envelope=envelope,
    )


VECTORS = {path.stem: load(path) for path in VECTOR_FILES}
SUCCESS = sorted(name for name, v in VECTORS.items() if v.expect == "success")


@dataclass
class Result:
    error: EnvelopeError | None
    manifest_json: str | None
    manifest_dict: dict[str, object] | None
    data: dict[int, bytes]
    done: dict[int, tuple[int, str]]
    events_before_error: int


def run(vec: Vec, piece: int | None) -> Result:
    """Feed ``vec`` to a Decryptor at once (``piece`` None) or in pieces of ``piece`` bytes."""
    decryptor = Decryptor([vec.identity])
    data: dict[int, bytearray] = {}
    done: dict[int, tuple[int, str]] = {}
    events = 0
    manifest = None
    envelope = vec.envelope
    pieces = [envelope] if piece is None else [
        envelope[i:i + piece] for i in range(0, len(envelope), piece)]
    try:
        for chunk in pieces:
            for event in decryptor.feed(chunk):
                events += 1
                if isinstance(event, AttachmentData):
                    data.setdefault(event.index, bytearray()).extend(event.data)
                elif isinstance(event, AttachmentDone):
                    done[event.index] = (event.size, event.sha256)
                else:
                    assert isinstance(event, ManifestReady)
        manifest = decryptor.close()
    except EnvelopeError as exc:
        return Result(exc, None, None, {k: bytes(v) for k, v in data.items()}, done, events)
    return Result(None, json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":")),
                  manifest.to_dict(), {k: bytes(v) for k, v in data.items()}, done, events)


def check(vec: Vec, result: Result) -> None:
    expected = OUTCOMES[vec.expect]
    if expected is None:
        assert result.error is None, f"{vec.name}: {result.error!r}"
        assert vec.manifest is not None
        assert result.manifest_dict == json.loads(vec.manifest)
        assert result.manifest_json == vec.manifest
        n = len(vec.attachment_sha256)
        digests = tuple(hashlib.sha256(result.data.get(i, b"")).hexdigest() for i in range(n))
        assert digests == vec.attachment_sha256
        assert set(result.data) <= set(range(n))
        assert sorted(result.done) == list(range(n))
        for i in range(n):
            assert result.done[i] == (len(result.data.get(i, b"")), vec.attachment_sha256[i])
    else:
        assert type(result.error) is expected, (
            f"{vec.name}: expected {expected.__name__}, got {result.error!r}")
        if expected in (HeaderCorrupted, NotForMe) or vec.name.startswith("header_"):
            # Nothing may come out of an envelope whose header did not authenticate.
            assert result.events_before_error == 0


def test_vector_files_exist() -> None:
    assert len(VECTOR_FILES) >= len(REQUIRED)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_case_present(name: str) -> None:
    assert name in VECTORS, f"required vector {name}.vec is missing"
    assert VECTORS[name].expect == REQUIRED[name]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_file_is_well_formed(name: str) -> None:
    vec = VECTORS[name]
    assert vec.expect in OUTCOMES
    assert hashlib.sha256(vec.envelope).hexdigest() == vec.envelope_sha256
    assert vec.comment
    if vec.expect == "success":
        assert vec.manifest is not None
        attachments = json.loads(vec.manifest)["attachments"]
        assert [a["sha256"] for a in attachments] == list(vec.attachment_sha256)
    else:
        assert vec.manifest is None and not vec.attachment_sha256
    family = {"success": "success_", "no match": "no_match_"}.get(vec.expect)
    if family:
        assert name.startswith(family)
    elif vec.expect == "unsupported version":
        assert "unsupported_version" in name
    else:
        assert name.startswith(("header_", "payload_"))


def test_one_identity_for_all() -> None:
    identities = {v.identity.raw for v in VECTORS.values()}
    assert len(identities) == 1


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_whole(name: str) -> None:
    vec = VECTORS[name]
    check(vec, run(vec, None))


@pytest.mark.parametrize("piece", [7, 4096])
@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_in_pieces(name: str, piece: int) -> None:
    vec = VECTORS[name]
    check(vec, run(vec, piece))


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_one_byte_at_a_time(name: str) -> None:
    vec = VECTORS[name]
    check(vec, run(vec, 1))


def test_manifest_and_attachments_of_known_vectors() -> None:
    """Spot checks that the vectors hold what their names say."""
    def manifest(name: str) -> dict[str, object]:
        text = VECTORS[name].manifest
        assert text is not None
        doc = json.loads(text)
        assert isinstance(doc, dict)
        return doc

    assert manifest("success_empty_attachment")["attachments"] == [{
        "name": "empty.txt", "type": "text/plain", "size": 0,
        "sha256": hashlib.sha256(b"").hexdigest()}]
    assert manifest("success_empty_attachment")["message"] == ""
    assert manifest("success_no_attachments")["attachments"] == []
    assert [a["size"] for a in manifest("success_three_attachments")["attachments"]] == [
        25, 70001, 0]
    assert any(not a["name"].isascii()
               for a in manifest("success_three_attachments")["attachments"])
    assert manifest("success_reply")["kind"] == "reply"
    assert manifest("success_report_answers_language")["language"]
    assert manifest("success_report_answers_language")["answers"]
    assert manifest("success_independent_encoder")["x-future-member"] == {"kept": [1, 2, 3]}
    assert manifest("success_attachment_name_255_astral")["attachments"][0]["name"] == (
        "\U0001f4c4" * 255)
    for name, size in (("success_one_byte_attachment", 1), ("success_attachment_65536", 65536),
                       ("success_attachment_65537", 65537)):
        assert [a["size"] for a in manifest(name)["attachments"]] == [size]


@pytest.mark.parametrize("name", SUCCESS)
def test_structure_checker_accepts_success(name: str) -> None:
    vec = VECTORS[name]
    for piece in (None, 4096):
        checker = StructureChecker()
        pieces = [vec.envelope] if piece is None else [
            vec.envelope[i:i + piece] for i in range(0, len(vec.envelope), piece)]
        for chunk in pieces:
            checker.feed(chunk)
        info = checker.close()
        assert info.size == len(vec.envelope)
        assert info.recipients == (2 if name in ("success_two_recipients",
                                                 "success_unknown_stanza_skipped") else 1)
        expected_chunks = {"success_padded_one_full_chunk": 1, "success_unpadded_one_full_chunk": 1,
                           "success_attachment_65536": 2, "success_attachment_65537": 2,
                           "success_one_byte_attachment": 1, "success_no_attachments": 1}
        if name in expected_chunks:
            assert info.chunks == expected_chunks[name]


def test_structure_checker_size_limit() -> None:
    vec = VECTORS["success_one_byte_attachment"]
    checker = StructureChecker(max_size=len(vec.envelope))
    checker.feed(vec.envelope)
    checker.close()
    with pytest.raises(LimitExceeded):
        StructureChecker(max_size=len(vec.envelope) - 1).feed(vec.envelope)


@pytest.mark.parametrize("name", sorted(STRUCTURE_REJECTS))
def test_structure_checker_rejects_framing_failures(name: str) -> None:
    vec = VECTORS[name]
    for piece in (None, 1):
        checker = StructureChecker()
        pieces = [vec.envelope] if piece is None else [
            vec.envelope[i:i + 1] for i in range(len(vec.envelope))]
        with pytest.raises(EnvelopeError) as info:
            for chunk in pieces:
                checker.feed(chunk)
            checker.close()
        assert type(info.value) is STRUCTURE_REJECTS[name]


@pytest.mark.parametrize("name", sorted(set(VECTORS) - set(STRUCTURE_REJECTS) - set(SUCCESS)))
def test_structure_checker_never_raises_foreign_errors(name: str) -> None:
    """On the other failure vectors the checker may accept (it has no key) or reject, but only
    with an EnvelopeError."""
    checker = StructureChecker()
    try:
        checker.feed(VECTORS[name].envelope)
        checker.close()
    except EnvelopeError as exc:
        assert isinstance(exc, HeaderCorrupted | PayloadCorrupted | UnsupportedVersion)
