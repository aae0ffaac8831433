"""``python -m client_cli``: the same as the ``dropbox-client`` console script."""

from __future__ import annotations

import sys

from client_cli.cli import main

if __name__ == "__main__":
    sys.exit(main())
