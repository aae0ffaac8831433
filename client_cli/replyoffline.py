"""``reply --prepare`` (offline) and ``reply --send`` (online): replies without the agency key
ever touching a networked machine.

The split:

1. online: ``fetch`` downloads envelopes and records, in each envelope's sidecar, the source's
   reply *public* key (``source_public_key``), which ``decrypt`` copies into report.json;
2. offline: ``reply --prepare --source ID --inbox DIR --out REPLY.srdb`` seals the reply to that
   public key and writes ``REPLY.srdb`` and ``REPLY.srdb.json`` (the source ID, the envelope's
   size and SHA-256, the day and the key's fingerprint; never any of the reply's text);
3. online: ``reply --send REPLY.srdb --server URL --identity STAFF_KEY`` checks the file against
   its sidecar and uploads it, then writes ``REPLY.srdb.sent.json`` so that it is not sent twice.

Sealing a reply needs only the source's public key, so neither step needs the agency secret
key; the staff signing key is used only online. A reply is exactly as confidential as the
server's copy of the source key is honest, as with the online ``reply``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dropbox_envelope.errors import EnvelopeError, InvalidKey
from dropbox_envelope.header import HeaderParser
from dropbox_envelope.keys import PublicKey, StaffSecretKey

from . import tor
from .errors import CliError, describe_error, one_line
from .fsutil import fsync_dir, read_json_object, refuse_existing, write_new_file
from .keyfiles import load_encryption_key
from .replytemplates import load_templates
from .reportfolders import REPORT_NAME
from .staffapi import (
    MAX_REPLY_BYTES,
    ConnectorFactory,
    StaffClient,
    is_id,
    load_staff_identity,
)

__all__ = ["add_arguments", "find_source_key", "mode_of", "prepare", "run",
           "send_prepared"]

SIDECAR_SUFFIX = ".json"
SENT_SUFFIX = ".sent.json"
FORMAT = "srdb-prepared-reply-1"
MAX_SIDECAR_BYTES = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("offline replies and templates")
    modes = group.add_mutually_exclusive_group()
    modes.add_argument("--prepare", action="store_true",
                       help="seal the reply offline into --out (no server, no agency key)")
    modes.add_argument("--send", metavar="REPLY", type=Path,
                       help="upload a reply made with --prepare (online; needs --server and "
                            "--identity)")
    modes.add_argument("--list-templates", action="store_true",
                       help="list the canned reply templates and their languages")
    group.add_argument("--out", metavar="REPLY", type=Path,
                       help="with --prepare: the reply file to write (e.g. reply.srdb)")
    group.add_argument("--inbox", metavar="DIR", type=Path, action="append",
                       help="with --prepare: a fetch inbox or folder of decrypted reports "
                            "holding the source's key as recorded by fetch (repeatable)")
    group.add_argument("--source-key", metavar="PUBKEY_FILE", type=Path,
                       help="with --prepare: the source's reply public key as a .pub file "
                            "(from `dropbox-client source-key`), instead of --inbox")
    group.add_argument("--template", metavar="NAME",
                       help="use a canned reply instead of --message-file")
    group.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                       dest="template_values",
                       help="fill a template placeholder, e.g. --set organisation=GLAA")


def mode_of(args: argparse.Namespace) -> str:
    if args.list_templates:
        return "list-templates"
    if args.prepare:
        return "prepare"
    if args.send is not None:
        return "send"
    return "online"


def usage_error(args: argparse.Namespace, message: str) -> int:
    """Report a usage error the way argparse does (usage line, exit status 2)."""
    parser: argparse.ArgumentParser = args.reply_parser
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def missing(args: argparse.Namespace, names: Sequence[str]) -> str:
    absent = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    return f"the following arguments are required: {', '.join(absent)}" if absent else ""


def message_problem(args: argparse.Namespace) -> str:
    if args.message_file is not None and args.template is not None:
        return "give either --message-file or --template, not both"
    if args.message_file is None and args.template is None:
        return "the following arguments are required: --message-file (or --template)"
    if args.template_values and args.template is None:
        return "--set only fills a --template"
    return ""


def _template_values(items: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip():
            raise CliError(f"--set {item!r}: write NAME=VALUE, e.g. --set organisation=GLAA")
        values[name] = value
    return values


def message_and_language(args: argparse.Namespace) -> tuple[str, str]:
    """The reply text and its language, from --message-file or --template."""
    from .reply import _read_message  # the online command's reader; imported late (cycle)

    if args.template is None:
        return _read_message(args.message_file), args.language
    template = load_templates().get(args.template)
    return template.render(args.language or "en", _template_values(args.template_values))


# --- the source's key ------------------------------------------------------------------------

def _json_file(path: Path, limit: int) -> dict[str, Any] | None:
    try:
        return read_json_object(path, limit)
    except (OSError, CliError):
        return None


def _recorded_keys(folder: Path, source_id: str) -> dict[str, list[Path]]:
    """Every source_public_key recorded for ``source_id`` in ``folder``: fetch sidecars
    (``*.meta.json``), report folders (``*/report.json``, ``reports/*/report.json``), or the
    folder itself if it is a report folder."""
    candidates: list[tuple[Path, str]] = []
    if folder.is_dir():
        candidates += [(p, "sidecar") for p in sorted(folder.glob("*.meta.json"))]
        for pattern in ("report.json", f"*/{REPORT_NAME}", f"reports/*/{REPORT_NAME}"):
            candidates += [(p, "report") for p in sorted(folder.glob(pattern))]
    found: dict[str, list[Path]] = {}
    for path, kind in candidates:
        doc = _json_file(path, 64 * 1024 * 1024 if kind == "report" else MAX_SIDECAR_BYTES)
        if not isinstance(doc, dict):
            continue
        facts = doc.get("server") if kind == "report" else doc
        if not isinstance(facts, dict) or facts.get("source_id") != source_id:
            continue
        key = facts.get("source_public_key")
        if isinstance(key, str):
            found.setdefault(key, []).append(path)
    return found


def find_source_key(source_id: str, folders: Sequence[Path]) -> PublicKey:
    """The source's reply key as recorded by ``fetch``; refuses if two records disagree."""
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for key, paths in _recorded_keys(folder, source_id).items():
            found.setdefault(key, []).extend(paths)
    if not found:
        raise CliError(f"no reply key for source {source_id} is recorded in "
                       f"{', '.join(one_line(str(f)) for f in folders)}. Fetch with a "
                       "dropbox-client that records it, or get it online with "
                       "`dropbox-client source-key` and give --source-key FILE")
    if len(found) > 1:
        raise CliError(f"different reply keys are recorded for source {source_id} (in "
                       f"{', '.join(one_line(str(p[0])) for p in found.values())}): the server "
                       "gave different keys at different times. Do not reply until you know "
                       "why.")
    [(text, paths)] = found.items()
    try:
        return PublicKey.decode(text)
    except InvalidKey as exc:
        raise CliError(f"{one_line(str(paths[0]))}: the recorded source key is malformed: "
                       f"{exc}") from None


# --- prepare ---------------------------------------------------------------------------------

def sidecar_path(envelope: Path) -> Path:
    return envelope.with_name(envelope.name + SIDECAR_SUFFIX)


def prepare(source_id: str, public_key: PublicKey, message: str, out: Path, *,
            language: str = "", attachments: Sequence[Path] = (),
            today: dt.date | None = None) -> dict[str, Any]:
    """Seal a reply offline into ``out`` and write its sidecar; returns the sidecar."""
    from .reply import build_reply  # imported late: reply imports this module

    sidecar = sidecar_path(out)
    refuse_existing(out)
    refuse_existing(sidecar)
    envelope = build_reply(public_key, message, language=language, attachments=attachments)
    record = {"format": FORMAT, "source_id": source_id,
              "sealed_to_fingerprint": public_key.fingerprint,
              "size": len(envelope), "sha256": hashlib.sha256(envelope).hexdigest(),
              "prepared_day": (today or dt.datetime.now(dt.UTC).date()).isoformat()}
    write_new_file(out, envelope)
    try:
        write_new_file(sidecar, (json.dumps(record, indent=2) + "\n").encode("ascii"))
    except BaseException:
        out.unlink()
        raise
    fsync_dir(out.parent)
    return record


# --- send ------------------------------------------------------------------------------------

def check_prepared(envelope_path: Path) -> tuple[str, bytes]:
    """(source id, envelope bytes) of a prepared reply, after checking it against its sidecar
    and that it is an envelope sealed to exactly one key."""
    sidecar = sidecar_path(envelope_path)
    doc = _json_file(sidecar, MAX_SIDECAR_BYTES)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CliError(f"{sidecar}: missing or not a prepared-reply file; make the reply with "
                       "`dropbox-client reply --prepare`")
    source_id = doc.get("source_id")
    if not isinstance(source_id, str) or not is_id(source_id):
        raise CliError(f"{sidecar}: no valid source ID")
    if Path(str(envelope_path) + SENT_SUFFIX).exists():
        raise CliError(f"{envelope_path} was already sent (see {envelope_path}{SENT_SUFFIX})")
    with open(envelope_path, "rb") as handle:
        data = handle.read(MAX_REPLY_BYTES + 1)
    if len(data) > MAX_REPLY_BYTES:
        raise CliError(f"{envelope_path}: larger than the {MAX_REPLY_BYTES} bytes a reply may "
                       "have")
    if (len(data), hashlib.sha256(data).hexdigest()) != (doc.get("size"), doc.get("sha256")):
        raise CliError(f"{envelope_path} does not match the size and SHA-256 in {sidecar}: "
                       "it was changed or mixed up after it was prepared")
    try:
        header, _rest = HeaderParser().feed(data)
    except EnvelopeError as exc:
        raise CliError(f"{envelope_path}: not a reply envelope ({exc})") from None
    if header is None or len(header.stanzas) != 1:
        raise CliError(f"{envelope_path}: a reply is sealed to exactly one key (the "
                       "source's); this file is not such an envelope")
    return source_id, data


def send_prepared(server_url: str, key: StaffSecretKey, envelope_path: Path, *,
                  connector: ConnectorFactory | None = None,
                  today: dt.date | None = None) -> tuple[str, str]:
    """Upload a prepared reply; returns (source id, reply id) and records the sending."""
    source_id, data = check_prepared(envelope_path)

    async def main() -> str:
        async with StaffClient(server_url, key, connector=connector) as api:
            return await api.send_reply(source_id, data)

    reply_id = asyncio.run(main())
    record = {"reply_id": reply_id, "source_id": source_id,
              "sent_day": (today or dt.datetime.now(dt.UTC).date()).isoformat()}
    try:
        write_new_file(Path(str(envelope_path) + SENT_SUFFIX),
                       (json.dumps(record, indent=2) + "\n").encode("ascii"))
    except OSError as exc:
        raise CliError(f"the reply was stored (reply ID {reply_id}), but recording that it "
                       f"was sent failed: {describe_error(exc)}. Do not send it again.") from None
    return source_id, reply_id


# --- the modes -------------------------------------------------------------------------------

def _run_prepare(args: argparse.Namespace) -> int:
    online = [f"--{n}" for n in ("server", "identity") if getattr(args, n) is not None]
    if online:
        return usage_error(args, f"--prepare works offline; {', '.join(online)} is not used")
    problem = missing(args, ("source", "out")) or message_problem(args)
    if not problem and args.inbox is None and args.source_key is None:
        problem = "--prepare needs --inbox DIR (where fetch recorded the source's key) or " \
                  "--source-key FILE"
    if problem:
        return usage_error(args, problem)
    if not is_id(args.source):
        raise CliError(f"--source {args.source!r} is not a source ID (32 lowercase hex "
                       "digits, as shown in report.txt)")
    message, language = message_and_language(args)
    for path in args.files:
        if not path.is_file():
            raise CliError(f"{path}: not a file")
    keys = []
    if args.source_key is not None:
        keys.append(load_encryption_key(args.source_key))
    if args.inbox is not None:
        keys.append(find_source_key(args.source, args.inbox))
    if len(set(keys)) != 1:
        raise CliError("--source-key and the key recorded in --inbox differ; do not reply "
                       "until you know why")
    record = prepare(args.source, keys[0], message, args.out, language=language,
                     attachments=args.files)
    print(f"prepared a reply for source {args.source} ({record['size']} bytes, sealed to the "
          f"key with fingerprint {record['sealed_to_fingerprint']})")
    print(f"carry {one_line(str(args.out))} and {one_line(str(sidecar_path(args.out)))} to the "
          "online machine and run: dropbox-client reply --send "
          f"{one_line(str(args.out))} --server URL --identity STAFF_KEY")
    return 0


def _run_send(args: argparse.Namespace) -> int:
    extra = [f"--{n.replace('_', '-')}" for n in ("source", "message_file", "template", "out",
                                                   "inbox", "source_key")
             if getattr(args, n) is not None] + (["FILE"] if args.files else [])
    if extra:
        return usage_error(args, f"--send uploads a prepared reply as it is; "
                                 f"{', '.join(extra)} is not used")
    problem = missing(args, ("server", "identity"))
    if problem:
        return usage_error(args, problem)
    check_prepared(args.send)  # before asking for the passphrase
    connector = tor.connector_from_args(args)
    key = load_staff_identity(args.identity, args.passphrase_file)
    source_id, reply_id = send_prepared(args.server, key, args.send, connector=connector)
    print(f"reply stored for source {source_id}; reply ID:", file=sys.stderr)
    print(reply_id, flush=True)
    return 0


def run(args: argparse.Namespace, mode: str) -> int:
    if mode == "list-templates":
        print(load_templates().listing())
        return 0
    if mode == "prepare":
        return _run_prepare(args)
    return _run_send(args)
