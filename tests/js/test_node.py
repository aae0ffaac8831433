"""The JavaScript side of the envelope format, run from pytest so CI covers it:

- ``node --test tests/js/``: every vector through the JS reader, the JS writer's round trips;
- envelopes sealed by the shipped page script (with WebAssembly and with libsodium's pure-JS
  fallback) open with the Python reader and with ``dropbox-client decrypt``;
- the committed ``dropbox_server/static/app.js`` is what ``web/build.mjs`` builds now.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dropbox_envelope import Decryptor
from dropbox_envelope.envelope import AttachmentData
from dropbox_envelope.keys import TEST_KDF, SecretKey, lock_secret_key
from tests.support import require_binary, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PASSPHRASE = "js envelopes"


def run_node(*args: str | Path, stdin: str | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    node = require_binary("node", "the page script is checked with node")
    return subprocess.run([node, *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def test_node_test_suite() -> None:
    result = run_node("--test", HERE)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout


def test_committed_build_matches_a_fresh_build() -> None:
    if not (ROOT / "web" / "node_modules" / "libsodium-wrappers-sumo").is_dir():
        skip_or_fail("web/node_modules is missing: run `npm ci` in web/ to check the build")
    result = run_node(ROOT / "web" / "build.mjs", "--check")
    assert result.returncode == 0, result.stderr


def _open(path: Path, key: SecretKey) -> tuple[dict[str, Any], list[bytes]]:
    decryptor = Decryptor([key])
    files: dict[int, bytearray] = {}
    with path.open("rb") as handle:
        while block := handle.read(100_000):
            for event in decryptor.feed(block):
                if isinstance(event, AttachmentData):
                    files.setdefault(event.index, bytearray()).extend(event.data)
    manifest = decryptor.close()
    data = [bytes(files.get(i, b"")) for i in range(len(manifest.attachments))]
    return manifest.to_dict(), data


@pytest.mark.parametrize("wasm", [True, False], ids=["wasm", "no-wasm"])
def test_js_envelopes_open_with_python_and_the_cli(tmp_path: Path, wasm: bool) -> None:
    agency, backup = SecretKey.generate(), SecretKey.generate()
    big = os.urandom(3 * 1024 * 1024 + 17 if wasm else 300_000)
    files = {"photo.jpg": (b"\xff\xd8" + os.urandom(70_001), "image/jpeg"),
             "рапорт ✓.txt": (b"Line one\nline two\n", "text/plain"),
             "empty.bin": (b"", ""),
             "video.mp4": (big, "video/mp4")}
    for name, (data, _type) in files.items():
        (tmp_path / name).write_bytes(data)
    fields = {"kind": "report", "language": "ar", "message": "They took my passport.\nHelp.",
              "answers": {"what_happening": ["not_paid", "documents_taken"],
                          "reporter": "victim", "town": "Łódź"},
              "extra": {"questionnaire": "default-en-1"}}
    job = {"recipients": [agency.public_key.encode(), backup.public_key.encode()],
           "envelopes": [
               {"out": str(tmp_path / "full.srdb"), "fields": fields, "write_size": 65_536,
                "files": [{"name": n, "type": t, "path": str(tmp_path / n)}
                          for n, (_d, t) in files.items()]},
               {"out": str(tmp_path / "bare.srdb"), "fields": {"kind": "report"}}]}
    result = run_node(HERE / "seal_cli.js", *([] if wasm else ["--no-wasm"]),
                      stdin=json.dumps(job))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["wasm"] for line in lines] == [wasm, wasm]

    manifest, data = _open(tmp_path / "full.srdb", backup)  # the second stanza opens too
    assert manifest["message"] == fields["message"]
    assert manifest["language"] == "ar"
    assert manifest["answers"] == fields["answers"]
    assert manifest["questionnaire"] == "default-en-1"
    assert [a["name"] for a in manifest["attachments"]] == list(files)
    for entry, content, (expected, media_type) in zip(manifest["attachments"], data,
                                                      files.values(), strict=True):
        assert content == expected
        assert entry["size"] == len(expected)
        assert entry["sha256"] == hashlib.sha256(expected).hexdigest()
        assert entry["type"] == (media_type or "application/octet-stream")
    bare, _ = _open(tmp_path / "bare.srdb", agency)
    assert bare["message"] == "" and bare["attachments"] == [] and bare["answers"] == {}

    # The staff tool, as a separate process with a passphrase-protected key file.
    (tmp_path / "agency.key").write_text(lock_secret_key(agency, PASSPHRASE, params=TEST_KDF))
    (tmp_path / "pass.txt").write_text(PASSPHRASE + "\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "full.srdb").rename(inbox / "full.srdb")
    decrypted = subprocess.run(
        [sys.executable, "-m", "client_cli", "decrypt", "--key-file", str(tmp_path / "agency.key"),
         "--passphrase-file", str(tmp_path / "pass.txt"), "--out", str(tmp_path / "reports"),
         "--json", str(inbox)], capture_output=True, text=True, timeout=120, check=False)
    assert decrypted.returncode == 0, decrypted.stderr
    folder = tmp_path / "reports" / "full"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report["message"] == fields["message"]
    assert report["answers"]["what_happening"] == ["not_paid", "documents_taken"]
    by_name = {a["name"]: a for a in report["attachments"]}
    for name, (expected, _type) in files.items():
        assert (folder / by_name[name]["file"]).read_bytes() == expected, name
