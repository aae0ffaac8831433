"""The load limits in dropbox.toml: written by init with their defaults, and checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dropbox_envelope.keys import SecretKey
from dropbox_server.config import CONFIG_NAME, Limits, load_config, render_config
from dropbox_server.errors import ConfigError


def _data(tmp_path: Path, **settings: int) -> Path:
    (tmp_path / "agency.pub").write_text(SecretKey.generate().public_key.encode() + "\n")
    text = render_config([("City Police", "", [str(tmp_path / "agency.pub")])], [])
    for key, value in settings.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert count == 1, key
    (tmp_path / CONFIG_NAME).write_text(text)
    return tmp_path


def test_the_argon2_and_connection_limits_are_written_with_their_defaults(
        tmp_path: Path) -> None:
    text = (_data(tmp_path) / CONFIG_NAME).read_text()
    for key in ("code_workers", "code_queue", "new_report_code_queue", "header_timeout_seconds",
                "body_idle_timeout_seconds", "max_concurrent_uploads"):
        assert re.search(rf"(?m)^{key} = {getattr(Limits(), key)}$", text), key
    assert load_config(tmp_path).limits == Limits()
    assert (Limits().new_report_code_queue, Limits().header_timeout_seconds) == (16, 10)


def test_the_limits_can_be_changed(tmp_path: Path) -> None:
    limits = load_config(_data(tmp_path, new_report_code_queue=3,
                               header_timeout_seconds=30)).limits
    assert (limits.new_report_code_queue, limits.header_timeout_seconds) == (3, 30)


@pytest.mark.parametrize("settings", [{"header_timeout_seconds": 0},
                                      {"body_idle_timeout_seconds": 0},
                                      {"new_report_code_queue": -1}])
def test_bad_limits_stop_start_up(tmp_path: Path, settings: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match=next(iter(settings))):
        load_config(_data(tmp_path, **settings))
