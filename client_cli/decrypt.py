"""``dropbox-client decrypt``: open envelopes with the agency secret key, offline.

Plaintext is released only after the whole envelope authenticated (docs/PROTOCOL.md §6): each
envelope is decrypted into a hidden temporary folder next to its final one, which is renamed into
place only after :func:`dropbox_envelope.streams.decrypt` returned and every check passed, and
removed entirely on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dropbox_envelope.errors import PayloadCorrupted
from dropbox_envelope.keys import SecretKey
from dropbox_envelope.manifest import Manifest
from dropbox_envelope.streams import decrypt

from .errors import EXPECTED_ERRORS, CliError, describe_error, one_line
from .filenames import safe_name
from .fsutil import create_new, fsync_dir, read_json_object, refuse_existing, write_new_file
from .keyfiles import unlock_key_file
from .progress import Progress
from .report import render_json, render_text, report_document

__all__ = ["ENVELOPE_SUFFIX", "Outcome", "add_parser", "decrypt_envelope", "run"]

ENVELOPE_SUFFIX = ".srdb"
SIDECAR_SUFFIX = ".meta.json"
MAX_SIDECAR_BYTES = 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "decrypt", help="decrypt envelopes into report folders (offline)",
        description="Decrypt envelopes with the agency secret key. Each envelope X.srdb becomes "
                    "the folder DIR/X/ with report.txt, report.json and attachments/. A folder "
                    "argument means every *.srdb file in it. An envelope whose output folder "
                    "already exists is skipped; nothing is ever overwritten, and nothing from "
                    "an envelope that fails to authenticate is kept.")
    parser.add_argument("--key-file", metavar="K", type=Path, required=True,
                        help="the agency secret key file")
    parser.add_argument("--passphrase-file", metavar="F", type=Path,
                        help="read the passphrase from the first line of F "
                             "(default: ask on the terminal)")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="folder to write report folders into (created if missing)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per envelope on standard output")
    parser.add_argument("envelopes", metavar="ENVELOPE_OR_DIR", type=Path, nargs="+",
                        help="envelope files, or folders of *.srdb files "
                             "(hidden files are skipped)")
    parser.set_defaults(func=run)


@dataclass
class Outcome:
    """The result for one envelope."""

    envelope: Path
    ok: bool
    out: Path | None = None
    kind: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    source_id: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"envelope": str(self.envelope), "ok": False, "error": self.error}
        return {"envelope": str(self.envelope), "ok": True, "out": str(self.out),
                "kind": self.kind, "attachments": self.attachments,
                "source_id": self.source_id}


# --- reading ---------------------------------------------------------------------------------

class _HashingReader(io.BufferedReader):
    """A file reader that computes the SHA-256 and size of everything read through it."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__(raw)
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.sha256.update(data)
        self.count += len(data)
        return data


