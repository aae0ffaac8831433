"""Fixtures for hostile-input tests: the real apps over real data folders (see tests/server and
tests/staff), and the number of generated examples per property."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.server.conftest import agency_keys, client, data_dir, make_client  # noqa: F401
from tests.staff.conftest import api, world  # noqa: F401

#: Examples per property; raise it for a longer hunt (SRDB_HOSTILE_EXAMPLES=2000).
EXAMPLES = int(os.environ.get("SRDB_HOSTILE_EXAMPLES", "75"))

settings.register_profile(
    "hostile", max_examples=EXAMPLES, deadline=None,
    # One app per test, shared by its examples: the store's state is compared around each.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large])
HOSTILE = settings.get_profile("hostile")
