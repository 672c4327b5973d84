"""Retry timing shared by every HTTP client in ragserve (crawler, LLM client).

Only retryable failures (timeouts, connection errors, 429, 5xx) are retried,
with exponential backoff and jitter so many workers do not retry in lockstep,
and a server's ``Retry-After`` is honoured up to a cap.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def backoff_s(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Delay before retry ``attempt`` (1-based): base·2^(attempt-1), capped, half jittered."""
    ceiling = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after_s(headers: Mapping[str, str], *, cap_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta or HTTP date), capped; None if absent."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(cap_s, seconds))
