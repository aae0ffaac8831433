"""Fixtures for the storage tests: the staff tests' data folder (``world``), in-process staff API
(``api``) and server process (``start_server``), and the public site's agency keys, reused as
they are (``run``, the in-process CLI, is in tests/conftest.py)."""

from __future__ import annotations

from tests.server.conftest import agency_keys
from tests.staff.conftest import api, start_server, world

__all__ = ["agency_keys", "api", "start_server", "world"]
