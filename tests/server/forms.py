"""Building requests the way a browser without JavaScript does, and reading the pages back."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.server.conftest import Client

BOUNDARY = "----srdbTestBoundary7MA4YWxkTrZu0gW"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
_CODE_GROUP = re.compile(r'<span class="group">(\d{5})</span>')


@dataclass(frozen=True)
class Field:
    name: str
    value: str | bytes


@dataclass(frozen=True)
class File:
    name: str
    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    disposition: str | None = None  # a raw Content-Disposition, to send odd names


Part = Field | File


def multipart(parts: Sequence[Part], boundary: str = BOUNDARY) -> bytes:
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\n".encode()
        if isinstance(part, Field):
            out += f'Content-Disposition: form-data; name="{part.name}"\r\n\r\n'.encode()
            out += part.value.encode() if isinstance(part.value, str) else part.value
        else:
            disposition = part.disposition or (
                f'form-data; name="{part.name}"; filename="{part.filename}"')
            out += f"Content-Disposition: {disposition}\r\n".encode()
            out += f"Content-Type: {part.content_type}\r\n\r\n".encode()
            out += part.data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def report_parts(csrf: str, *, recipient: str | None, answers: Mapping[str, str | list[str]],
                 message: str = "", files: Sequence[File] = (), language: str = "en",
                 empty_file_input: bool = False) -> list[Part]:
    """The report form's parts in document order: csrf, recipient, questionnaire, message,
    language, attachments."""
    parts: list[Part] = [Field("csrf", csrf)]
    if recipient is not None:
        parts.append(Field("recipient", recipient))
    for name, value in answers.items():
        for v in [value] if isinstance(value, str) else value:
            parts.append(Field(name, v))
    parts += [Field("message", message), Field("language", language)]
    parts += list(files)
    if empty_file_input and not files:
        parts.append(File("attachments", "", b""))
    return parts


async def get_csrf(client: Client, path: str = "/report") -> str:
    resp = await client.get(path)
    assert resp.status == 200
    match = _CSRF.search(await resp.text())
    assert match, "no csrf field on the page"
    return match.group(1)


async def post_report(client: Client, parts: Sequence[Part], **kwargs: Any) -> Any:
    return await client.post("/report", data=multipart(parts),
                             headers={"Content-Type": MULTIPART}, **kwargs)


def code_from_receipt(html: str) -> str:
    groups = _CODE_GROUP.findall(html)
    assert len(groups) == 5, "the receipt shows the code in five groups"
    return " ".join(groups)


BASIC_ANSWERS: dict[str, str | list[str]] = {"what_happening": ["not_paid", "threats"]}
