"""``dropbox-client reply``: seal a reply to a source's reply key and store it on the server.

Two steps, kept apart so that an offline workflow (prepare the envelope on the offline machine,
send it from an online one) can reuse them: :func:`build_reply` is pure sealing with a known
public key; :func:`send_reply` only moves the finished bytes.

The source's reply key comes from the server (it is derived from the source's return code and
stored there when the source first submitted), so a reply is exactly as confidential as that
server's copy of the key is honest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path

from dropbox_envelope.errors import LimitExceeded
from dropbox_envelope.keys import PublicKey, StaffSecretKey
from dropbox_envelope.streams import AttachmentSource, encrypt

from . import replyoffline as offline
from . import tor
from .errors import CliError
from .staffapi import (
    MAX_REPLY_BYTES,
    ConnectorFactory,
    StaffClient,
    is_id,
    load_staff_identity,
)

__all__ = ["build_reply", "register", "reply", "run", "send_reply"]

MAX_MESSAGE_FILE_BYTES = 4 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reply", help="send an encrypted reply to a source",
        description="Seal a reply (a message and optional files) to the source's reply key, "
                    "which only the source's return code opens, and store it on the server "
                    f"for the source to read. A reply envelope is at most {MAX_REPLY_BYTES} "
                    "bytes. With --prepare, the reply is sealed offline into a file (the "
                    "source's key comes from what fetch recorded); --send uploads that file "
                    "from the online machine.")
    # The connection options of add_connection_arguments, but optional: --prepare and
    # --list-templates work offline, and run() asks for them in the other modes.
    parser.add_argument("--server", metavar="URL",
                        help="the staff API address, e.g. http://xxxxxxxx.onion/")
    parser.add_argument("--identity", metavar="STAFF_KEY", type=Path,
                        help="your staff signing secret key file (keygen --kind staff)")
    parser.add_argument("--passphrase-file", metavar="F", type=Path,
                        help="read the passphrase from the first line of F "
                             "(default: ask on the terminal)")
    tor.add_arguments(parser)
    parser.add_argument("--source", metavar="ID",
                        help="the source ID (shown in the decrypted report's report.txt)")
    parser.add_argument("--message-file", metavar="F", type=Path,
                        help="the reply text (UTF-8); '-' reads standard input")
    parser.add_argument("--language", metavar="LANG", default="",
                        help="language tag of the reply, e.g. en or fr (with --template: "
                             "the template's language, default en)")
    parser.add_argument("files", metavar="FILE", type=Path, nargs="*",
                        help="files to attach")
    offline.add_arguments(parser)
    parser.set_defaults(func=run, reply_parser=parser)


class _BoundedBuffer:
    """Collects the envelope in memory, refusing to grow past the server's limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()

    def write(self, data: bytes, /) -> int:
        if len(self._data) + len(data) > self._limit:
            raise CliError(f"the reply would be larger than {self._limit} bytes, the most the "
                           "server accepts; send fewer or smaller files")
        self._data += data
        return len(data)

    def getvalue(self) -> bytes:
        return bytes(self._data)


def build_reply(public_key: PublicKey, message: str, *, language: str = "",
                attachments: Sequence[Path] = (), limit: int = MAX_REPLY_BYTES) -> bytes:
    """A reply envelope sealed to ``public_key`` alone (offline: no network)."""
    if not message.strip() and not attachments:
        raise CliError("the reply is empty: give a message file with some text, or files")
    total = sum(path.stat().st_size for path in attachments)
    if total > limit:
        raise CliError(f"the attached files add up to {total} bytes; a reply is at most "
                       f"{limit} bytes")
    out = _BoundedBuffer(limit)
    with contextlib.ExitStack() as stack:
        sources = [AttachmentSource(path.name,
                                    mimetypes.guess_type(path.name)[0] or
                                    "application/octet-stream",
                                    stack.enter_context(open(path, "rb")))
                   for path in attachments]
        try:
            encrypt(out, [public_key], attachments=sources, kind="reply", language=language,
                    message=message)
        except (LimitExceeded, ValueError) as exc:
            raise CliError(f"cannot seal this reply: {exc}") from None
    return out.getvalue()


async def send_reply(api: StaffClient, source_id: str, envelope: bytes) -> str:
    """Store a finished reply envelope for ``source_id``; returns the reply id."""
    return await api.send_reply(source_id, envelope)


def reply(server_url: str, key: StaffSecretKey, source_id: str, message: str, *,
          language: str = "", attachments: Sequence[Path] = (),
          connector: ConnectorFactory | None = None) -> tuple[str, int]:
    """Look up the source's reply key, seal the reply, send it; (reply id, envelope bytes)."""
    _check_source_id(source_id)

    async def main() -> tuple[str, int]:
        async with StaffClient(server_url, key, connector=connector) as api:
            source = await api.source(source_id)
            # Sealing is CPU work on at most 8 MiB: a thread keeps the connection responsive.
            envelope = await asyncio.to_thread(build_reply, source.public_key, message,
                                               language=language, attachments=attachments)
            return await send_reply(api, source_id, envelope), len(envelope)

    return asyncio.run(main())


def _read_message(path: Path) -> str:
    if str(path) == "-":
        data = sys.stdin.buffer.read(MAX_MESSAGE_FILE_BYTES + 1)
    else:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MESSAGE_FILE_BYTES + 1)
    if len(data) > MAX_MESSAGE_FILE_BYTES:
        raise CliError(f"{path}: the message file is too large for a reply")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: the message file is not UTF-8 text") from None


def _check_source_id(source_id: str) -> None:
    if not is_id(source_id):
        raise CliError(f"--source {source_id!r} is not a source ID (32 lowercase hex digits, "
                       "as shown in report.txt)")


def run(args: argparse.Namespace) -> int:
    mode = offline.mode_of(args)
    if mode != "online":
        return offline.run(args, mode)
    problem = offline.missing(args, ("server", "identity", "source")) or \
        offline.message_problem(args)
    if problem:
        return offline.usage_error(args, problem)
    _check_source_id(args.source)  # before asking for the passphrase
    message, language = offline.message_and_language(args)
    for path in args.files:
        if not path.is_file():
            raise CliError(f"{path}: not a file")
    connector = tor.connector_from_args(args)
    key = load_staff_identity(args.identity, args.passphrase_file)
    reply_id, size = reply(args.server, key, args.source, message, language=language,
                           attachments=args.files, connector=connector)
    print(f"reply stored for source {args.source} ({size} bytes); reply ID:", file=sys.stderr)
    print(reply_id, flush=True)
    return 0
