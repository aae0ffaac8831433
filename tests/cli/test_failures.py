"""Failures: corrupted envelopes, wrong keys and passphrases, refusals. Nothing partial stays."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from client_cli import decrypt as decrypt_module
from client_cli.errors import CliError
from client_cli.fsutil import read_json_object
from tests.cli.conftest import KeyPair, Run, seal, tree

BIG = 300_000  # several 64 KiB chunks: plaintext reaches the disk before the corruption


def _decrypt(run: Run, key: KeyPair, passphrase_file: Path, out: Path, *args: str | Path,
             ) -> tuple[int, str, str]:
    result = run("decrypt", "--key-file", key.key, "--passphrase-file", passphrase_file,
                 "--out", out, *args)
    return result.code, result.out, result.err


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip-late", "flip-header", "truncate", "append"])
def test_folder_with_one_corrupted_envelope(tmp_path: Path, agency: KeyPair,
                                            passphrase_file: Path, run: Run,
                                            monkeypatch: pytest.MonkeyPatch,
                                            damage: str) -> None:
    inbox = tmp_path / "inbox"
    payloads = {name: os.urandom(BIG) for name in ("a", "b", "c")}
    for name, data in payloads.items():
        seal(inbox / f"{name}.srdb", [agency.pub], [(f"{name}.bin", data)], message=name)
    (inbox / "ignored.txt").write_text("not an envelope")
    bad = inbox / "b.srdb"
    size = bad.stat().st_size
    if damage == "flip-late":
        _flip(bad, size - 40)  # inside the final chunk, after the attachment's bytes
    elif damage == "flip-header":
        _flip(bad, 20)
    elif damage == "truncate":
        os.truncate(bad, size - 70_000)
    else:
        bad.write_bytes(bad.read_bytes() + b"\x00")

    # Record what the provisional folder held when the stream ended, to prove it was removed.
    seen: list[list[str]] = []
    original_done = decrypt_module._Sink.done

    def spying_done(self: decrypt_module._Sink, index: int, size: int, sha256: str) -> None:
        original_done(self, index, size, sha256)
        seen.append(sorted(p.name for p in self.folder.iterdir()))

    monkeypatch.setattr(decrypt_module._Sink, "done", spying_done)

    out = tmp_path / "out"
    code, stdout, err = _decrypt(run, agency, passphrase_file, out, inbox)
    assert code == 1
    assert f"{inbox / 'a.srdb'} -> {out / 'a'}" in stdout
    assert f"{inbox / 'c.srdb'} -> {out / 'c'}" in stdout
    assert err.startswith(f"error: {bad}: ")
    assert "Traceback" not in err
    assert "2 of 3 envelope(s) decrypted; 1 failed" in err
    assert sorted(os.listdir(out)) == ["a", "c"]  # no "b", no hidden .partial folder
    for name in ("a", "c"):
        assert (out / name / "attachments" / f"{name}.bin").read_bytes() == payloads[name]
    if damage in ("flip-late", "append"):
        assert [".1.incoming"] not in seen  # (sanity: names are per-index)
        assert [".0.incoming"] in seen  # b's plaintext was on disk provisionally...
    assert not list(tmp_path.rglob("*.partial-*"))  # ...and is gone


def test_failure_after_attachments_were_stored_removes_everything(
        tmp_path: Path, agency: KeyPair, passphrase_file: Path, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = seal(tmp_path / "x.srdb", [agency.pub], [("a.txt", b"A" * BIG), ("b.txt", b"B")])

    def broken(doc: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decrypt_module, "render_text", broken)
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", env)
    assert code == 1
    assert err.startswith(f"error: {env}: No space left on device")
    assert tree(tmp_path / "out") == []


def test_wrong_passphrase(tmp_path: Path, agency: KeyPair, run: Run) -> None:
    env = seal(tmp_path / "x.srdb", [agency.pub], [("a.txt", b"A")])
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    code, out, err = _decrypt(run, agency, wrong, tmp_path / "out", env)
    assert code == 1
    assert out == ""
    assert err.startswith("error: The passphrase does not unlock this secret key file")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_not_for_me(tmp_path: Path, make_keys: Callable[..., KeyPair], passphrase_file: Path,
                    run: Run) -> None:
    ours, theirs = make_keys("ours"), make_keys("theirs")
    env = seal(tmp_path / "x.srdb", [theirs.pub], [("a.txt", b"A")])
    code, _out, err = _decrypt(run, ours, passphrase_file, tmp_path / "out", env)
    assert code == 1
    assert err.startswith(f"error: {env}: None of the given secret keys can open this envelope")
    assert tree(tmp_path / "out") == []


def test_staff_key_cannot_decrypt(tmp_path: Path, make_keys: Callable[..., KeyPair],
                                  passphrase_file: Path, run: Run) -> None:
    agency, staff = make_keys("agency"), make_keys("staff", "staff")
    env = seal(tmp_path / "x.srdb", [agency.pub])
    code, _out, err = _decrypt(run, staff, passphrase_file, tmp_path / "out", env)
    assert code == 1
    assert "is a staff signing key; this needs an agency encryption key" in err


def test_existing_output_folder_is_never_overwritten(tmp_path: Path, agency: KeyPair,
                                                     passphrase_file: Path, run: Run) -> None:
    inbox = tmp_path / "inbox"
    seal(inbox / "a.srdb", [agency.pub], [("a.txt", b"new")])
    seal(inbox / "b.srdb", [agency.pub], [("b.txt", b"B")])
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "mine.txt").write_text("keep me")
    code, stdout, err = _decrypt(run, agency, passphrase_file, out, inbox)
    assert code == 1
    assert "already exists" in err and str(out / "a") in err
    assert f"-> {out / 'b'}" in stdout  # the other one still decrypts
    assert tree(out / "a") == ["mine.txt"]
    # An empty existing folder is refused too (a rename would silently replace it).
    (out / "c").mkdir()
    seal(inbox / "c.srdb", [agency.pub])
    code, _stdout, err = _decrypt(run, agency, passphrase_file, out, inbox / "c.srdb")
    assert code == 1 and "already exists" in err
    # Decrypting the same folder again: everything refused, nothing changes.
    before = tree(out)
    code, _stdout, _err = _decrypt(run, agency, passphrase_file, out, inbox)
    assert code == 1
    assert tree(out) == before


def test_missing_inputs(tmp_path: Path, agency: KeyPair, passphrase_file: Path,
                        run: Run) -> None:
    env = seal(tmp_path / "x.srdb", [agency.pub])
    code, stdout, err = _decrypt(run, agency, passphrase_file, tmp_path / "out",
                                 tmp_path / "nope.srdb", env)
    assert code == 1
    assert err.startswith(f"error: {tmp_path / 'nope.srdb'}: No such file or directory")
    assert f"-> {tmp_path / 'out' / 'x'}" in stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _stdout, err = _decrypt(run, agency, passphrase_file, tmp_path / "out2", empty)
    assert code == 1 and err.startswith("error: no envelopes to decrypt")

    result = run("decrypt", "--key-file", tmp_path / "missing.key", "--passphrase-file",
                 passphrase_file, "--out", tmp_path / "o", env)
    assert result.code == 1
    assert result.err == f"error: {tmp_path / 'missing.key'}: No such file or directory\n"

    result = run("decrypt", "--key-file", agency.pub, "--passphrase-file", passphrase_file,
                 "--out", tmp_path / "o", env)
    assert result.code == 1 and "secret key file" in result.err


# --- encrypt refusals --------------------------------------------------------------------------

def test_encrypt_refusals(tmp_path: Path, make_keys: Callable[..., KeyPair], run: Run) -> None:
    agency, staff = make_keys("agency"), make_keys("staff", "staff")
    outdir = tmp_path / "o"
    outdir.mkdir()
    existing = outdir / "exists.srdb"
    existing.write_bytes(b"keep")
    doc = tmp_path / "doc.txt"
    doc.write_text("x")

    def refused(*args: str | Path) -> str:
        result = run("encrypt", *args)
        assert result.code == 1, result
        assert result.err.startswith("error: ") and result.err.count("\n") == 1
        return result.err

    assert "already exists" in refused("--to", agency.pub, "--out", existing)
    assert existing.read_bytes() == b"keep"
    assert "staff signing key" in refused("--to", staff.pub, "--out", outdir / "a.srdb")
    assert "same key" in refused("--to", agency.pub, "--to", agency.key,
                                 "--out", outdir / "a.srdb")
    assert "No such file" in refused("--to", agency.pub, doc, tmp_path / "missing.jpg",
                                     "--out", outdir / "a.srdb")
    assert "not a regular file" in refused("--to", agency.pub, tmp_path,
                                           "--out", outdir / "a.srdb")
    bad_json = tmp_path / "answers.json"
    bad_json.write_text("{oops")
    assert "not a valid JSON" in refused("--to", agency.pub, "--answers-file", bad_json,
                                         "--out", outdir / "a.srdb")
    bad_json.write_text('{"q": "\\ud800"}')
    assert "surrogate" in refused("--to", agency.pub, "--answers-file", bad_json,
                                  "--out", outdir / "a.srdb")
    bad_json.write_text("[1, 2]")
    assert "JSON object" in refused("--to", agency.pub, "--answers-file", bad_json,
                                    "--out", outdir / "a.srdb")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("olá".encode("latin-1"))
    assert "not UTF-8" in refused("--to", agency.pub, "--message-file", latin1,
                                  "--out", outdir / "a.srdb")
    assert "language tag" in refused("--to", agency.pub, "--language", "en; rm -rf",
                                     "--out", outdir / "a.srdb")
    assert "No such file" in refused("--to", agency.pub, "--out", tmp_path / "nodir" / "a.srdb")
    assert sorted(os.listdir(outdir)) == ["exists.srdb"]  # no temporary files left


def test_encrypt_failure_midway_leaves_no_temporary_file(
        tmp_path: Path, agency: KeyPair, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from client_cli import encrypt as encrypt_module

    def broken(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encrypt_module, "encrypt", broken)
    result = run("encrypt", "--to", agency.pub, "--out", tmp_path / "o" / "a.srdb")
    assert result.code == 1  # parent missing first
    (tmp_path / "o").mkdir()
    result = run("encrypt", "--to", agency.pub, "--out", tmp_path / "o" / "a.srdb")
    assert result.code == 1
    assert result.err == "error: No space left on device\n"
    assert os.listdir(tmp_path / "o") == []


def test_sigterm_mid_envelope_removes_the_provisional_folder(
        tmp_path: Path, agency: KeyPair, passphrase_file: Path, run: Run,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    env = seal(tmp_path / "x.srdb", [agency.pub], [("a.bin", os.urandom(BIG)), ("b.txt", b"B")])
    original_done = decrypt_module._Sink.done

    def terminated_done(self: decrypt_module._Sink, index: int, size: int, sha256: str) -> None:
        original_done(self, index, size, sha256)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(decrypt_module._Sink, "done", terminated_done)
    before = signal.getsignal(signal.SIGTERM)
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", env)
    assert code == 143
    assert err.endswith("error: terminated\n")
    assert tree(tmp_path / "out") == []
    assert signal.getsignal(signal.SIGTERM) == before


def test_leftover_partial_folders_are_reported(tmp_path: Path, agency: KeyPair,
                                               passphrase_file: Path, run: Run) -> None:
    env = seal(tmp_path / "x.srdb", [agency.pub])
    leftover = tmp_path / "out" / ".old.partial-0123456789abcdef"
    leftover.mkdir(parents=True)
    code, _out, err = _decrypt(run, agency, passphrase_file, tmp_path / "out", env)
    assert code == 0
    assert f"warning: {leftover} was left by an interrupted decrypt" in err


def test_json_files_that_are_not_what_they_claim(tmp_path: Path) -> None:
    """One bounded reader for the JSON files the CLI reads (fetch's server metadata, report
    folders, prepared replies): each failure names the file, and what it should have been."""
    path = tmp_path / "x.json"
    limit = 1024 * 1024
    for data, problem in ((b"{}" + b" " * limit, "too large"), (b"\xff{}", "not valid JSON"),
                          (b"[" * 100_000, "not valid JSON"), (b"[]", "not a JSON object")):
        path.write_bytes(data)
        with pytest.raises(CliError) as info:
            read_json_object(path, limit, "the server metadata file")
        assert str(info.value) == f"{path}: the server metadata file is {problem}"
    path.write_bytes(b'{"sha256": "ab"}')
    assert read_json_object(path, 100) == {"sha256": "ab"}
    with pytest.raises(FileNotFoundError):
        read_json_object(tmp_path / "missing.json", 100)
