"""torrc.example must be accepted by the real tor binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dropbox_server.config import Config, OnionDefenses
from dropbox_server.onion_store import ServiceName
from dropbox_server.tor import hidden_service_options
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


def _services(text: str) -> dict[str, dict[str, str]]:
    """HiddenService* options per HiddenServiceDir in a torrc (comments and blanks skipped)."""
    services: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "HiddenServiceDir":
            current = services.setdefault(value.rstrip("/").rsplit("/", 1)[-1], {})
        elif key.startswith("HiddenService"):
            current[key] = value
    return services


def test_torrc_example_has_the_defaults_of_dropbox_toml() -> None:
    """What an operator copies for a system tor = what `run` gives its own tor by default."""
    services = _services((ROOT / "torrc.example").read_text(encoding="utf-8"))
    assert set(services) == {"dropbox-public", "dropbox-staff"}
    names: tuple[ServiceName, ...] = ("public", "staff")
    for which in names:
        port = Config.__dataclass_fields__[f"{which}_port"].default  # [server]'s default
        assert isinstance(port, int)
        expected = dict(hidden_service_options(which, Path("/x"), port, OnionDefenses()))
        del expected["HiddenServiceDir"]
        assert services[f"dropbox-{which}"] == expected, which
