"""The real entry point, as a separate process: ``python -m client_cli``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SRDB_TEST_KDF="1")
    return subprocess.run(
        [sys.executable, "-m", "client_cli", *map(str, args)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


def test_python_dash_m_round_trip(tmp_path: Path) -> None:
    (tmp_path / "pp").write_text("a long enough passphrase\n")
    (tmp_path / "msg.txt").write_text("message text\n")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG fake")

    keygen = _cli("keygen", "--out", "keys", "--passphrase-file", "pp", cwd=tmp_path)
    assert keygen.returncode == 0, keygen.stderr
    assert "fingerprint:" in keygen.stdout

    enc = _cli("encrypt", "--to", "keys/agency.pub", "--message-file", "msg.txt", "photo.png",
               "--out", "inbox.srdb", cwd=tmp_path)
    assert enc.returncode == 0, enc.stderr

    dec = _cli("decrypt", "--key-file", "keys/agency.key", "--passphrase-file", "pp",
               "--out", "out", "--json", "inbox.srdb", cwd=tmp_path)
    assert dec.returncode == 0, dec.stderr
    [line] = [json.loads(x) for x in dec.stdout.splitlines()]
    assert line["ok"] is True
    assert line["attachments"][0]["type"] == "image/png"
    assert (tmp_path / "out" / "inbox" / "attachments" / "photo.png").read_bytes() == \
        b"\x89PNG fake"

    (tmp_path / "wrong").write_text("nope\n")
    bad = _cli("decrypt", "--key-file", "keys/agency.key", "--passphrase-file", "wrong",
               "--out", "out2", "inbox.srdb", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: The passphrase does not unlock this secret key file")
    assert "Traceback" not in bad.stderr

    usage = _cli("encrypt", cwd=tmp_path)
    assert usage.returncode == 2
    assert "usage:" in usage.stderr

    # No passphrase file and no terminal: getpass falls back to stdin, which is empty.
    no_tty = _cli("decrypt", "--key-file", "keys/agency.key", "--out", "out3", "inbox.srdb",
                  cwd=tmp_path)
    assert no_tty.returncode == 1
    assert "Traceback" not in no_tty.stderr
