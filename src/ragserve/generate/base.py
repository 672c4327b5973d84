"""The ``LLM`` seam and the values that cross it.

Every backend (OpenAI-compatible HTTP, in-process llama.cpp, the model-free
extractive fallback) takes a ``Prompt`` built by ``ragserve.generate.prompt``
and returns text, so the QueryAgent never knows which one it talks to.
Backends raise only ``LLMError`` subclasses (and ``MissingDependencyError``
when their optional extra is absent): a failure is never an empty answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer from a backend.

    ``usage`` holds ``prompt_tokens`` and ``completion_tokens``; they are
    estimates when the backend does not report them.
    """

    text: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One grounded question, ready for either chat or completion models.

    ``system`` and ``user`` are the two chat messages; ``completion_text`` is
    the same content as a single prompt for base models (such as gemma3-270m)
    that would only echo a chat transcript. ``sources_used`` counts the context
    blocks that survived trimming; they are numbered ``1..sources_used`` in the
    order the chunks were given, so ``[n]`` in an answer is ``chunks[n - 1]``.
    """

    system: str
    user: str
    completion_text: str
    sources_used: int


@runtime_checkable
class LLM(Protocol):
    """A language model that answers a ``Prompt``."""

    @property
    def model(self) -> str:
        """The model name reported with answers."""
        ...

    @property
    def context_window(self) -> int:
        """Tokens the model accepts, prompt and answer together."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes (exact where the backend has a tokenizer)."""
        ...

    def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        """The whole answer at once."""
        ...

    def stream(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Iterator[str]:
        """The answer as text deltas, as the backend produces them."""
        ...

    def check(self) -> None:
        """Cheap reachability check for readiness probes; raises ``LLMError``."""
        ...
