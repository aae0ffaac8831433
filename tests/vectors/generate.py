#!/usr/bin/env python3
"""Generate the envelope format v1 test vectors, ``tests/vectors/*.vec``.

Run from the repository root::

    .venv/bin/python tests/vectors/generate.py            # (re)write every vector
    .venv/bin/python tests/vectors/generate.py NAME ...   # (re)write only these vectors
    .venv/bin/python tests/vectors/generate.py --list     # print the names, write nothing

File format (see README.md): ``key: value`` lines, one blank line, then the raw envelope bytes.

Determinism, and why the committed files are the reference
----------------------------------------------------------
Everything this script chooses is fixed: the recipient identities come from fixed seeds
(``SecretKey.from_seed``), and each vector draws its file key and attachment bytes from
``random.Random(<vector name>).randbytes``, which is injected into ``Encryptor(random=...)``.
But libsodium draws two things itself, with no way to pass in randomness: the ephemeral key of
every ``crypto_box_seal`` stanza and the 24-byte ``crypto_secretstream_xchacha20poly1305``
header. So every run produces *different envelope bytes* (and a different ``envelope-sha256``)
with the same meaning. The committed ``.vec`` files are the normative vectors: regenerate only
to add or change a vector, preferably just that one (``generate.py NAME``), and review the diff.

Independence
------------
The ``success_*`` vectors made from user-level inputs are sealed with the package's
``Encryptor``; every rejected vector (and ``success_independent_encoder`` /
``success_unknown_stanza_skipped``) is built by the small encoder in this file, which follows
docs/PROTOCOL.md with raw PyNaCl bindings and :mod:`hashlib` only, so that it can produce what
``Encryptor`` refuses to. Expected manifests and attachment digests are computed from the
inputs, never by decrypting. After writing, the script decrypts each vector with
``dropbox_envelope.Decryptor`` and reports (without failing) any disagreement.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.bindings as sodium

from dropbox_envelope import (
    AttachmentData,
    Decryptor,
    Encryptor,
    EnvelopeError,
    HeaderCorrupted,
    NotForMe,
    PayloadCorrupted,
    PublicKey,
    SecretKey,
    UnsupportedVersion,
)

OUT_DIR = Path(__file__).resolve().parent

# --- constants of the format (docs/PROTOCOL.md), restated rather than imported --------------

MAGIC = b"SRDB-ENV"
CHUNK = 65536
ABYTES = 17
MAX_DATA_BODY = 1024 * 1024
STANZA_X25519 = 0x01
END, DATA, ATTACHMENT_END, MANIFEST = 0x00, 0x01, 0x02, 0x03
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_PUSH = sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

EXPECTATIONS = ("success", "no match", "header failure", "payload failure", "unsupported version")


def identity(label: str) -> SecretKey:
    seed = hashlib.sha256(b"srdb v1 test vector identity: " + label.encode("ascii")).digest()
    return SecretKey.from_seed(seed)


RECIPIENT = identity("recipient")  # the `identity:` of every vector
OTHER = identity("other recipient")  # the first recipient of the two-recipient envelopes
STRANGER = identity("stranger")  # someone else entirely

Attachments = Sequence[tuple[str, str, bytes]]  # (name, media type, bytes)


def sha256hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blake2b_keyed(key: bytes, message: bytes) -> bytes:
    return hashlib.blake2b(message, key=key, digest_size=32).digest()


def padme(length: int) -> int:
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


# --- an independent encoder -------------------------------------------------------------------

def record(rtype: int, body: bytes = b"") -> bytes:
    return struct.pack(">BI", rtype, len(body)) + body


def manifest_doc(attachments: Attachments = (), *, kind: str = "report", language: str = "",
                 message: str = "", answers: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = dict(extra or {})
    doc.update({
        "version": 1,
        "kind": kind,
        "language": language,
        "message": message,
        "answers": dict(answers or {}),
        "attachments": [{"name": n, "type": t, "size": len(d), "sha256": sha256hex(d)}
                        for n, t, d in attachments],
    })
    return doc


def manifest_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def records_for(attachments: Attachments, manifest: dict[str, Any] | bytes) -> bytes:
    """The plaintext up to and including END (no padding): one DATA record per MiB."""
    parts = []
    for _name, _type, data in attachments:
        parts += [record(DATA, data[i:i + MAX_DATA_BODY])
                  for i in range(0, len(data), MAX_DATA_BODY)]
        parts.append(record(ATTACHMENT_END))
    body = manifest if isinstance(manifest, bytes) else manifest_json(manifest)
    parts += [record(MANIFEST, body), record(END)]
    return b"".join(parts)


def padded(plaintext: bytes) -> bytes:
    return plaintext + bytes(padme(len(plaintext)) - len(plaintext))


def canonical_pieces(plaintext: bytes) -> list[tuple[bytes, int]]:
    """Full TAG_MESSAGE chunks while more than CHUNK bytes remain, then one TAG_FINAL chunk."""
    pieces, pos = [], 0
    while len(plaintext) - pos > CHUNK:
        pieces.append((plaintext[pos:pos + CHUNK], TAG_MESSAGE))
        pos += CHUNK
    pieces.append((plaintext[pos:], TAG_FINAL))
    return pieces


def x25519_stanzas(file_key: bytes, recipients: Sequence[PublicKey]) -> list[tuple[int, bytes]]:
    return [(STANZA_X25519, bytes(sodium.crypto_box_seal(file_key, pk.raw))) for pk in recipients]


def raw_header(file_key: bytes, stanzas: Sequence[tuple[int, bytes]], *, version: int = 1) -> bytes:
    signed = MAGIC + bytes([version, len(stanzas)]) + b"".join(
        struct.pack(">BH", stype, len(body)) + body for stype, body in stanzas)
    mac_key = blake2b_keyed(file_key, b"srdb v1 header mac key")
    return signed + blake2b_keyed(mac_key, signed)


@dataclass
class Parts:
    """An envelope cut at its structural boundaries, so that vectors can rearrange them."""

    header: bytes
    ss_header: bytes
    chunks: list[bytes]  # secretstream ciphertexts, without their length prefixes

    def envelope(self) -> bytes:
        return self.header + self.ss_header + b"".join(
            struct.pack(">I", len(c)) + c for c in self.chunks)


def craft(rng: random.Random, plaintext: bytes, *,
          recipients: Sequence[PublicKey] = (RECIPIENT.public_key,),
          pieces: list[tuple[bytes, int]] | None = None,
          stanzas: Callable[[bytes], list[tuple[int, bytes]]] | None = None) -> Parts:
    """Seal ``plaintext`` (already padded, or deliberately not) as the format says, or as told."""
    file_key = rng.randbytes(32)
    header = raw_header(file_key, stanzas(file_key) if stanzas else
                        x25519_stanzas(file_key, recipients))
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    ss_header = bytes(sodium.crypto_secretstream_xchacha20poly1305_init_push(
        state, blake2b_keyed(file_key, b"srdb v1 payload key")))
    chunks = [bytes(sodium.crypto_secretstream_xchacha20poly1305_push(state, m, None, tag))
              for m, tag in (canonical_pieces(plaintext) if pieces is None else pieces)]
    return Parts(header, ss_header, chunks)


def split_envelope(envelope: bytes) -> Parts:
    """Cut a well-formed envelope into header, secretstream header and chunks."""
    pos = 10
    for _ in range(envelope[9]):
        (length,) = struct.unpack_from(">H", envelope, pos + 1)
        pos += 3 + length
    pos += 32
    header, ss_header = envelope[:pos], envelope[pos:pos + 24]
    pos += 24
    chunks = []
    while pos < len(envelope):
        (length,) = struct.unpack_from(">I", envelope, pos)
        chunks.append(envelope[pos + 4:pos + 4 + length])
        pos += 4 + length
    assert pos == len(envelope), "not a well-formed envelope"
    return Parts(header, ss_header, chunks)


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


# --- vectors ----------------------------------------------------------------------------------

@dataclass
class Vector:
    expect: str
    comment: str
    envelope: bytes
    manifest: dict[str, Any] | None = None
    attachments: list[bytes] = field(default_factory=list)

    def render(self) -> bytes:
        assert self.expect in EXPECTATIONS
        lines = [f"expect: {self.expect}", f"identity: {RECIPIENT.raw.hex()}",
                 f"comment: {self.comment}"]
        if self.expect == "success":
            assert self.manifest is not None
            lines.append("manifest: " + json.dumps(self.manifest, sort_keys=True,
                                                   separators=(",", ":")))
            lines += [f"attachment-sha256: {sha256hex(a)}" for a in self.attachments]
        lines.append(f"envelope-sha256: {sha256hex(self.envelope)}")
        text = "\n".join(lines) + "\n\n"
        return text.encode("ascii") + self.envelope


Builder = Callable[[random.Random], Vector]
VECTORS: dict[str, Builder] = {}


def vector(builder: Builder) -> Builder:
    VECTORS[builder.__name__] = builder
    return builder


def seal(rng: random.Random, attachments: Attachments = (), *,
         recipients: Sequence[PublicKey] = (RECIPIENT.public_key,), **finish: Any) -> bytes:
    """Seal with the package's Encryptor, its file key drawn from ``rng``."""
    encryptor = Encryptor(recipients, random=rng.randbytes)
    out: list[bytes] = []
    for name, media_type, data in attachments:
        encryptor.begin_attachment(name, media_type)
        out += encryptor.write(data)
        out += encryptor.end_attachment()
    out += encryptor.finish(**finish)
    return b"".join(out)


