"""What every in-process llama.cpp backend shares: a lazy, locked load and one
"prompt too long" error, and one reading of llama.cpp's token counts.

Both ``LlamaCppLLM`` (llama-cpp-python) and ``LocalLLM`` (xllamacpp) load a
GGUF of hundreds of megabytes: it must happen once per process, on first use
(so importing a backend or building Settings stays cheap), and never twice
when Ray Serve's thread pool sends the first requests together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ragserve.errors import LLMError
from ragserve.generate.base import Completion

T = TypeVar("T")


class LazyModel(Generic[T]):
    """Calls ``load`` on the first ``get()``, under a lock; later calls reuse it.

    A failed load raises to its caller and is tried again on the next
    ``get()`` (a model fetched meanwhile then loads without a restart).
    """

    def __init__(self, load: Callable[[], T]) -> None:
        self._load = load
        self._model: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model


def context_exceeded(model: str, detail: object) -> LLMError:
    """The one message for a prompt plus answer that does not fit the window."""
    return LLMError(
        f"{model} could not answer: {detail}; raise RAGSERVE_LLM__CONTEXT_WINDOW or "
        "lower RAGSERVE_LLM__MAX_TOKENS"
    )


def completion_of(result: dict[str, Any], text: str, model: str) -> Completion:
    """A ``Completion`` with the token counts llama.cpp reports (0 when it reports none)."""
    usage = result.get("usage") or {}
    return Completion(
        text=text,
        model=model,
        usage={
            "prompt_tokens": int(usage.get("prompt_tokens", 0)),
            "completion_tokens": int(usage.get("completion_tokens", 0)),
        },
    )
