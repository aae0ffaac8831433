"""The private Tor network fixture itself: up, loopback only, and its tors die with pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import require_binary
from tests.tor.testnet import TorNetwork

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.tor


def test_network_is_up_on_loopback_only(tor_network: TorNetwork) -> None:
    assert tor_network.client is not None
    with tor_network.client.control() as conn:
        assert "PROGRESS=100" in conn.getinfo("status/bootstrap-phase")
    for node in tor_network.all_nodes():
        assert node.alive(), node.log_tail()
        for port in (node.control_port, node.or_port, node.dir_port, node.socks_port):
            assert port is None or 1024 < port < 32768
    join = tor_network.join_config()
    assert "SafeLogging" not in join and "DataDirectory" not in join
    authorities = tor_network.dir_authority_lines()
    assert len(authorities) == 3 and all(" 127.0.0.1:" in line for line in authorities)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by init) counts as dead.
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_tors_die_when_their_parent_is_killed(tmp_path: Path) -> None:
    tor = require_binary("tor", "the fixture starts tor processes")
    (tmp_path / "data").mkdir(mode=0o700)
    torrc = tmp_path / "torrc"
    torrc.write_text(f"DisableNetwork 1\nSocksPort 0\nDataDirectory {tmp_path / 'data'}\n",
                     encoding="utf-8")
    script = (
        "import subprocess, sys, time\n"
        "from tests.tor.testnet import _set_pdeathsig\n"
        f"p = subprocess.Popen([{tor!r}, '--defaults-torrc', '/dev/null', '-f', "
        f"{str(torrc)!r}],\n"
        "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_set_pdeathsig)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    tor_pid = int(parent.stdout.readline())
    parent.stdout.close()
    try:
        time.sleep(0.5)
        assert _alive(tor_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(tor_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(tor_pid), "tor outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if _alive(tor_pid):
            os.kill(tor_pid, signal.SIGKILL)
