"""The public site's fixtures (real app, real data folder) for the language tests."""

from tests.server.conftest import agency_keys, client, data_dir, make_client

__all__ = ["agency_keys", "client", "data_dir", "make_client"]