def success(rng: random.Random, comment: str, attachments: Attachments = (), *,
            recipients: Sequence[PublicKey] = (RECIPIENT.public_key,), **finish: Any) -> Vector:
    envelope = seal(rng, attachments, recipients=recipients, **finish)
    doc = manifest_doc(attachments, **finish)
    return Vector("success", comment, envelope, doc, [d for _n, _t, d in attachments])


def small_report(rng: random.Random) -> Attachments:
    return [("statement.txt", "text/plain", b"What happened, in my own words.\n")]


def base_envelope(rng: random.Random, recipients: Sequence[PublicKey] = (RECIPIENT.public_key,),
                  ) -> bytes:
    """A valid small envelope for the tampering vectors."""
    return seal(rng, small_report(rng), recipients=recipients, message="Please help.")


def crafted_plaintext(rng: random.Random, size: int = 1000) -> bytes:
    """A valid padded plaintext (one attachment of ``size`` bytes)."""
    attachments = [("evidence.bin", "application/octet-stream", rng.randbytes(size))]
    return padded(records_for(attachments, manifest_doc(attachments)))


# success -------------------------------------------------------------------------------------

@vector
def success_empty_attachment(rng: random.Random) -> Vector:
    return success(rng, "one 0-byte attachment and an empty message",
                   [("empty.txt", "text/plain", b"")])


