"""A hostile sender controls every manifest field: names, message, answers, extra members."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.cli.conftest import KeyPair, Run, tree
from tests.cli.conftest import seal_ascii_manifest as seal
from tests.cli.test_filenames import assert_safe

HOSTILE = [
    "../../etc/passwd",
    "/etc/hosts",
    "..",
    ".",
    ".bashrc",
    "CON.txt",
    "nul",
    "COM1.tar.gz",
    "a/b\\c",
    "C:\\Windows\\system32\\evil.dll",
    "nul\x00byte.txt",
    "line\nbreak.txt",
    "carriage\rreturn",
    "\x1b[31mred\x1b[0m.txt",
    "\u202egnp.exe",
    "Z" * 255,
    "é" * 251 + ".pdf",
    "dup.txt",
    "dup.txt",
    "DUP.TXT",
    "report.json",
    "report.txt",
    "envelope.json",
    "attachments",
    "trailing. . ",
    '<>:"|?*',
    "-rf",
    ".0.incoming",
]


def test_hostile_attachment_names_land_inside_the_folder(
        tmp_path: Path, agency: KeyPair, passphrase_file: Path, run: Run) -> None:
    attachments = [(name, f"content {i}".encode()) for i, name in enumerate(HOSTILE)]
    env = seal(tmp_path / "inbox" / "evil.srdb", [agency.pub], attachments,
               message="see attachments")
    out = tmp_path / "out"
    result = run("decrypt", "--key-file", agency.key, "--passphrase-file", passphrase_file,
                 "--out", out, "--json", env)
    assert result.code == 0, result.err
    [line] = [json.loads(x) for x in result.out.splitlines()]

    folder = out / "evil"
    # Only our own files at the top; every attachment directly in attachments/.
    assert sorted(os.listdir(folder)) == ["attachments", "report.json", "report.txt"]
    stored = sorted(os.listdir(folder / "attachments"))
    assert len(stored) == len(HOSTILE)
    taken: set[str] = set()
    for name in stored:
        path = folder / "attachments" / name
        assert path.is_file() and not path.is_symlink()
        assert path.resolve().parent == (folder / "attachments").resolve()
        assert_safe(name, set())
        taken.add(name.casefold())
    assert len(taken) == len(stored)  # unique even on case-insensitive file systems
    # Nothing escaped the output folder.
    assert sorted(os.listdir(tmp_path)) == ["inbox", "keys", "out", "passphrase.txt"]
    assert tree(out) == ["evil"] + [f"evil/{p}" for p in tree(folder)]

    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert [a["name"] for a in report["attachments"]] == [n for n, _ in attachments]
    for (_name, data), entry, json_entry in zip(attachments, report["attachments"],
                                                line["attachments"], strict=True):
        assert (folder / entry["file"]).read_bytes() == data
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert json_entry["file"] == entry["file"]
    files = [a["file"] for a in report["attachments"]]
    assert files[0] == "attachments/_._etc_passwd"
    assert files[5] == "attachments/_CON.txt"
    assert files[17:20] == ["attachments/dup.txt", "attachments/dup (2).txt",
                            "attachments/DUP (3).TXT"]
    assert files[20] == "attachments/report (2).json"

    text = (folder / "report.txt").read_text(encoding="utf-8")
    assert "\x1b" not in text and "\r" not in text and "\x00" not in text
    assert "\u202e" not in text
    assert "\\x1b[31mred\\x1b[0m.txt" in text


def test_hostile_message_answers_and_extra_fields(tmp_path: Path, agency: KeyPair,
                                                  passphrase_file: Path, run: Run) -> None:
    message = "hello\x1b]0;pwned\x07 world\r\nsecond\rthird\x9b31m \u202eevil\u202c\ttab"
    answers = {"q\x1b[2J": "a\x00b", "nested": {"x": ["\u2028"]}}
    spoof = {"source_id": "FAKE-SOURCE", "sha256": "0" * 64}
    env = seal(tmp_path / "m.srdb", [agency.pub], message=message, answers=answers,
               extra={"server": spoof, "envelope": "fake", "note": "kept"})
    out = tmp_path / "out"
    result = run("decrypt", "--key-file", agency.key, "--passphrase-file", passphrase_file,
                 "--out", out, "--json", env)
    assert result.code == 0, result.err
    [line] = [json.loads(x) for x in result.out.splitlines()]
    assert line["source_id"] is None  # the sender cannot pose as the server

    raw_json = (out / "m" / "report.json").read_bytes().decode("utf-8")
    for char in "\x1b\x07\x00\x9b\r\u202e\u2028":
        assert char not in raw_json
    report = json.loads(raw_json)
    assert report["message"] == message  # escaped, not altered
    assert report["answers"] == answers
    assert report["server"] is None
    assert report["envelope"]["file"] == "m.srdb"
    assert report["manifest_extra"] == {"server": spoof, "envelope": "fake"}
    assert report["note"] == "kept"  # unknown manifest members are preserved

    text = (out / "m" / "report.txt").read_text(encoding="utf-8")
    for char in "\x1b\x07\x00\x9b\r\u202e\u2028":
        assert char not in text
    assert "FAKE-SOURCE" not in text.split("Answers")[0]
    assert "hello\\x1b]0;pwned\\x07 world\nsecond\nthird\\x9b31m \\u202eevil" in text
    assert "\ttab" in text  # tabs are harmless and kept


def test_lone_surrogates_in_the_manifest_are_refused(tmp_path: Path, agency: KeyPair,
                                                     passphrase_file: Path, run: Run) -> None:
    """docs/PROTOCOL.md §4.1: no lone surrogates, even as JSON escapes (a browser's
    JSON.stringify can produce them). The CLI reports it per file and writes nothing."""
    env = seal(tmp_path / "inbox" / "half.srdb", [agency.pub], [("\ud800.txt", b"x")],
               message="half an emoji: \ud83d", lenient=True)
    out = tmp_path / "out"
    result = run("decrypt", "--key-file", agency.key, "--passphrase-file", passphrase_file,
                 "--out", out, env)
    assert result.code == 1
    assert "invalid Unicode" in result.err
    assert not out.exists() or tree(out) == []
