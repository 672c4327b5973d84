"""Starting Ray: failures become one actionable ``ClusterError``; a local start is retried once.

Ray itself cannot be made to fail on demand here (a bad RAY_ADDRESS takes minutes
to time out), so these drive ``_init`` with a stand-in that has Ray's two calls.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ragserve.errors import ClusterError
from ragserve.runtime import OWNER_VAR, _init, _reaper_for_local_ray, kill_marked

# Real processes (a Python driver, `sleep`s) are started and killed here.
pytestmark = pytest.mark.integration


class _FlakyRay:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inits = 0
        self.shutdowns = 0

    def init(self, **kwargs: Any) -> None:
        self.inits += 1
        if self.inits <= self.failures:
            raise RuntimeError(
                "The current node timed out during startup.\nThis could happen because..."
            )

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_local_start_that_times_out_once_is_retried() -> None:
    ray = _FlakyRay(failures=1)
    _init(ray, "local", {})
    assert ray.inits == 2
    assert ray.shutdowns == 1


def test_a_local_start_that_keeps_failing_says_what_to_do_on_one_line() -> None:
    ray = _FlakyRay(failures=5)
    with pytest.raises(ClusterError) as caught:
        _init(ray, "local", {})
    message = str(caught.value)
    assert "\n" not in message
    assert "timed out during startup" in message
    assert "ray stop" in message
    assert ray.inits == 2


def test_an_unreachable_cluster_is_not_retried_and_names_ray_address() -> None:
    ray = _FlakyRay(failures=5)
    with pytest.raises(ClusterError, match="RAY_ADDRESS") as caught:
        _init(ray, "10.0.0.1:6379", {})
    assert "10.0.0.1:6379" in str(caught.value)
    assert ray.inits == 1


# The reaper for a local Ray, driven with real processes (no Ray: `sleep` stands in for
# Ray's processes, which inherit the owner token the same way, from the environment).

_DRIVER = """
import subprocess, sys, time
from ragserve.runtime import _reaper_for_local_ray
with _reaper_for_local_ray():  # what ray.init starts here carries the token
    marked = subprocess.Popen(["sleep", "120"], start_new_session=True)
unmarked = subprocess.Popen(["sleep", "120"], start_new_session=True)  # started later
print(marked.pid, unmarked.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc")
def test_a_kill_9_of_the_owner_kills_what_its_local_ray_started_and_nothing_else() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", _DRIVER], stdout=subprocess.PIPE, start_new_session=True
    )
    assert driver.stdout is not None
    marked, unmarked = (int(pid) for pid in driver.stdout.readline().split())
    try:
        os.kill(marked, signal.SIGSTOP)  # a starved process never exits by itself
        os.killpg(driver.pid, signal.SIGKILL)  # the sleeps are in groups of their own
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(marked) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(marked), "the process started inside the block outlived its owner"
        assert _alive(unmarked), "a process started after the block was killed"
    finally:
        for pid in (marked, unmarked):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        driver.stdout.close()


def test_the_owner_token_is_in_the_environment_only_while_ray_starts() -> None:
    assert OWNER_VAR not in os.environ
    with _reaper_for_local_ray():
        if sys.platform.startswith("linux"):
            assert os.environ[OWNER_VAR].startswith(f"{os.getpid()}-")
            token = os.environ[OWNER_VAR]
            with _reaper_for_local_ray():  # a second start reuses the one reaper
                assert os.environ[OWNER_VAR] == token
    assert OWNER_VAR not in os.environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc")
def test_only_processes_with_the_exact_token_are_killed() -> None:
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    env = {**os.environ}
    procs = {
        value: subprocess.Popen(["sleep", "120"], env={**env, OWNER_VAR: value})
        for value in (token, token + "0", token[:-1])
    }
    try:
        assert kill_marked(token) == 1
        procs[token].wait(timeout=10)
        assert procs[token + "0"].poll() is None
        assert procs[token[:-1]].poll() is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
