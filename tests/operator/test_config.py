"""`dropbox-server init` and the start-up checks on the configuration."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox_envelope.keys import SecretKey, StaffSecretKey
from dropbox_server.cli import main as server_main
from dropbox_server.config import CONFIG_NAME, OnionDefenses, load_config
from dropbox_server.errors import ConfigError


def _pub(folder: Path, name: str, *, staff: bool = False) -> Path:
    key = StaffSecretKey.generate() if staff else SecretKey.generate()
    path = folder / f"{name}.pub"
    path.write_text(key.public_key.encode() + "\n", encoding="utf-8")
    return path


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    police, backup = _pub(tmp_path, "police"), _pub(tmp_path, "police-backup")
    labour, alice = _pub(tmp_path, "labour"), _pub(tmp_path, "alice", staff=True)
    data = tmp_path / "data"
    assert server_main(["init", "--data-dir", str(data),
                        "--recipient", f"City Police={police},{backup}",
                        "--recipient", f"Labour Inspectorate={labour}",
                        "--staff", f"alice={alice}"]) == 0
    return data


def test_init_writes_a_loadable_commented_config(initialised: Path) -> None:
    text = (initialised / CONFIG_NAME).read_text(encoding="utf-8")
    assert text.startswith("# Safe Report Drop Box server configuration.")
    config = load_config(initialised)
    assert [r.name for r in config.recipients] == ["City Police", "Labour Inspectorate"]
    assert [r.id for r in config.recipients] == ["city-police", "labour-inspectorate"]
    assert len(config.recipients[0].keys) == 2
    assert [m.name for m in config.staff] == ["alice"]
    assert config.limits.max_report_bytes == 2 * 1024 ** 3


def test_init_refuses_to_overwrite(initialised: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    key = _pub(tmp_path, "other")
    assert server_main(["init", "--data-dir", str(initialised),
                        "--recipient", f"X={key}"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_init_rejects_a_staff_key_as_recipient(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    staff = _pub(tmp_path, "s", staff=True)
    assert server_main(["init", "--data-dir", str(tmp_path / "d"),
                        "--recipient", f"Police={staff}"]) == 1
    err = capsys.readouterr().err
    assert "Police" in err and "s.pub" in err


def _edit(data: Path, old: str, new: str) -> None:
    path = data / CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_missing_key_file_names_the_file_and_recipient(initialised: Path) -> None:
    (initialised / "keys" / "labour-inspectorate-1.pub").unlink()
    with pytest.raises(ConfigError) as err:
        load_config(initialised)
    assert "labour-inspectorate-1.pub" in str(err.value)
    assert "Labour Inspectorate" in str(err.value)
    assert "does not exist" in str(err.value)


def test_malformed_key_is_reported_with_its_place(initialised: Path) -> None:
    path = initialised / "keys" / "city-police-2.pub"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:20] + ("a" if text[20] != "a" else "b") + text[21:], encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(initialised)
    message = str(err.value)
    assert "city-police-2.pub" in message and "City Police" in message
    assert "malformed key" in message


def test_duplicated_key_is_refused(initialised: Path) -> None:
    _edit(initialised, 'keys = ["keys/labour-inspectorate-1.pub"]',
          'keys = ["keys/city-police-1.pub"]')
    with pytest.raises(ConfigError) as err:
        load_config(initialised)
    assert "listed twice" in str(err.value)
    assert "Labour Inspectorate" in str(err.value)


def test_duplicated_staff_key_is_refused(initialised: Path) -> None:
    path = initialised / CONFIG_NAME
    path.write_text(path.read_text(encoding="utf-8") +
                    '\n[[staff]]\nname = "bob"\nkey = "keys/staff-alice.pub"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(initialised)


def test_no_recipient_and_bad_types_are_refused(initialised: Path) -> None:
    _edit(initialised, "max_files = 20", 'max_files = "many"')
    with pytest.raises(ConfigError, match="max_files"):
        load_config(initialised)


def test_run_refuses_to_start_with_a_bad_config(initialised: Path) -> None:
    (initialised / "keys" / "city-police-1.pub").write_text("nonsense\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "dropbox_server", "run", "--data-dir", str(initialised), "--dev",
         "--port", "0", "--staff-port", "0"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "city-police-1.pub" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_folders_are_private(initialised: Path) -> None:
    with subprocess.Popen(
            [sys.executable, "-m", "dropbox_server", "run", "--data-dir", str(initialised),
             "--dev", "--port", "0", "--staff-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(3)]
            assert any(line.startswith("public site: http://127.0.0.1:") for line in lines), lines
            assert any(line.startswith("staff API:   http://127.0.0.1:") for line in lines), lines
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    for sub in ("db", "store/envelopes", "store/replies", "tmp", "secrets"):
        mode = stat.S_IMODE((initialised / sub).stat().st_mode)
        assert mode & 0o077 == 0, f"{sub} is {oct(mode)}"
    db_mode = stat.S_IMODE((initialised / "db" / "dropbox.sqlite").stat().st_mode)
    assert db_mode & 0o077 == 0


def test_init_writes_the_tor_defences_commented_with_their_defaults(initialised: Path) -> None:
    text = (initialised / CONFIG_NAME).read_text(encoding="utf-8")
    section = text[text.index("\n[tor]\n"):text.index("[[recipient]]")]
    assert "torrc.example" in section and "SecureDrop" in section and "manual" in section
    for line in ("pow_defenses = true", "pow_queue_rate = 250", "pow_queue_burst = 2500",
                 "intro_dos_defense = true", "intro_dos_rate_per_sec = 25",
                 "intro_dos_burst_per_sec = 200", "public_max_streams = 32",
                 "staff_max_streams = 8"):
        assert f"\n{line}\n" in section, line
    assert load_config(initialised).onion_defenses == OnionDefenses(
        pow_defenses=True, pow_queue_rate=250, pow_queue_burst=2500, intro_dos_defense=True,
        intro_dos_rate_per_sec=25, intro_dos_burst_per_sec=200, public_max_streams=32,
        staff_max_streams=8)


def test_tor_defences_are_configurable(initialised: Path) -> None:
    _edit(initialised, "intro_dos_rate_per_sec = 25", "intro_dos_rate_per_sec = 10")
    _edit(initialised, "pow_defenses = true", "pow_defenses = false")
    _edit(initialised, "staff_max_streams = 8", "staff_max_streams = 3")
    defenses = load_config(initialised).onion_defenses
    assert defenses.intro_dos_rate_per_sec == 10 and not defenses.pow_defenses
    assert defenses.intro_dos_defense
    assert (defenses.max_streams("staff"), defenses.max_streams("public")) == (3, 32)


def test_a_config_without_a_tor_section_gets_the_defaults(initialised: Path) -> None:
    # Data folders made before [tor] existed keep working, with every defence on.
    path = initialised / CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    start, end = text.index("\n[tor]\n"), text.index("# Who people can report to")
    path.write_text(text[:start] + "\n" + text[end:], encoding="utf-8")
    assert "[tor]" not in path.read_text(encoding="utf-8")
    assert load_config(initialised).onion_defenses == OnionDefenses()


@pytest.mark.parametrize(("old", "new", "message"), [
    ("intro_dos_defense = true", 'intro_dos_defense = "yes"',
     "[tor] intro_dos_defense must be true or false"),
    ("pow_defenses = true", "pow_defenses = 1", "[tor] pow_defenses must be true or false"),
    ("intro_dos_rate_per_sec = 25", "intro_dos_rate_per_sec = 0",
     "[tor] intro_dos_rate_per_sec must be a whole number from 1 to 2147483647"),
    ("pow_queue_rate = 250", "pow_queue_rate = -5", "[tor] pow_queue_rate must be"),
    ("pow_queue_burst = 2500", "pow_queue_burst = 2147483648", "[tor] pow_queue_burst must be"),
    ("intro_dos_burst_per_sec = 200", "intro_dos_burst_per_sec = 2.5",
     "[tor] intro_dos_burst_per_sec must be"),
    ("intro_dos_burst_per_sec = 200", "intro_dos_burst_per_sec = true",
     "[tor] intro_dos_burst_per_sec must be"),
    ("intro_dos_burst_per_sec = 200", "intro_dos_burst_per_sec = 20",
     "[tor] intro_dos_burst_per_sec (20) must not be smaller than intro_dos_rate_per_sec (25)"),
    ("pow_queue_burst = 2500", "pow_queue_burst = 100",
     "[tor] pow_queue_burst (100) must not be smaller than pow_queue_rate (250)"),
    ("public_max_streams = 32", "public_max_streams = 65536",
     "[tor] public_max_streams must be a whole number from 1 to 65535"),
    ("staff_max_streams = 8", "staff_max_streams = 0",
     "[tor] staff_max_streams must be a whole number from 1 to 65535"),
    ("intro_dos_defense = true", "intro_dos_defense = true\nintro_dos_rate = 5",
     "[tor] intro_dos_rate is not a setting"),
])
def test_bad_tor_settings_name_the_key_and_the_file(initialised: Path, old: str, new: str,
                                                    message: str) -> None:
    _edit(initialised, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(initialised)
    assert message in str(err.value)
    assert str(initialised / CONFIG_NAME) in str(err.value)


def test_tor_must_be_a_table(initialised: Path) -> None:
    path = initialised / CONFIG_NAME
    text = path.read_text(encoding="utf-8").replace("\n[tor]\n", "\n[tor_old]\n")
    path.write_text('tor = "on"\n' + text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dropbox\.toml: \[tor\] must be a table"):
        load_config(initialised)
