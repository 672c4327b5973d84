"""`ragserve serve` on a two-node Ray cluster: replicas on both nodes, both answering.

Runs ``scripts/two_node_serve.sh`` as a user would: it starts a head and a
worker node with ``ray start`` on 127.0.0.1, serves a small real index with
``--replicas 2`` and one replica per node, and sends /search requests. The
test checks the script's JSON summary (replica actors' node ids from
``ray.util.state.list_actors``, the node each answer came from) and that no
process of the demo outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.index import build_index

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "two_node_serve.sh"
REQUESTS = 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_pids(marker: str) -> list[int]:
    """Processes whose command line names the demo's Ray temp dir (none but its own)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    """A short Ray temp dir (unix socket paths must stay under ~107 bytes)."""
    path = tempfile.mkdtemp(prefix="rs2n-", dir="/tmp")
    yield path
    for pid in demo_pids(path):  # only if the script's own cleanup failed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def test_replicas_on_both_nodes_each_answer(tmp_path: Path, ray_tmp: str) -> None:
    data_dir = tmp_path / "index"
    build_index(data_dir)
    env = {
        **os.environ,
        "RAY_HEAD_PORT": str(free_port()),
        "RAY_CLIENT_PORT": str(free_port()),
        "SERVE_PORT": str(free_port()),
        "RAY_TMP_DIR": ray_tmp,
        "REQUESTS": str(REQUESTS),
        "READY_TIMEOUT_S": "150",
    }
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [str(SCRIPT), str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    serve_log = Path(ray_tmp) / "serve.log"
    log_tail = serve_log.read_text(errors="replace")[-3000:] if serve_log.exists() else ""
    assert result.returncode == 0, f"{output[-4000:]}\n--- serve.log ---\n{log_tail}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    assert summary["nodes"] == 2

    # The replica actors Ray placed. ``--replicas 2`` with one Generator is the
    # split topology: 2 Retriever replicas (each with its index copy), 2 Ingress
    # replicas, 1 Generator; each deployment with 2 replicas spans both nodes.
    def nodes_of(deployment: str) -> set[str]:
        return {r["node"] for r in summary["replicas"] if f"#{deployment}#" in r["actor"]}

    assert len(summary["replica_nodes"]) == 2
    assert len(nodes_of("Retriever")) == 2
    assert len(nodes_of("Ingress")) == 2
    # Every request answered with sources, and both nodes' replicas answered.
    assert summary["requests"] == REQUESTS
    assert summary["ok"] == REQUESTS
    assert set(summary["answered_by_node"]) == nodes_of("Ingress")
    assert len(summary["answered_by_replica"]) == 2
    # `ray stop` returns while the last processes are still exiting: give them a moment.
    deadline = time.monotonic() + 15
    while demo_pids(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not demo_pids(ray_tmp), "the script left processes of its Ray cluster running"
