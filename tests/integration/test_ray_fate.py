"""A `kill -9` of an ingest's process group leaves no process of its local Ray behind.

Ray starts its raylet, GCS and workers in process groups of their own, so killing the
ingest's group does not reach them; workers lingered for seconds, and one too starved
to notice its raylet's death (stopped, here) would stay forever. The ingest runs with a
temp dir of its own (``RAY_TMPDIR``) so this test can tell its Ray's processes from
those of any other Ray on the machine: each has that dir in its command line or its
inherited environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAGSERVE = Path(sys.executable).with_name("ragserve")
GONE_WITHIN_S = 15.0


def _session_processes(marker: str) -> list[str]:
    """``pid name`` of every live process whose command line or environment names ``marker``."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker in cmdline or any(marker in v for v in proc.environ().values()):
                label = "ragserve-reaper" if "ragserve_reaper" in cmdline else cmdline[:80]
                found.append(f"{proc.pid} {proc.info['name']} {label}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _ray_workers(marker: str) -> list[str]:
    return [p for p in _session_processes(marker) if "ray::" in p or "default_worker" in p]


def test_kill_9_of_an_ingest_group_leaves_no_ray_process(sample_corpus: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths are capped
    data_dir = tempfile.mkdtemp(prefix="rfdata")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [
            str(RAGSERVE),
            "ingest",
            str(sample_corpus),
            "--base-url",
            "https://docs.ray.io/en/master/",
            "--data-dir",
            data_dir,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a whole
    )
    try:
        deadline = time.monotonic() + 240
        while not _ray_workers(ray_tmp):
            assert proc.poll() is None, (
                f"the ingest ended (rc {proc.returncode}) before Ray started"
            )
            assert time.monotonic() < deadline, "no Ray worker started within 240 s"
            time.sleep(0.5)
        time.sleep(2)  # a few seconds into the run, workers busy
        assert proc.poll() is None, "the ingest finished before it could be killed"
        before = _session_processes(ray_tmp)
        # A worker starved of CPU (they run at nice 15) notices its raylet's death late;
        # a stopped one never does, which makes the old behaviour certain to show.
        starved = int(_ray_workers(ray_tmp)[0].split()[0])
        os.kill(starved, signal.SIGSTOP)
        killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = _session_processes(ray_tmp)
        at_kill = list(left)
        ray_gone_s = None  # when only ragserve's own watcher (which exits after) was left
        while left and time.monotonic() - killed_at < GONE_WITHIN_S:
            if ray_gone_s is None and all("ragserve-reaper" in line for line in left):
                ray_gone_s = round(time.monotonic() - killed_at, 2)
            time.sleep(0.25)
            left = _session_processes(ray_tmp)
        print(
            f"{len(before)} Ray processes before the kill; Ray's gone after {ray_gone_s} s,"
            f" all after {time.monotonic() - killed_at:.2f} s; load {os.getloadavg()}"
        )
        assert len(before) >= 3, before  # raylet, GCS and at least one worker were found
        print("alive at the first look after the kill:", *at_kill, sep="\n  ")
        assert not left, f"still alive {GONE_WITHIN_S} s after kill -9: {left}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for line in _session_processes(ray_tmp):  # never leave this test's Ray running
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