@vector
def success_no_attachments(rng: random.Random) -> Vector:
    return success(rng, "no attachments and an empty message: the smallest plaintext")


@vector
def success_one_byte_attachment(rng: random.Random) -> Vector:
    return success(rng, "one 1-byte attachment", [("one.bin", "application/octet-stream", b"\x2a")],
                   message="one byte")


@vector
def success_attachment_65536(rng: random.Random) -> Vector:
    return success(rng, "an attachment of exactly one chunk size (65536 bytes): two chunks",
                   [("chunk.bin", "application/octet-stream", rng.randbytes(65536))])


@vector
def success_attachment_65537(rng: random.Random) -> Vector:
    return success(rng, "an attachment of 65537 bytes: two chunks",
                   [("chunk-plus-one.bin", "application/octet-stream", rng.randbytes(65537))])


def _one_chunk(rng: random.Random, target: int, comment: str) -> Vector:
    """An attachment sized so the plaintext through END is ``target`` bytes."""
    name, media_type = "sized.bin", "application/octet-stream"
    for size in range(target - 400, target):
        fake = [(name, media_type, bytes(size))]
        if len(records_for(fake, manifest_doc(fake))) == target:
            break
    else:
        raise AssertionError("no attachment size gives the target length")
    result = success(rng, comment, [(name, media_type, rng.randbytes(size))])
    parts = split_envelope(result.envelope)
    assert [len(c) for c in parts.chunks] == [CHUNK + ABYTES], "expected one full final chunk"
    return result


@vector
def success_padded_one_full_chunk(rng: random.Random) -> Vector:
    return _one_chunk(rng, CHUNK - 100, "plaintext of 65436 bytes through END, padded to "
                      "padme = 65536: exactly one full-size chunk, tagged final")


@vector
def success_unpadded_one_full_chunk(rng: random.Random) -> Vector:
    return _one_chunk(rng, CHUNK, "plaintext of exactly 65536 bytes through END, no padding: "
                      "exactly one full-size chunk, tagged final")


@vector
def success_three_attachments(rng: random.Random) -> Vector:
    attachments = [
        ("notes.txt", "text/plain", b"three attachments follow\n"),
        ("Beweisfoto \u00fcberwachung \u76e3\u8996 \U0001f4f7.jpg", "image/jpeg",
         rng.randbytes(70001)),
        ("empty", "", b""),
    ]
    return success(rng, "three attachments of mixed sizes (25, 70001, 0 bytes), "
                   "one with a non-ASCII name", attachments, message="See the files.")


