"""Starting Ray: failures become one actionable ``ClusterError``; a local start is retried once.

Ray itself cannot be made to fail on demand here (a bad RAY_ADDRESS takes minutes
to time out), so these drive ``_init`` with a stand-in that has Ray's two calls.
"""

from __future__ import annotations

from typing import Any

import pytest

from ragserve.errors import ClusterError
from ragserve.runtime import _init


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
