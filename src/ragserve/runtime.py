"""Starting or joining Ray, the same way for ingest, serve and benchmarks.

``RAY_ADDRESS`` (or ``address=``) joins an existing cluster unchanged; without
it a private local Ray starts on this machine's cores. Ray's own progress bars and
driver log forwarding are off: ragserve's CLI draws its own progress.
"""

from __future__ import annotations

import logging
import os
from typing import Any

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
        ray.init(address=address, **kwargs)
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
