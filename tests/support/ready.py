"""One readiness poll for every test and benchmark that starts a ragserve server."""

from __future__ import annotations

import time

import httpx


def wait_until_ready(base: str, timeout_s: float = 120.0, *, interval_s: float = 0.5) -> None:
    """Return once ``GET {base}/readyz`` answers 200; ``TimeoutError`` after ``timeout_s``.

    Connection errors and non-200 answers (the index or model still loading)
    both mean "not yet": a server is ready only when it says so.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"{base} was not ready within {timeout_s:.0f}s")
