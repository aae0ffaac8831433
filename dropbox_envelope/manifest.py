"""The manifest: the JSON record that describes a submission (docs/PROTOCOL.md §4)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import PayloadCorrupted, UnsupportedVersion

__all__ = ["MAX_ATTACHMENTS", "MAX_MESSAGE_CHARS", "Attachment", "Manifest"]

MANIFEST_VERSION = 1
MAX_ATTACHMENTS = 1000
MAX_MESSAGE_CHARS = 1_000_000
MAX_NAME_CHARS = 255
MAX_LANGUAGE_CHARS = 35
Kind = Literal["report", "reply"]
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_KNOWN = {"version", "kind", "language", "message", "answers", "attachments"}


@dataclass(frozen=True)
class Attachment:
    """One file carried in the envelope, as the sender described it."""

    name: str
    media_type: str
    size: int
    sha256: str  # lowercase hex of the plaintext


@dataclass(frozen=True)
class Manifest:
    """Everything in a submission except the attachment bytes."""

    kind: Kind
    language: str = ""
    message: str = ""
    answers: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown fields, kept verbatim

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        doc.update({
            "version": MANIFEST_VERSION,
            "kind": self.kind,
            "language": self.language,
            "message": self.message,
            "answers": dict(self.answers),
            "attachments": [
                {"name": a.name, "type": a.media_type, "size": a.size, "sha256": a.sha256}
                for a in self.attachments
            ],
        })
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True,
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError/UnicodeDecodeError too
            raise PayloadCorrupted("the manifest is not valid UTF-8 JSON") from exc
        if not isinstance(doc, dict):
            raise PayloadCorrupted("the manifest is not a JSON object")
        try:
            # JSON may spell lone surrogates as \ud800 escapes; no valid text contains them.
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadCorrupted("the manifest contains invalid Unicode text") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Manifest:
        version = doc.get("version")
        if type(version) is not int or version != MANIFEST_VERSION:
            raise UnsupportedVersion(f"manifest version {version!r} is not supported by this "
                                     "software; upgrade it")
        kind = doc.get("kind")
        if kind not in ("report", "reply"):
            raise PayloadCorrupted("the manifest's kind must be 'report' or 'reply'")
        language = _text(doc, "language", MAX_LANGUAGE_CHARS)
        message = _text(doc, "message", MAX_MESSAGE_CHARS)
        answers = doc.get("answers", {})
        if not isinstance(answers, dict):
            raise PayloadCorrupted("the manifest's answers must be a JSON object")
        items = doc.get("attachments", [])
        if not isinstance(items, list) or len(items) > MAX_ATTACHMENTS:
            raise PayloadCorrupted(f"the manifest's attachments must be a list of at most "
                                   f"{MAX_ATTACHMENTS}")
        attachments = tuple(_attachment(item) for item in items)
        extra = {k: v for k, v in doc.items() if k not in _KNOWN}
        return cls(kind, language, message, answers, attachments, extra)


def _text(doc: Mapping[str, Any], key: str, limit: int) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str) or len(value) > limit:
        raise PayloadCorrupted(f"the manifest's {key} must be text of at most {limit} characters")
    return value


def _attachment(item: Any) -> Attachment:
    if not isinstance(item, dict):
        raise PayloadCorrupted("an attachment entry in the manifest is not a JSON object")
    name, media_type = item.get("name"), item.get("type")
    size, digest = item.get("size"), item.get("sha256")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise PayloadCorrupted("an attachment name must be 1 to 255 characters")
    if not isinstance(media_type, str) or len(media_type) > MAX_NAME_CHARS:
        raise PayloadCorrupted("an attachment media type must be at most 255 characters")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PayloadCorrupted("an attachment size must be a non-negative integer")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise PayloadCorrupted("an attachment sha256 must be 64 lowercase hex digits")
    return Attachment(name, media_type, size, digest)
