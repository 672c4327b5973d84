"""Starting or joining Ray, the same way for ingest, serve and benchmarks.

``RAY_ADDRESS`` (or ``address=``) joins an existing cluster unchanged; without
it a private local Ray starts on this machine's cores. Ray's own progress bars and
driver log forwarding are off: ragserve's CLI draws its own progress.

A local Ray dies with the process that started it, even under ``kill -9``: see
``_reaper_for_local_ray``.

This is the one module that reads and sets Ray's environment variables. They are
Ray's interface, not ragserve settings: ``RAY_ADDRESS`` is what ``ray job submit``
and cluster launchers give a driver, so it is read here rather than copied into
``Settings``; the two switches must be in the environment before ``import ray``
and its workers inherit them, so they are process-wide by nature.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


#: Set before ``import ray`` (a user's own value wins): Ray Data's bars would
#: fight the CLI's, and uv's runtime env would try to resolve packages online.
RAY_SWITCHES = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def pid_alive(pid: int) -> bool:
    """Does a process with this pid exist (of any user)? For leftovers named by their pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Initialise Ray once per process and return the module."""
    for name, value in RAY_SWITCHES.items():
        os.environ.setdefault(name, value)
    import ray

    if not ray.is_initialized():
        # Without an address, start a private local Ray rather than silently
        # joining whatever `ray start` left running on this machine; join a
        # cluster with RAY_ADDRESS=host:port (or RAY_ADDRESS=auto for the local one).
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address == "local" and num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if address == "local":
            with _reaper_for_local_ray():
                _init(ray, address, kwargs)
        else:
            _init(ray, address, kwargs)
        logger.info("ray initialised: %s", ray.cluster_resources())  # type: ignore[no-untyped-call]
    import ray.data

    # Ray Data logs every execution plan at INFO on the driver's stderr; the
    # CLI's own progress and summary say what a user needs.
    logging.getLogger("ray").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    logging.getLogger("ray.data").setLevel(max(logging.ERROR, logger.getEffectiveLevel()))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    return ray


def _init(ray: Any, address: str, kwargs: dict[str, Any]) -> None:
    """``ray.init``, retried once for a local start; failures become ``ClusterError``.

    A local Ray on an overloaded machine can time out starting its raylet
    ("node timed out during startup"); a second try usually succeeds. A
    cluster named in ``RAY_ADDRESS`` that cannot be joined is not retried.
    """
    # Imported here: this module is also run alone, as the reaper, with the stdlib only.
    from ragserve.errors import ClusterError

    attempts = 2 if address == "local" else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, **kwargs)
            return
        except Exception as exc:
            ray.shutdown()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt < attempts:
                logger.warning("starting Ray failed (%s); retrying once", reason)
                continue
            if address == "local":
                raise ClusterError(
                    f"a local Ray could not start: {reason}. The machine may be overloaded or a "
                    "stale Ray may hold its ports: retry, run `ray stop`, or join a running "
                    "cluster with RAY_ADDRESS=host:port"
                ) from exc
            raise ClusterError(
                f"could not join the Ray cluster at {address}: {reason}. Check RAY_ADDRESS "
                "(host:port of the head node, or 'auto' for one started on this machine)"
            ) from exc


# Set, only while ``ray.init`` starts a local Ray, to a token naming this process's Ray:
# raylet, GCS and their helpers inherit it, and workers inherit it from the raylet.
OWNER_VAR = "RAGSERVE_RAY_OWNER"
_REAPER_POLL_S = 0.25
_REAPER_QUIET_ROUNDS = 4
_REAPER_MAX_S = 60.0


@contextlib.contextmanager
def _reaper_for_local_ray() -> Iterator[None]:
    """Mark the local Ray started inside the block, and kill it when this process dies.

    Ray runs its raylet, GCS and workers in process groups of their own, so a ``kill -9``
    of an ingest's group does not reach them. Ray's kernel fate-sharing kills the raylet
    and GCS with their parent, but workers only notice a dead raylet on their next check;
    niced and starved on a loaded machine they lingered for up to 10 s. A tiny watcher in
    a session of its own (out of reach of the group kill) waits for this process to die,
    then SIGKILLs every process carrying this process's token, which identifies this Ray
    alone: other users' or other processes' Ray, and clusters joined by address, are
    never touched. The token is only in the environment during ``ray.init``, so later
    children of this process (a server, a subprocess) do not carry it.
    """
    if not sys.platform.startswith("linux"):  # reads /proc
        yield
        return
    token = _owner_token()
    os.environ[OWNER_VAR] = token
    try:
        yield
    finally:
        os.environ.pop(OWNER_VAR, None)


_owner: dict[int, str] = {}  # pid -> token: one reaper per process, a new one after fork
_reapers: list[subprocess.Popen[bytes]] = []  # held, so no "still running" warning on GC


def _owner_token() -> str:
    """This process's token, starting its reaper the first time a local Ray starts."""
    pid = os.getpid()
    if pid not in _owner:
        _owner[pid] = f"{pid}-{secrets.token_hex(8)}"
        _reapers.append(_start_reaper(_owner[pid]))
    return _owner[pid]


def _start_reaper(token: str) -> subprocess.Popen[bytes]:
    """Start the watcher for ``token``; it outlives this process only to clean up after it.

    It runs this file alone (``-I -S``: no site-packages, no ``ragserve`` package), so it
    costs a bare interpreter's memory rather than ragserve's imports.
    """
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('ragserve_reaper', sys.argv[1]); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "module.reap_orphans(*sys.argv[2:])"
    )
    env = {k: v for k, v in os.environ.items() if k != OWNER_VAR}
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", code, __file__, str(os.getpid()), token],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        close_fds=True,
        start_new_session=True,  # not in the group an ingest is killed as
    )


def reap_orphans(owner_pid: str, token: str) -> None:
    """The watcher's body: wait for ``owner_pid`` to die, then kill what carries ``token``.

    Polling the parent pid (it changes when the owner dies and this process is
    re-parented) costs nothing measurable and, unlike a pipe, is not fooled by a forked
    child holding the pipe open. Sweeps repeat until a few in a row find nothing, since
    a dying raylet may still be starting a worker.
    """
    owner = int(owner_pid)
    while os.getppid() == owner:
        time.sleep(_REAPER_POLL_S)
    deadline = time.monotonic() + _REAPER_MAX_S
    quiet = 0
    while quiet < _REAPER_QUIET_ROUNDS and time.monotonic() < deadline:
        quiet = 0 if kill_marked(token) else quiet + 1
        time.sleep(_REAPER_POLL_S)


def kill_marked(token: str) -> int:
    """SIGKILL every other process whose environment has ``OWNER_VAR=token``; return how many."""
    needle = f"{OWNER_VAR}={token}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's process
            continue
        if needle in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