@vector
def success_report_answers_language(rng: random.Random) -> Vector:
    answers = {
        "what": "Belästigung am Arbeitsplatz",
        "when": "2026-03",
        "times": 3,
        "witnesses": ["colleague", "manager"],
        "reported_before": False,
        "details": {"location": "office", "ongoing": True, "contact": None},
    }
    return success(rng, "a report with questionnaire answers, language and a multi-line "
                   "non-ASCII message", [("a.txt", "text/plain", b"a")], language="de-AT",
                   message="Es begann im März.\nSeitdem \u2014 jede Woche.\n\u2713",
                   answers=answers)


@vector
def success_reply(rng: random.Random) -> Vector:
    return success(rng, "a reply (kind reply) from staff to a source", kind="reply",
                   language="en", message="Thank you. We have opened a case; please check back.")


@vector
def success_two_recipients(rng: random.Random) -> Vector:
    return success(rng, "sealed to two recipients; the identity opens the second stanza",
                   [("report.txt", "text/plain", b"for both keys\n")],
                   recipients=[OTHER.public_key, RECIPIENT.public_key], message="two keys")


@vector
def success_independent_encoder(rng: random.Random) -> Vector:
    big = rng.randbytes(3000)
    attachments = [("split.bin", "application/octet-stream", big),
                   ("tiny.txt", "text/plain", b"x")]
    doc = manifest_doc(attachments, message="made by the generator's own encoder",
                       extra={"x-future-member": {"kept": [1, 2, 3]}})
    # Not canonical: the attachment in three DATA records, the manifest indented and unsorted.
    plaintext = (record(DATA, big[:1]) + record(DATA, big[1:2000]) + record(DATA, big[2000:])
                 + record(ATTACHMENT_END) + record(DATA, b"x") + record(ATTACHMENT_END)
                 + record(MANIFEST, json.dumps(doc, indent=1).encode()) + record(END))
    envelope = craft(rng, padded(plaintext)).envelope()
    return Vector("success", "built by the generator's own encoder: an attachment split over "
                  "three DATA records, an indented unsorted manifest with an unknown member "
                  "(which is preserved)", envelope, doc, [big, b"x"])


@vector
def success_unknown_stanza_skipped(rng: random.Random) -> Vector:
    attachments = small_report(rng)
    doc = manifest_doc(attachments)
    parts = craft(rng, padded(records_for(attachments, doc)), stanzas=lambda key: [
        (0x7F, b"a future kind of recipient stanza"),
        *x25519_stanzas(key, [RECIPIENT.public_key])])
    return Vector("success", "an unknown stanza type (0x7f, 33 bytes) before the X25519 "
                  "stanza: readers skip it", parts.envelope(), doc, [attachments[0][2]])


@vector
def success_attachment_name_255_astral(rng: random.Random) -> Vector:
    return success(rng, "an attachment name of 255 characters outside the BMP (U+1F4C4): name "
                   "lengths count Unicode code points, not UTF-16 units or UTF-8 bytes",
                   [("\U0001f4c4" * 255, "text/plain", b"page\n")])


# no match ------------------------------------------------------------------------------------

@vector
def no_match_wrong_key(rng: random.Random) -> Vector:
    envelope = seal(rng, small_report(rng), recipients=[STRANGER.public_key])
    return Vector("no match", "sealed to another key only", envelope)


@vector
def no_match_stanza_tampered(rng: random.Random) -> Vector:
    envelope = flip(base_envelope(rng), 13 + 40)
    return Vector("no match", "a byte of the identity's own (only) stanza body flipped: the "
                  "sealed box no longer opens, which is indistinguishable from another key's",
                  envelope)


@vector
def no_match_unknown_stanza_type(rng: random.Random) -> Vector:
    parts = craft(rng, crafted_plaintext(rng), stanzas=lambda key: [
        (0x02, body) for _t, body in x25519_stanzas(key, [RECIPIENT.public_key])])
    return Vector("no match", "the only stanza is a valid sealed box to the identity, but with "
                  "unknown type 0x02: it must be skipped, not tried", parts.envelope())


# header failure / unsupported version ---------------------------------------------------------

