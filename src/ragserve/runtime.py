"""Starting or joining Ray, the same way for ingest, serve and benchmarks.

``RAY_ADDRESS`` (or ``address=``) joins an existing cluster unchanged; without
it a private local Ray starts on this machine's cores. Ray's own progress bars and
driver log forwarding are off: ragserve's CLI draws its own progress.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ragserve.errors import ClusterError

logger = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Initialise Ray once per process and return the module."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
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
