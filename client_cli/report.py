"""What ``decrypt`` writes next to the attachments: ``report.json`` and ``report.txt``.

Pure functions. Everything in a manifest was chosen by an anonymous sender, so the text view
escapes control characters (a message must not be able to drive the terminal it is shown in)
and labels clearly which facts come from the envelope and which from the server's sidecar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from dropbox_envelope.manifest import Manifest

__all__ = [
    "SOURCE_ID_LABEL",
    "render_json",
    "render_text",
    "report_document",
]

SOURCE_ID_LABEL = "Source ID (use with `dropbox-client reply --source`)"

# Fields that decrypt itself adds at the top level of report.json. A manifest member of the same
# name (the manifest's unknown members are kept) is moved under "manifest_extra" so that the
# sender can never pose as the server.
_OWN_FIELDS = ("envelope", "server", "manifest_extra")

# Characters json.dumps(ensure_ascii=False) leaves raw but that terminals or editors act on:
# DEL and C1 controls (U+009B is an escape-sequence introducer), line/paragraph separators,
# bidirectional marks, embeddings, overrides and isolates; and lone surrogates (a JSON manifest
# may carry "\ud83d" escapes, e.g. from a browser that cut an emoji in half), which UTF-8
# cannot encode. Written as JSON \u escapes they read back as exactly the same text.
_JSON_RISKY = re.compile(
    "[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# In the text report: every control character except newline and tab, plus the same
# separators, bidi overrides and lone surrogates.
_TEXT_RISKY = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_RISKY = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def report_document(manifest: Manifest, stored_names: Sequence[str],
                    envelope: Mapping[str, Any],
                    server: Mapping[str, Any] | None) -> dict[str, Any]:
    """The content of report.json: the manifest dict, each attachment's stored ``file``, the
    ``envelope`` facts (``file``, ``sha256``, ``size``) and the server sidecar (or null)."""
    doc = manifest.to_dict()
    clashing = {key: doc.pop(key) for key in _OWN_FIELDS if key in doc}
    for entry, stored in zip(doc["attachments"], stored_names, strict=True):
        entry["file"] = f"attachments/{stored}"
    doc["envelope"] = dict(envelope)
    doc["server"] = dict(server) if server is not None else None
    if clashing:
        doc["manifest_extra"] = clashing
    return doc


def render_json(doc: Mapping[str, Any]) -> bytes:
    """Readable UTF-8 JSON in which no character can act on a terminal or reorder text."""
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    text = _JSON_RISKY.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return (text + "\n").encode("utf-8")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}" if ord(match.group()) > 0xFF else \
        f"\\x{ord(match.group()):02x}"


def _block(text: str) -> str:
    """Multi-line text, safe to print: CR and CRLF become LF; other controls are escaped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _TEXT_RISKY.sub(_escape, text)


def _line(value: Any) -> str:
    """One line, safe to print."""
    return _LINE_RISKY.sub(_escape, str(value))


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def _answer(value: Any) -> str:
    if isinstance(value, str):
        return _block(value)
    return _block(json.dumps(value, ensure_ascii=False, indent=2))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    units = ("KiB", "MiB", "GiB")
    value, index = n / 1024, 0
    while value >= 1024 and index < len(units) - 1:
        value, index = value / 1024, index + 1
    return f"{value:.1f} {units[index]} ({n} bytes)"


def render_text(doc: Mapping[str, Any]) -> str:
    """The human-readable report.txt for a :func:`report_document`."""
    envelope: Mapping[str, Any] = doc["envelope"]
    server: Mapping[str, Any] | None = doc.get("server")
    title = "Safe Report Drop Box: decrypted " + ("reply" if doc["kind"] == "reply" else "report")
    out = [title, "=" * len(title), ""]
    fields: list[tuple[str, Any]] = [("Kind", doc["kind"]),
                                     ("Language", doc["language"] or "(not given)")]
    if server is not None:
        fields.append((SOURCE_ID_LABEL, server.get("source_id") or "(not recorded)"))
        fields.append(("Envelope ID", server.get("envelope_id") or "(not recorded)"))
        fields.append(("Received (day)", server.get("received_day") or "(not recorded)"))
    else:
        fields.append((SOURCE_ID_LABEL, "(unknown: no server metadata file next to the "
                                        "envelope)"))
    fields += [("Envelope file", envelope["file"]),
               ("Envelope SHA-256", envelope["sha256"]),
               ("Envelope size", _size(int(envelope["size"])))]
    out += [f"{label + ':':<18} {_line(value)}" for label, value in fields]

    answers: Mapping[str, Any] = doc["answers"]
    out += ["", "Answers", "-------"]
    if not answers:
        out.append("(none)")
    for question, value in answers.items():
        rendered = _answer(value)
        if "\n" in rendered:
            out.append(f"{_line(question)}:")
            out.append(_indent(rendered))
        else:
            out.append(f"{_line(question)}: {rendered}")

    out += ["", "Message", "-------"]
    message = _block(doc["message"]).rstrip("\n")
    out.append(message or "(no message)")

    attachments: Sequence[Mapping[str, Any]] = doc["attachments"]
    heading = f"Attachments ({len(attachments)})"
    out += ["", heading, "-" * len(heading)]
    if not attachments:
        out.append("(none)")
    for number, entry in enumerate(attachments, 1):
        out += [
            f"{number}. {_line(entry['name'])}",
            f"   stored as: {entry['file']}",
            f"   type:      {_line(entry['type'])}",
            f"   size:      {_size(int(entry['size']))}",
            f"   SHA-256:   {entry['sha256']}",
        ]
    out += ["", "Every attachment's size and SHA-256 were verified against the envelope's "
                "manifest, and the whole envelope was authenticated before this folder was "
                "created.", ""]
    if "manifest_extra" in doc:
        out.insert(-1, "Note: the sender's manifest contained fields named like the ones this "
                       "tool adds; they are kept under \"manifest_extra\" in report.json.")
    return "\n".join(out)