@vector
def header_unsupported_version(rng: random.Random) -> Vector:
    envelope = bytearray(base_envelope(rng))
    envelope[8] = 0x02
    return Vector("unsupported version", "version byte 0x02, otherwise a valid envelope",
                  bytes(envelope))


@vector
def header_unsupported_version_short(rng: random.Random) -> Vector:
    return Vector("unsupported version", "magic and version 0xff only (and a stanza count of "
                  "0): the version is checked before anything after it",
                  MAGIC + b"\xff\x00")


@vector
def header_bad_magic(rng: random.Random) -> Vector:
    envelope = b"SRDB-ENW" + base_envelope(rng)[8:]
    return Vector("header failure", "magic 'SRDB-ENW'", envelope)


@vector
def header_truncated(rng: random.Random) -> Vector:
    return Vector("header failure", "cut inside the stanza body (60 bytes)",
                  base_envelope(rng)[:60])


@vector
def header_truncated_in_mac(rng: random.Random) -> Vector:
    return Vector("header failure", "cut inside the header MAC (115 of 125 header bytes)",
                  base_envelope(rng)[:115])


@vector
def header_stanza_tampered(rng: random.Random) -> Vector:
    envelope = base_envelope(rng, [OTHER.public_key, RECIPIENT.public_key])
    return Vector("header failure", "two recipients; a byte of the other recipient's stanza "
                  "(the first) flipped: the identity's stanza opens, the MAC fails",
                  flip(envelope, 13 + 20))


@vector
def header_mac_tampered(rng: random.Random) -> Vector:
    return Vector("header failure", "last byte of the header MAC flipped",
                  flip(base_envelope(rng), 124, 0x80))


@vector
def header_mac_missing(rng: random.Random) -> Vector:
    envelope = base_envelope(rng)
    return Vector("header failure", "the 32-byte MAC removed; the payload follows the stanza",
                  envelope[:93] + envelope[125:])


@vector
def header_stanza_stripped(rng: random.Random) -> Vector:
    envelope = base_envelope(rng, [OTHER.public_key, RECIPIENT.public_key])
    stripped = MAGIC + b"\x01\x01" + envelope[93:]
    return Vector("header failure", "two recipients; the first stanza removed and the count "
                  "set to 1: the MAC fails", stripped)


@vector
def header_stanzas_swapped(rng: random.Random) -> Vector:
    envelope = base_envelope(rng, [OTHER.public_key, RECIPIENT.public_key])
    swapped = envelope[:10] + envelope[93:176] + envelope[10:93] + envelope[176:]
    return Vector("header failure", "two recipients; the two stanzas swapped: the MAC fails",
                  swapped)


@vector
def header_zero_stanzas(rng: random.Random) -> Vector:
    envelope = bytearray(base_envelope(rng))
    envelope[9] = 0
    return Vector("header failure", "stanza count 0", bytes(envelope))


@vector
def header_too_many_stanzas(rng: random.Random) -> Vector:
    envelope = bytearray(base_envelope(rng))
    envelope[9] = 17
    return Vector("header failure", "stanza count 17 (over the maximum of 16)", bytes(envelope))


@vector
def header_stanza_wrong_length(rng: random.Random) -> Vector:
    envelope = base_envelope(rng)
    shortened = envelope[:11] + b"\x00\x4f" + envelope[13:92] + envelope[93:]
    return Vector("header failure", "an X25519 stanza of length 79 (the last body byte "
                  "removed)", shortened)


@vector
def header_stanza_too_long(rng: random.Random) -> Vector:
    parts = craft(rng, crafted_plaintext(rng), stanzas=lambda key: [
        *x25519_stanzas(key, [RECIPIENT.public_key]), (0x42, bytes(1025))])
    return Vector("header failure", "a second stanza of unknown type with a 1025-byte body "
                  "(over the 1024 maximum), valid MAC", parts.envelope())


# payload failure -----------------------------------------------------------------------------

@vector
def payload_chunk_tampered(rng: random.Random) -> Vector:
    envelope = base_envelope(rng)
    return Vector("payload failure", "a byte in the middle of the only chunk flipped",
                  flip(envelope, 125 + 24 + 4 + 50))


@vector
def payload_ss_header_tampered(rng: random.Random) -> Vector:
    return Vector("payload failure", "a byte of the secretstream header flipped",
                  flip(base_envelope(rng), 125 + 3))


