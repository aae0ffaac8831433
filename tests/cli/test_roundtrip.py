"""encrypt -> decrypt round trips, report.json / report.txt, --json, sidecars."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from client_cli.report import SOURCE_ID_LABEL
from tests.cli.conftest import KeyPair, Run, seal, tree

MESSAGE = "Someone took my passport.\nمرحبا — Olá\n"  # noqa: RUF001 - Arabic on purpose
ANSWERS = {"what": "theft", "where": {"city": "Lisboa"}, "when": ["2025-01-02"], "n": 3}


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    src = tmp_path / "src"
    src.mkdir()
    photo = src / "photo.jpg"
    photo.write_bytes(os.urandom(200_000))  # several 64 KiB chunks
    notes = src / "notes.txt"
    notes.write_bytes(b"written by hand\n")
    return [photo, notes]


@pytest.fixture
def envelope(tmp_path: Path, agency: KeyPair, files: list[Path], run: Run) -> Path:
    (tmp_path / "message.txt").write_text(MESSAGE, encoding="utf-8")
    (tmp_path / "answers.json").write_text(json.dumps(ANSWERS), encoding="utf-8")
    out = tmp_path / "inbox" / "r1.srdb"
    out.parent.mkdir()
    result = run("encrypt", "--to", agency.pub, "--message-file", tmp_path / "message.txt",
                 "--answers-file", tmp_path / "answers.json", "--language", "pt-BR",
                 *files, "--out", out)
    assert result.code == 0, result.err
    assert f"wrote {out}" in result.out
    return out


def _decrypt(run: Run, key: KeyPair, passphrase_file: Path, out: Path,
             *args: str | Path) -> tuple[int, str, str]:
    result = run("decrypt", "--key-file", key.key, "--passphrase-file", passphrase_file,
                 "--out", out, *args)
    return result.code, result.out, result.err


def test_round_trip(tmp_path: Path, envelope: Path, agency: KeyPair, files: list[Path],
                    passphrase_file: Path, run: Run) -> None:
    assert list(envelope.parent.iterdir()) == [envelope]  # no temporary file left
    code, out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", envelope)
    assert code == 0, err
    folder = tmp_path / "out" / "r1"
    assert str(folder) in out
    assert tree(tmp_path / "out") == ["r1", "r1/attachments", "r1/attachments/notes.txt",
                                      "r1/attachments/photo.jpg", "r1/report.json",
                                      "r1/report.txt"]
    for original in files:
        stored = folder / "attachments" / original.name
        assert stored.read_bytes() == original.read_bytes()
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    envelope_bytes = envelope.read_bytes()
    assert report["envelope"] == {"file": "r1.srdb", "size": len(envelope_bytes),
                                  "sha256": hashlib.sha256(envelope_bytes).hexdigest()}
    assert report["server"] is None
    assert (report["version"], report["kind"], report["language"]) == (1, "report", "pt-BR")
    assert report["message"] == MESSAGE
    assert report["answers"] == ANSWERS
    assert report["attachments"] == [
        {"name": f.name, "type": t, "size": f.stat().st_size,
         "sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "file": f"attachments/{f.name}"}
        for f, t in zip(files, ["image/jpeg", "text/plain"], strict=True)]

    text = (folder / "report.txt").read_text(encoding="utf-8")
    assert "Kind:              report" in text
    assert "Language:          pt-BR" in text
    assert SOURCE_ID_LABEL in text and "unknown" in text
    assert MESSAGE.strip() in text
    assert "where:\n    {\n      \"city\": \"Lisboa\"\n    }" in text
    assert "what: theft" in text
    for entry in report["attachments"]:
        assert entry["sha256"] in text
        assert f"stored as: {entry['file']}" in text
    assert "195.3 KiB (200000 bytes)" in text


def test_json_output_and_reply_kind(tmp_path: Path, agency: KeyPair, passphrase_file: Path,
                                    run: Run) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    assert run("encrypt", "--to", agency.pub, "--kind", "reply", "--out",
               inbox / "a.srdb").code == 0
    (inbox / "b.srdb").write_bytes(b"not an envelope at all")
    code, out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", "--json", inbox)
    assert code == 1
    assert err == ""
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"envelope": str(inbox / "a.srdb"), "ok": True, "out": str(tmp_path / "out" / "a"),
         "kind": "reply", "attachments": [], "source_id": None},
        {"envelope": str(inbox / "b.srdb"), "ok": False,
         "error": "this is not an envelope (wrong magic bytes)"},
    ]
    report = (tmp_path / "out" / "a" / "report.txt").read_text()
    assert report.startswith("Safe Report Drop Box: decrypted reply")


def test_several_recipients(tmp_path: Path, make_keys: Callable[..., KeyPair],
                            passphrase_file: Path, run: Run) -> None:
    main_key, backup = make_keys("main"), make_keys("backup")
    env = tmp_path / "two.srdb"
    result = run("encrypt", "--to", main_key.pub, "--to", backup.key, "--out", env)
    assert result.code == 0, result.err
    for key in (main_key, backup):
        code, _out, err = _decrypt(run, key, passphrase_file, tmp_path / key.key.stem, env)
        assert code == 0, err


def test_sidecar_is_picked_up(tmp_path: Path, envelope: Path, agency: KeyPair,
                              passphrase_file: Path, run: Run) -> None:
    meta: dict[str, object] = {
        "envelope_id": "e-123", "source_id": "K7P2-9XQ4-M3", "received_day": "2025-03-04",
        "recipient": "main", "sha256": hashlib.sha256(envelope.read_bytes()).hexdigest(),
        "size": envelope.stat().st_size}  # as fetch writes it
    (envelope.parent / "r1.meta.json").write_text(json.dumps(meta))
    # What else fetch leaves in an inbox: its lock file and a partial download.
    (envelope.parent / ".fetch.lock").write_text("")
    (envelope.parent / ".r2.srdb.part").write_bytes(b"partial")
    (envelope.parent / ".hidden.srdb").write_bytes(b"partial")
    code, out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", "--json",
                              envelope.parent)
    assert code == 0, err
    [line] = [json.loads(x) for x in out.splitlines()]  # the .meta.json is not an envelope
    assert line["source_id"] == "K7P2-9XQ4-M3"
    folder = tmp_path / "out" / "r1"
    assert json.loads((folder / "report.json").read_text())["server"] == meta
    text = (folder / "report.txt").read_text()
    assert f"{SOURCE_ID_LABEL}: K7P2-9XQ4-M3" in text
    assert "2025-03-04" in text and "e-123" in text


def test_sidecar_mismatch_is_an_error(tmp_path: Path, envelope: Path, agency: KeyPair,
                                      passphrase_file: Path, run: Run) -> None:
    meta = {"envelope_id": "e-1", "source_id": "S", "received_day": "2025-03-04",
            "recipient": "main", "sha256": "0" * 64}
    (envelope.parent / "r1.meta.json").write_text(json.dumps(meta))
    code, out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", envelope)
    assert code == 1
    assert out == ""
    assert err.startswith(f"error: {envelope}: ")
    assert "r1.meta.json records SHA-256 " + "0" * 64 in err
    assert tree(tmp_path / "out") == []


def test_sidecar_size_mismatch_is_an_error(tmp_path: Path, envelope: Path, agency: KeyPair,
                                           passphrase_file: Path, run: Run) -> None:
    meta = {"source_id": "S", "sha256": hashlib.sha256(envelope.read_bytes()).hexdigest(),
            "size": 12}
    (envelope.parent / "r1.meta.json").write_text(json.dumps(meta))
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", envelope)
    assert code == 1
    assert "records a size of 12 bytes" in err
    assert tree(tmp_path / "out") == []


@pytest.mark.parametrize("content", ["{not json", "[]", '{"source_id": "x"}',
                                     '{"sha256": "xyz"}'])
def test_bad_sidecar_is_an_error(tmp_path: Path, envelope: Path, agency: KeyPair,
                                 passphrase_file: Path, run: Run, content: str) -> None:
    (envelope.parent / "r1.meta.json").write_text(content)
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", envelope)
    assert code == 1
    assert "server metadata file" in err
    assert tree(tmp_path / "out") == []


def test_message_from_stdin_and_empty_attachment(tmp_path: Path, agency: KeyPair,
                                                 passphrase_file: Path, run: Run,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class FakeStdin:
        buffer = io.BytesIO("from stdin ✓".encode())

    monkeypatch.setattr(sys, "stdin", FakeStdin)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    env = tmp_path / "e.srdb"
    assert run("encrypt", "--to", agency.pub, "--message-file", "-", empty, empty,
               "--out", env).code == 0
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", env)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "e" / "report.json").read_text())
    assert report["message"] == "from stdin ✓"
    assert [a["file"] for a in report["attachments"]] == ["attachments/empty.bin",
                                                          "attachments/empty (2).bin"]
    assert (tmp_path / "out" / "e" / "attachments" / "empty (2).bin").read_bytes() == b""


def test_envelopes_written_by_seal_helper_decrypt(tmp_path: Path, agency: KeyPair,
                                                  passphrase_file: Path, run: Run) -> None:
    env = seal(tmp_path / "x.srdb", [agency.pub], [("a.txt", b"A")], message="hi")
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", env)
    assert code == 0, err
    assert (tmp_path / "out" / "x" / "attachments" / "a.txt").read_bytes() == b"A"
