"""torrc.example must be accepted by the real tor binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import require_binary

ROOT = Path(__file__).resolve().parents[2]


def test_torrc_example_verifies(tmp_path: Path) -> None:
    tor = require_binary("tor", "needed to check torrc.example with `tor --verify-config`")
    text = (ROOT / "torrc.example").read_text(encoding="utf-8")
    assert "HiddenServicePoWDefensesEnabled 1" in text
    assert "SafeLogging 1" in text
    # Point the service folders at a private temporary place; everything else is verified as is.
    services = tmp_path / "services"
    services.mkdir(mode=0o700)
    config = tmp_path / "torrc"
    config.write_text(text.replace("/var/lib/tor/", f"{services}/") +
                      f"\nDataDirectory {tmp_path / 'data'}\n", encoding="utf-8")
    proc = subprocess.run([tor, "--verify-config", "-f", str(config), "--defaults-torrc",
                           "/dev/null"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration was valid" in proc.stdout


def test_a_broken_torrc_is_rejected(tmp_path: Path) -> None:
    # Proves the check above can fail: tor really parses the file.
    tor = require_binary("tor", "needed to check torrc.example with `tor --verify-config`")
    config = tmp_path / "torrc"
    config.write_text("HiddenServicePort 80 127.0.0.1:8080\nNoSuchOption 1\n", encoding="utf-8")
    proc = subprocess.run([tor, "--verify-config", "-f", str(config), "--defaults-torrc",
                           "/dev/null"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