class _Sink:
    """Writes attachment ``i`` to ``attachments/.i.incoming`` (a name :func:`safe_name` never
    produces, since it strips leading dots) until the manifest gives it a name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: list[Path] = []
        self.received: list[tuple[int, str]] = []
        self._current: BinaryIO | None = None

    def open(self, index: int) -> BinaryIO:
        if index != len(self.paths) or self._current is not None:
            raise PayloadCorrupted("attachments arrived out of order")
        path = self.folder / f".{index}.incoming"
        self._current = create_new(path, 0o600)
        self.paths.append(path)
        return self._current

    def done(self, index: int, size: int, sha256: str) -> None:
        handle, self._current = self._current, None
        if handle is None or index != len(self.paths) - 1:
            raise PayloadCorrupted("attachments arrived out of order")
        with handle:
            handle.flush()
            os.fsync(handle.fileno())
            written = os.fstat(handle.fileno()).st_size
        if written != size:
            raise CliError(f"attachment {index + 1}: {written} bytes were written to disk but "
                           f"{size} were decrypted (is the disk full?)")
        self.received.append((size, sha256))

    def close(self) -> None:
        handle, self._current = self._current, None
        if handle is not None:
            handle.close()


def _envelope_stem(path: Path) -> str:
    name = path.name
    return name[:-len(ENVELOPE_SUFFIX)] if name.endswith(ENVELOPE_SUFFIX) else path.stem


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    """The server metadata written by ``fetch`` next to an envelope, if there is one."""
    try:
        doc = read_json_object(path, MAX_SIDECAR_BYTES, "the server metadata file")
    except FileNotFoundError:
        return None
    digest = doc.get("sha256")
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
        raise CliError(f"{path}: the server metadata file has no valid \"sha256\"")
    return doc


def _collect(arguments: list[Path]) -> list[Path]:
    envelopes: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            envelopes += sorted((p for p in argument.iterdir()
                                 if p.name.endswith(ENVELOPE_SUFFIX)
                                 and not p.name.startswith(".") and p.is_file()),
                                key=lambda p: p.name)
        else:
            envelopes.append(argument)  # a missing file is reported as that envelope's error
    return envelopes


# --- one envelope ----------------------------------------------------------------------------

def _remove_partial(folder: Path) -> None:
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        print(f"error: could not remove {folder}: {describe_error(exc)}. Delete it by hand: "
              "it holds unauthenticated plaintext.", file=sys.stderr)


def _store_attachments(manifest: Manifest, sink: _Sink) -> list[str]:
    """Give every provisional file its safe name; returns the names, in manifest order."""
    if len(sink.received) != len(manifest.attachments) or \
            len(sink.paths) != len(manifest.attachments):
        raise PayloadCorrupted("the manifest lists a different number of attachments than the "
                               "envelope carries")
    taken: set[str] = set()
    names: list[str] = []
    for attachment, provisional, (size, sha256) in zip(
            manifest.attachments, sink.paths, sink.received, strict=True):
        if attachment.size != size or attachment.sha256 != sha256:
            raise PayloadCorrupted(f"attachment {attachment.name!r} does not match its size or "
                                   "SHA-256 in the manifest")
        name = safe_name(attachment.name, taken)
        taken.add(name)
        final = sink.folder / name
        os.rename(provisional, final)  # inside our own fresh folder: names are unique
        if os.stat(final).st_size != attachment.size:
            raise CliError(f"{final}: the stored file's size changed on disk")
        names.append(name)
    fsync_dir(sink.folder)
    return names


def decrypt_envelope(envelope: Path, identities: list[SecretKey], out_dir: Path) -> Outcome:
    """Decrypt ``envelope`` into ``out_dir/<stem>/``; raises on any failure, leaving nothing."""
    stem = _envelope_stem(envelope)
    folder_name = safe_name(stem, set())
    final = out_dir / folder_name
    refuse_existing(final, " (skipping this envelope; move the folder away to decrypt it again)")
    sidecar_path = envelope.with_name(stem + SIDECAR_SUFFIX)
    sidecar = _read_sidecar(sidecar_path)

    partial = out_dir / f".{folder_name[:100]}.partial-{secrets.token_hex(8)}"
    os.mkdir(partial, 0o700)
    sink: _Sink | None = None
    try:
        attachments_dir = partial / "attachments"
        os.mkdir(attachments_dir, 0o700)
        sink = _Sink(attachments_dir)
        with _HashingReader(io.FileIO(envelope, "rb")) as reader:
            total = os.fstat(reader.fileno()).st_size
            with Progress(f"decrypting {envelope.name}", total) as progress:
                manifest = decrypt(reader, identities, sink, progress=progress)
            envelope_sha256 = reader.sha256.hexdigest()
            envelope_size = reader.count
        sink.close()
        if sidecar is not None and sidecar["sha256"].lower() != envelope_sha256:
            raise CliError(f"{sidecar_path} records SHA-256 {sidecar['sha256']} but the envelope "
                           f"file's is {envelope_sha256}: the envelope or its metadata file was "
                           "changed or mixed up")
        if sidecar is not None and sidecar.get("size", envelope_size) != envelope_size:
            raise CliError(f"{sidecar_path} records a size of {sidecar['size']} bytes but the "
                           f"envelope file has {envelope_size}")
        names = _store_attachments(manifest, sink)
        doc = report_document(
            manifest, names,
            {"file": os.fsencode(envelope.name).decode("utf-8", "replace"),
             "sha256": envelope_sha256, "size": envelope_size}, sidecar)
        write_new_file(partial / "report.json", render_json(doc))
        write_new_file(partial / "report.txt", render_text(doc).encode("utf-8"))
        fsync_dir(partial)
        refuse_existing(final, " (skipping this envelope)")
        os.rename(partial, final)
    except BaseException:
        if sink is not None:
            sink.close()
        _remove_partial(partial)
        raise
    fsync_dir(out_dir)  # the folder is final and authentic now: never removed after this

    source_id = sidecar.get("source_id") if sidecar is not None else None
    return Outcome(
        envelope=envelope, ok=True, out=final, kind=manifest.kind,
        attachments=[{"name": a["name"], "file": a["file"], "type": a["type"],
                      "size": a["size"], "sha256": a["sha256"]} for a in doc["attachments"]],
        source_id=source_id if isinstance(source_id, str) else None)


# --- the command -----------------------------------------------------------------------------

def _warn_about_leftovers(out_dir: Path) -> None:
    """A run killed outright (power loss, SIGKILL) cannot clean up after itself: say so."""
    for leftover in sorted(out_dir.glob(".*.partial-*")):
        print(f"warning: {one_line(str(leftover))} was left by an interrupted decrypt; it "
              "holds unauthenticated plaintext: delete it (unless another decrypt is running "
              "into the same folder right now)", file=sys.stderr)


def _failure(envelope: Path, exc: Exception) -> Outcome:
    if isinstance(exc, EXPECTED_ERRORS):
        message = describe_error(exc)
    else:
        if os.environ.get("SRDB_DEBUG") == "1":
            traceback.print_exc()
        message = one_line(f"unexpected error (please report this bug): "
                           f"{type(exc).__name__}: {exc}")
    # The envelope is named once, by the caller: drop it from the start of an OSError message.
    message = message.removeprefix(f"{one_line(str(envelope))}: ")
    return Outcome(envelope=envelope, ok=False, error=message)


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.to_json(), ensure_ascii=True), flush=True)
        return
    name = one_line(str(outcome.envelope))
    if not outcome.ok:
        print(f"error: {name}: {outcome.error}", file=sys.stderr, flush=True)
        return
    count = len(outcome.attachments)
    line = f"{name} -> {one_line(str(outcome.out))} ({outcome.kind}, {count} attachment(s)"
    if outcome.source_id:
        line += f", source ID {one_line(outcome.source_id)}"
    print(line + ")", flush=True)


def run(args: argparse.Namespace) -> int:
    key_file: Path = args.key_file
    out_dir: Path = args.out
    envelopes = _collect(args.envelopes)
    if not envelopes:
        raise CliError("no envelopes to decrypt (a folder argument means every *.srdb file "
                       "in it)")
    key = unlock_key_file(key_file, args.passphrase_file, kind="agency")
    if not isinstance(key, SecretKey):  # unreachable: the kind was checked
        raise CliError(f"{key_file} is not an agency secret key")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _warn_about_leftovers(out_dir)

    failures = 0
    for envelope in envelopes:
        try:
            outcome = decrypt_envelope(envelope, [key], out_dir)
        except Exception as exc:  # one bad envelope must not stop the others
            outcome = _failure(envelope, exc)
        failures += not outcome.ok
        _print_outcome(outcome, args.json)
    if failures and len(envelopes) > 1 and not args.json:
        print(f"{len(envelopes) - failures} of {len(envelopes)} envelope(s) decrypted; "
              f"{failures} failed", file=sys.stderr)
    return 1 if failures else 0
