"""Fixtures for the public site: the real app from ``create_app`` over a real data folder (real
keys, real SQLite), with small limits and a fast return-code KDF so the suite stays quick."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from dropbox_envelope.keys import TEST_KDF, SecretKey
from dropbox_server.app import create_app
from dropbox_server.appkeys import BACKEND
from dropbox_server.backend import Backend
from dropbox_server.config import Config, load_config, render_config

LABOUR = "labour-inspectors"
POLICE = "city-police"

# Small enough to exceed in a test, large enough for a report with two attachments.
SMALL_LIMITS: dict[str, int] = {
    "max_report_bytes": 256 * 1024,
    "max_files": 3,
    "max_message_chars": 2000,
    "max_field_chars": 300,
    "max_concurrent_uploads": 4,
    "code_workers": 1,
    "code_queue": 4,
}

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@dataclass(frozen=True)
class AgencyKeys:
    """Secret keys of the two test recipients: the labour inspectors have a main key and an
    offline backup key (two stanzas per envelope), the police one key."""

    labour: SecretKey
    labour_backup: SecretKey
    police: SecretKey


@pytest.fixture(scope="session")
def agency_keys() -> AgencyKeys:
    return AgencyKeys(SecretKey.generate(), SecretKey.generate(), SecretKey.generate())


def write_config(data_dir: Path, keys: AgencyKeys, **overrides: int | str) -> Config:
    """Write ``dropbox.toml`` with ``render_config`` (as ``dropbox-server init`` does), then
    set the small limits, the fast KDF and any ``overrides`` in its [server] table."""
    keys_dir = data_dir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, key in (("labour-1", keys.labour), ("labour-2", keys.labour_backup),
                      ("police-1", keys.police)):
        (keys_dir / f"{name}.pub").write_text(key.public_key.encode() + "\n", encoding="utf-8")
        files[name] = f"keys/{name}.pub"
    text = render_config(
        [("Labour Inspectors", "Unpaid wages, forced work, bad conditions at work.",
          [files["labour-1"], files["labour-2"]]),
         ("City Police", "Violence, threats, abuse at home.", [files["police-1"]])],
        [])
    settings: dict[str, int | str] = {**SMALL_LIMITS, "code_kdf_opslimit": TEST_KDF.opslimit,
                                      "code_kdf_memlimit": TEST_KDF.memlimit, **overrides}
    for key, value in settings.items():
        line = f"{key} = {value if isinstance(value, int) else repr(value)}"
        text, found = re.subn(rf"(?m)^{key} = .*$", line, text)
        if not found:
            text = text.replace("[server]\n", f"[server]\n{line}\n", 1)
    (data_dir / "dropbox.toml").write_text(text, encoding="utf-8")
    return load_config(data_dir)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest_asyncio.fixture
async def make_client(aiohttp_client: Any, data_dir: Path,
                      agency_keys: AgencyKeys) -> MakeClient:
    """``await make_client(**overrides)``: the real app on a fresh config."""
    async def make(**overrides: int | str) -> Client:
        config = write_config(data_dir, agency_keys, **overrides)
        client: Client = await aiohttp_client(create_app(config))
        return client
    return make


@pytest_asyncio.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


def backend_of(client: Client) -> Backend:
    return client.server.app[BACKEND]  # type: ignore[union-attr]
