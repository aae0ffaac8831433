"""The server holds public keys only: an agency's secret key where a public key belongs stops
`dropbox-server init` and start-up, so it is never copied into the data folder or used."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbox_envelope.keys import TEST_KDF, SecretKey, lock_secret_key
from dropbox_server.cli import main as server_main
from dropbox_server.config import CONFIG_NAME, load_config, render_config
from dropbox_server.errors import ConfigError


@pytest.fixture
def secret_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "agency.key"
    path.write_text(lock_secret_key(SecretKey.generate(), "correct horse", params=TEST_KDF))
    return path


def test_an_agency_secret_key_is_refused_in_the_config(tmp_path: Path,
                                                       secret_key_file: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / CONFIG_NAME).write_text(render_config([("City Police", "", [str(secret_key_file)])],
                                                  []))
    with pytest.raises(ConfigError, match="malformed key"):
        load_config(data)
    assert server_main(["run", "--dev", "--data-dir", str(data), "--port", "0",
                        "--staff-port", "0"]) == 1


def test_init_refuses_an_agency_secret_key(tmp_path: Path, secret_key_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert server_main(["init", "--data-dir", str(data),
                        "--recipient", f"City Police={secret_key_file}"]) == 1
    assert "error:" in capsys.readouterr().err
    assert not (data / CONFIG_NAME).exists()
    secret = secret_key_file.read_text()
    assert not any(secret in p.read_text(errors="replace") for p in data.rglob("*")
                   if p.is_file())
