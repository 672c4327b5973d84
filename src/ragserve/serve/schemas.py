"""The HTTP API's request and response bodies, validated at the boundary.

The shapes keep the tutorial's clients working: they send ``{"query": ...}``
and read ``question``, ``sources``, ``response`` and ``llm``. ``question`` is
accepted as a synonym of ``query`` in requests, and ``response`` repeats
``answer`` in responses. The OpenAI-compatible facade has its own, lenient
models: real OpenAI clients send many parameters this service ignores.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

from ragserve.store.base import SearchFilter

FilterValue = StrictStr | StrictInt | StrictBool | list[StrictStr] | list[StrictInt]

_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _QuestionRequest(_Strict):
    """What /search and /query share: a question, k and filters."""

    query: str = Field(
        min_length=1,
        validation_alias=AliasChoices("query", "question"),
        description="The question (``question`` is accepted as a synonym).",
        examples=["How do I scale a deployment?"],
    )
    k: int | None = Field(None, ge=1, le=100, description="Number of sources [settings].")
    filters: dict[str, FilterValue] | None = Field(
        None,
        description=(
            "Payload filters: key → value (match) or list (match any); the key "
            "``url_prefix`` keeps pages whose URL starts with the value."
        ),
        examples=[{"url_prefix": "https://docs.ray.io/en/latest/serve/"}],
    )

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank; ask something, e.g. 'How do I scale?'")
        return value

    @field_validator("filters")
    @classmethod
    def _sane_filters(cls, value: dict[str, FilterValue] | None) -> dict[str, FilterValue] | None:
        if value is None:
            return None
        if len(value) > MAX_FILTER_KEYS:
            raise ValueError(f"at most {MAX_FILTER_KEYS} filter keys are allowed")
        for key, item in value.items():
            if not _FILTER_KEY.match(key):
                raise ValueError(f"filter key {key!r} is not a payload field name")
            if isinstance(item, list) and not 1 <= len(item) <= MAX_FILTER_VALUES:
                raise ValueError(f"filter {key!r} needs 1 to {MAX_FILTER_VALUES} values")
            if key == "url_prefix" and not isinstance(item, str):
                raise ValueError("filter 'url_prefix' takes one string")
        return value

    def search_filter(self) -> SearchFilter | None:
        """The store's filter for these request filters (None when unfiltered)."""
        if not self.filters:
            return None
        equals = {key: value for key, value in self.filters.items() if key != "url_prefix"}
        prefix = self.filters.get("url_prefix")
        return SearchFilter(equals=equals, url_prefix=prefix if isinstance(prefix, str) else None)


class SearchRequest(_QuestionRequest):
    """Retrieval only: which chunks would an answer be written from."""

    mode: Literal["hybrid", "dense", "sparse"] | None = Field(
        None, description="Retrieval mode [settings]."
    )


class QueryRequest(_QuestionRequest):
    """A question to answer; ``stream`` switches to Server-Sent Events."""

    stream: bool = Field(False, description="Stream the answer as Server-Sent Events.")


class SourceOut(BaseModel):
    """A numbered citation: ``[n]`` in the answer text links to ``url``."""

    n: int
    url: str
    page_url: str
    title: str
    score: float
    snippet: str


class SearchResponse(BaseModel):
    question: str
    sources: list[SourceOut]
    timings: dict[str, float]


class QueryResponse(BaseModel):
    """A cited answer. ``degraded``: the LLM failed and passages were extracted.
    ``grounded``: false when the answer cites no source or a missing one."""

    question: str
    answer: str
    response: str = Field(description="Same as ``answer``, for the tutorial's clients.")
    sources: list[SourceOut]
    llm: str = Field(description="The model that wrote the answer.")
    timings: dict[str, float]
    usage: dict[str, int]
    degraded: bool
    grounded: bool = True
    warnings: list[str]


class ErrorBody(BaseModel):
    type: str
    message: str
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body has this shape; never a stack trace."""

    error: ErrorBody


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    problems: list[str] = Field(default_factory=list)


# -- OpenAI-compatible facade ---------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(max_length=64)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message text; multi-part content contributes its ``text`` parts."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat request this service uses; the rest is ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = "ragserve"
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False

    def question(self) -> str | None:
        """The last user message, which is the question to answer."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return None


__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "ErrorBody",
    "ErrorResponse",
    "HealthResponse",
    "QueryRequest",
    "QueryResponse",
    "SearchRequest",
    "SearchResponse",
    "SourceOut",
]