@vector
def payload_chunk_length_tampered(rng: random.Random) -> Vector:
    parts = craft(rng, crafted_plaintext(rng))
    envelope = bytearray(parts.envelope())
    at = len(parts.header) + 24  # the final chunk's length prefix, made one too small
    envelope[at:at + 4] = struct.pack(">I", len(parts.chunks[0]) - 1)
    return Vector("payload failure", "the final chunk's length prefix one too small, the "
                  "stream one byte too long", bytes(envelope))


@vector
def payload_truncated_after_header(rng: random.Random) -> Vector:
    return Vector("payload failure", "a complete header and nothing else",
                  base_envelope(rng)[:125])


@vector
def payload_truncated_in_ss_header(rng: random.Random) -> Vector:
    return Vector("payload failure", "cut inside the secretstream header",
                  base_envelope(rng)[:125 + 10])


@vector
def payload_truncated_mid_chunk(rng: random.Random) -> Vector:
    envelope = base_envelope(rng)
    final = split_envelope(envelope).chunks[-1]
    return Vector("payload failure", "cut in the middle of the final chunk",
                  envelope[:len(envelope) - len(final) // 2])


@vector
def payload_missing_final_chunk(rng: random.Random) -> Vector:
    parts = craft(rng, crafted_plaintext(rng, 66000))
    assert len(parts.chunks) == 2
    parts.chunks.pop()
    return Vector("payload failure", "two-chunk envelope without its final chunk: the stream "
                  "ends after a full TAG_MESSAGE chunk", parts.envelope())


@vector
def payload_last_chunk_not_final(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng)
    parts = craft(rng, plaintext, pieces=[(plaintext, TAG_MESSAGE)])
    return Vector("payload failure", "the only (short) chunk has TAG_MESSAGE instead of "
                  "TAG_FINAL", parts.envelope())


@vector
def payload_full_last_chunk_not_final(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 64000)
    assert len(plaintext) == CHUNK
    parts = craft(rng, plaintext, pieces=[(plaintext, TAG_MESSAGE)])
    return Vector("payload failure", "the only chunk is full-size with TAG_MESSAGE: no chunk "
                  "carries TAG_FINAL", parts.envelope())


@vector
def payload_data_after_final(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng)
    parts = craft(rng, plaintext, pieces=[*canonical_pieces(plaintext), (bytes(100), TAG_FINAL)])
    return Vector("payload failure", "a second authentic chunk (100 zero bytes, TAG_FINAL) "
                  "after the short final chunk", parts.envelope())


@vector
def payload_data_after_full_final(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 64000)
    assert len(plaintext) == CHUNK
    parts = craft(rng, plaintext, pieces=[(plaintext, TAG_FINAL), (bytes(100), TAG_FINAL)])
    return Vector("payload failure", "an authentic chunk after a full-size TAG_FINAL chunk: "
                  "the framing alone looks valid, only the tag shows the extra data",
                  parts.envelope())


@vector
def payload_trailing_byte(rng: random.Random) -> Vector:
    return Vector("payload failure", "one zero byte appended after the final chunk",
                  base_envelope(rng) + b"\x00")


@vector
def payload_chunk_over_max(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 66000)
    assert len(plaintext) == 67584
    parts = craft(rng, plaintext, pieces=[(plaintext[:CHUNK + 1], TAG_MESSAGE),
                                          (plaintext[CHUNK + 1:], TAG_FINAL)])
    return Vector("payload failure", "a first chunk of 65537 plaintext bytes (length prefix "
                  "65554, over the maximum)", parts.envelope())


@vector
def payload_chunk_under_min(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 64000)
    assert len(plaintext) == CHUNK
    parts = craft(rng, plaintext, pieces=[(plaintext, TAG_MESSAGE), (b"", TAG_FINAL)])
    return Vector("payload failure", "a full TAG_MESSAGE chunk followed by an empty TAG_FINAL "
                  "chunk (length prefix 17, under the minimum)", parts.envelope())


@vector
def payload_short_nonfinal_chunk(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 3000)
    parts = craft(rng, plaintext, pieces=[(plaintext[:1000], TAG_MESSAGE),
                                          (plaintext[1000:], TAG_FINAL)])
    return Vector("payload failure", "a 1000-byte TAG_MESSAGE chunk before the final chunk",
                  parts.envelope())


@vector
def payload_nonfinal_chunk_tag_push(rng: random.Random) -> Vector:
    plaintext = crafted_plaintext(rng, 66000)
    pieces = canonical_pieces(plaintext)
    pieces[0] = (pieces[0][0], TAG_PUSH)
    return Vector("payload failure", "a full-size first chunk with TAG_PUSH instead of "
                  "TAG_MESSAGE", craft(rng, plaintext, pieces=pieces).envelope())


def _three_chunks(rng: random.Random) -> Parts:
    parts = craft(rng, crafted_plaintext(rng, 2 * CHUNK + 100))
    assert len(parts.chunks) == 3
    return parts


@vector
def payload_chunks_reordered(rng: random.Random) -> Vector:
    parts = _three_chunks(rng)
    parts.chunks[0], parts.chunks[1] = parts.chunks[1], parts.chunks[0]
    return Vector("payload failure", "three chunks, the first two swapped", parts.envelope())


@vector
def payload_chunk_duplicated(rng: random.Random) -> Vector:
    parts = _three_chunks(rng)
    parts.chunks.insert(1, parts.chunks[0])
    return Vector("payload failure", "three chunks, the first one repeated", parts.envelope())


@vector
def payload_chunk_dropped(rng: random.Random) -> Vector:
    parts = _three_chunks(rng)
    del parts.chunks[1]
    return Vector("payload failure", "three chunks, the middle one removed", parts.envelope())


@vector
def payload_padding_nonzero(rng: random.Random) -> Vector:
    plaintext = bytearray(crafted_plaintext(rng))
    assert plaintext[-1] == 0
    plaintext[-1] = 0x01
    return Vector("payload failure", "the last padding byte is 0x01",
                  craft(rng, bytes(plaintext)).envelope())


def _unpadded(rng: random.Random) -> bytes:
    attachments = [("evidence.bin", "application/octet-stream", rng.randbytes(1000))]
    plaintext = records_for(attachments, manifest_doc(attachments))
    assert padme(len(plaintext)) - len(plaintext) > 1
    return plaintext


@vector
def payload_padding_wrong_length(rng: random.Random) -> Vector:
    plaintext = padded(_unpadded(rng)) + b"\x00"
    return Vector("payload failure", "padding one zero byte longer than padme(L) - L",
                  craft(rng, plaintext).envelope())


@vector
def payload_padding_short(rng: random.Random) -> Vector:
    plaintext = padded(_unpadded(rng))[:-1]
    return Vector("payload failure", "padding one zero byte shorter than padme(L) - L",
                  craft(rng, plaintext).envelope())


@vector
def payload_padding_missing(rng: random.Random) -> Vector:
    return Vector("payload failure", "no padding at all (padme(L) > L)",
                  craft(rng, _unpadded(rng)).envelope())


def _records(rng: random.Random, comment: str, plaintext: bytes,
             expect: str = "payload failure") -> Vector:
    return Vector(expect, comment, craft(rng, padded(plaintext)).envelope())


@vector
def payload_manifest_missing(rng: random.Random) -> Vector:
    return _records(rng, "DATA, ATTACHMENT_END, END: no MANIFEST record",
                    record(DATA, b"abc") + record(ATTACHMENT_END) + record(END))


@vector
def payload_end_missing(rng: random.Random) -> Vector:
    for size in range(1, 200):  # so that padme(L) - L < 5: no END can hide in the padding
        attachments = [("a.txt", "text/plain", rng.randbytes(size))]
        plaintext = records_for(attachments, manifest_doc(attachments))[:-5]  # without END
        if 0 < padme(len(plaintext)) - len(plaintext) < 5:
            break
    else:
        raise AssertionError("no attachment size leaves less padding than an END record")
    return Vector("payload failure", "the plaintext ends after the MANIFEST record (no END, "
                  "and too little padding to read as one)", craft(rng, padded(plaintext))
                  .envelope())


@vector
def payload_attachment_sha256_mismatch(rng: random.Random) -> Vector:
    doc = manifest_doc([("a.txt", "text/plain", b"abd")])
    return _records(rng, "the manifest's sha256 is of different bytes of the same size",
                    records_for([("a.txt", "text/plain", b"abc")], doc))


@vector
def payload_attachment_size_mismatch(rng: random.Random) -> Vector:
    attachments = [("a.txt", "text/plain", b"abc")]
    doc = manifest_doc(attachments)
    doc["attachments"][0]["size"] = 4
    return _records(rng, "the manifest's size is one more than the attachment's",
                    records_for(attachments, doc))


@vector
def payload_attachment_count_mismatch(rng: random.Random) -> Vector:
    attachments = [("a.txt", "text/plain", b"abc"), ("b.txt", "text/plain", b"def")]
    return _records(rng, "the manifest lists two attachments, the envelope carries one",
                    records_for(attachments[:1], manifest_doc(attachments)))


@vector
def payload_attachment_name_too_long(rng: random.Random) -> Vector:
    attachments = [("n" * 256, "text/plain", b"abc")]
    return _records(rng, "an attachment name of 256 characters in the manifest (maximum 255)",
                    records_for(attachments, manifest_doc(attachments)))


@vector
def payload_unknown_record_type(rng: random.Random) -> Vector:
    return _records(rng, "a record of unknown type 0x04 before the manifest",
                    record(0x04, b"?") + records_for((), manifest_doc()))


@vector
def payload_record_after_manifest(rng: random.Random) -> Vector:
    attachments = [("a.txt", "text/plain", b"abc")]
    return _records(rng, "an attachment (DATA, ATTACHMENT_END) after the MANIFEST record",
                    record(MANIFEST, manifest_json(manifest_doc(attachments)))
                    + record(DATA, b"abc") + record(ATTACHMENT_END) + record(END))


@vector
def payload_unterminated_attachment(rng: random.Random) -> Vector:
    attachments = [("a.txt", "text/plain", b"abc")]
    return _records(rng, "DATA then MANIFEST without ATTACHMENT_END",
                    record(DATA, b"abc") + record(MANIFEST, manifest_json(
                        manifest_doc(attachments))) + record(END))


@vector
def payload_empty_data_record(rng: random.Random) -> Vector:
    attachments = [("a.txt", "text/plain", b"")]
    return _records(rng, "a DATA record with an empty body",
                    record(DATA) + records_for(attachments, manifest_doc(attachments)))


@vector
def payload_end_not_empty(rng: random.Random) -> Vector:
    return _records(rng, "an END record of length 1",
                    records_for((), manifest_doc())[:-5] + record(END, b"\x00"))


@vector
def payload_manifest_not_json(rng: random.Random) -> Vector:
    return _records(rng, "the MANIFEST body is not JSON",
                    record(MANIFEST, b"version: 1") + record(END))


@vector
def payload_manifest_bad_kind(rng: random.Random) -> Vector:
    return _records(rng, "manifest kind 'complaint'",
                    records_for((), manifest_doc(kind="complaint")))


@vector
def payload_manifest_unsupported_version(rng: random.Random) -> Vector:
    doc = manifest_doc()
    doc["version"] = 2
    return _records(rng, "manifest version 2 in an otherwise valid envelope",
                    records_for((), doc), expect="unsupported version")


# --- driver -----------------------------------------------------------------------------------

def outcome(vec: Vector) -> str:
    """What dropbox_envelope.Decryptor makes of ``vec`` (a self-check, never decisive)."""
    decryptor = Decryptor([RECIPIENT])
    data: dict[int, bytearray] = {}
    try:
        for event in decryptor.feed(vec.envelope):
            if isinstance(event, AttachmentData):
                data.setdefault(event.index, bytearray()).extend(event.data)
        manifest = decryptor.close()
    except UnsupportedVersion:
        return "unsupported version"
    except NotForMe:
        return "no match"
    except HeaderCorrupted:
        return "header failure"
    except PayloadCorrupted:
        return "payload failure"
    except EnvelopeError as exc:
        return f"unexpected {type(exc).__name__}"
    got = [bytes(data.get(i, b"")) for i in range(len(manifest.attachments))]
    if manifest.to_dict() != vec.manifest or got != vec.attachments:
        return "success with different content"
    return "success"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        print("\n".join(VECTORS))
        return 0
    unknown = [name for name in argv if name not in VECTORS]
    if unknown:
        print(f"unknown vector(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    names = argv or list(VECTORS)
    if not argv:  # a full run also removes vectors that no longer exist
        for stale in OUT_DIR.glob("*.vec"):
            if stale.stem not in VECTORS:
                stale.unlink()
    disagreements = 0
    for name in names:
        vec = VECTORS[name](random.Random(name))
        (OUT_DIR / f"{name}.vec").write_bytes(vec.render())
        got = outcome(vec)
        flag = "" if got == vec.expect else f"   <-- Decryptor says: {got}"
        disagreements += bool(flag)
        print(f"{name:40} {len(vec.envelope):8} bytes  {vec.expect}{flag}")
    if disagreements:
        print(f"{disagreements} vector(s) disagree with dropbox_envelope", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
