"""``dropbox-client encrypt``: seal a message, answers and files into an envelope, offline."""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
import os
import re
import stat
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

from dropbox_envelope.keys import PublicKey
from dropbox_envelope.manifest import (
    MAX_ATTACHMENTS,
    MAX_LANGUAGE_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    Kind,
)
from dropbox_envelope.streams import AttachmentSource, encrypt

from .errors import CliError
from .fsutil import publish_file, refuse_existing
from .keyfiles import load_encryption_key
from .progress import Progress

__all__ = ["add_parser", "run"]

_LANGUAGE = re.compile(r"[A-Za-z0-9-]*")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "encrypt", help="seal a message and files into an envelope (offline)",
        description="Build an envelope sealed to one or more public keys. Nothing is sent "
                    "anywhere; the envelope is written to --out, which must not exist yet.")
    parser.add_argument("--to", metavar="PUBKEY_FILE", type=Path, action="append",
                        required=True,
                        help="recipient public key file (repeat for several, e.g. the backup key)")
    parser.add_argument("--message-file", metavar="F",
                        help="UTF-8 text file with the message ('-' reads standard input)")
    parser.add_argument("--answers-file", metavar="JSON", type=Path,
                        help="JSON object of questionnaire answers")
    parser.add_argument("--language", metavar="LANG", default="",
                        help="BCP 47 language tag of the message, e.g. 'ar' or 'pt-BR'")
    parser.add_argument("--kind", choices=("report", "reply"), default="report",
                        help="what the envelope is (default: report)")
    parser.add_argument("--out", metavar="ENVELOPE", type=Path, required=True,
                        help="envelope file to create (never overwritten)")
    parser.add_argument("files", metavar="FILE", type=Path, nargs="*",
                        help="files to attach (stored under their base names)")
    parser.set_defaults(func=run)


def _recipients(paths: list[Path]) -> list[PublicKey]:
    keys: list[PublicKey] = []
    seen: dict[PublicKey, Path] = {}
    for path in paths:
        key = load_encryption_key(path)
        if key in seen:
            raise CliError(f"{path} and {seen[key]} hold the same key; list each key once")
        seen[key] = path
        keys.append(key)
    return keys


def _read_message(arg: str | None) -> str:
    if arg is None:
        return ""
    try:
        if arg == "-":
            message = sys.stdin.buffer.read().decode("utf-8-sig")
        else:
            message = Path(arg).read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CliError(f"{arg}: the message file is not UTF-8 text") from None
    if len(message) > MAX_MESSAGE_CHARS:
        raise CliError(f"{arg}: the message is longer than {MAX_MESSAGE_CHARS} characters")
    return message


def _read_answers(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        answers = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CliError(f"{path}: not a valid JSON file ({exc})") from None
    if not isinstance(answers, dict):
        raise CliError(f"{path}: the answers must be a JSON object ({{\"question\": answer}})")
    try:
        json.dumps(answers, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise CliError(f"{path}: the answers contain an invalid \\u escape (a lone UTF-16 "
                       "surrogate)") from None
    return cast(dict[str, Any], answers)


def _attachment_name(path: Path) -> str:
    # A name that is not valid UTF-8 on disk arrives as surrogate escapes; the manifest needs
    # real text, so those bytes become U+FFFD.
    name = path.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if not name:
        raise CliError(f"{path}: cannot attach a path without a file name")
    if len(name) > MAX_NAME_CHARS:
        raise CliError(f"{path}: the file name is longer than {MAX_NAME_CHARS} characters; "
                       "rename it")
    return name


def _check_files(paths: list[Path]) -> list[tuple[Path, str, str, int]]:
    if len(paths) > MAX_ATTACHMENTS:
        raise CliError(f"at most {MAX_ATTACHMENTS} files can go into one envelope")
    checked = []
    for path in paths:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise CliError(f"{path} is not a regular file")
        name = _attachment_name(path)
        media_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        checked.append((path, name, media_type, info.st_size))
    return checked


def _sources(files: list[tuple[Path, str, str, int]]) -> Generator[AttachmentSource, None, None]:
    """Open each file only when its turn comes, and close it right after."""
    for path, name, media_type, _size in files:
        with open(path, "rb") as reader:
            yield AttachmentSource(name, media_type, reader)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    kind: Kind = args.kind
    language: str = args.language
    if len(language) > MAX_LANGUAGE_CHARS or not _LANGUAGE.fullmatch(language):
        raise CliError(f"--language {language!r} is not a language tag such as 'en' or 'pt-BR'")
    recipients = _recipients(args.to)
    message = _read_message(args.message_file)
    answers = _read_answers(args.answers_file)
    files = _check_files(args.files)
    refuse_existing(out)

    parent = out.parent
    fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{out.name[:64]}.", suffix=".partial")
    tmp = Path(tmp_name)
    sources = _sources(files)
    try:
        with os.fdopen(fd, "wb") as handle, \
                Progress(f"encrypting {out.name}", sum(f[3] for f in files)) as progress:
            try:
                size = encrypt(handle, recipients, attachments=sources, kind=kind,
                               language=language, message=message, answers=answers,
                               progress=progress)
            except ValueError as exc:  # the Encryptor refusing a field: a message for people
                raise CliError(f"cannot build the envelope: {exc}") from None
            handle.flush()
            os.fsync(handle.fileno())
        publish_file(tmp, out)
    except BaseException:
        sources.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fingerprints = ", ".join(k.fingerprint for k in recipients)
    print(f"wrote {out} ({size} bytes, {len(files)} attachment(s), kind {kind})")
    print(f"sealed to {len(recipients)} key(s), fingerprints: {fingerprints}")
    return 0
