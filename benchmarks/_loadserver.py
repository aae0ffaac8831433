"""``dropbox-server`` as the load benchmark runs it: the real command line, plus an event-loop
lag probe inside the server process (a helper of benchmarks/load.py, not a benchmark).

    python benchmarks/_loadserver.py run --dev --data-dir DIR --port 0 --staff-port 0

With ``SRDB_LAG_PROBE_MS=N`` set, a task on the server's event loop sleeps N ms again and
again and writes how late each wake-up was, one ``lag_ms=<ms late> at=<loop time>`` line per
wake-up, to stderr: numbers only, nothing about requests. The server itself is unchanged: this wraps
``dropbox_server.cli.serve`` (which ``dropbox-server run`` calls) and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from dropbox_server import cli


async def _probe(interval: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        late = loop.time() - before - interval
        sys.stderr.write(f"lag_ms={max(late, 0.0) * 1000:.3f} at={before:.3f}\n")


def main() -> int:
    interval_ms = float(os.environ.get("SRDB_LAG_PROBE_MS", "0"))
    serve = cli.serve

    async def serve_with_probe(*args: Any, **kwargs: Any) -> None:
        probe = asyncio.create_task(_probe(interval_ms / 1000)) if interval_ms > 0 else None
        try:
            await serve(*args, **kwargs)
        finally:
            if probe is not None:
                probe.cancel()

    cli.serve = serve_with_probe  # type: ignore[assignment]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
