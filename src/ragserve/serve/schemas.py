"""The HTTP API's request and response bodies, validated at the boundary.

The shapes keep the tutorial's clients working: they send ``{"query": ...}``
and read ``question``, ``sources``, ``response`` and ``llm``. ``question`` is
accepted as a synonym of ``query`` in requests, and ``response`` repeats
``answer`` in responses. The OpenAI-compatible facade has its own, lenient
models: real OpenAI clients send many parameters this service ignores.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
)

from ragserve.query import SearchFilter, SearchMode, filter_from_mapping

#: A payload field path: dot-separated names (Qdrant refuses "a." or "a..b" as a path).
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_FILTER_KEY_CHARS = 64
MAX_FILTER_KEYS = 16
MAX_FILTER_VALUES = 100
#: Filter integers are I-JSON's exact range (RFC 7493, ±(2**53 - 1)): every JSON parser reads
#: them exactly, they fit the store's 64-bit integers, and a schema bound on them is exact too.
SAFE_INT_MIN, SAFE_INT_MAX = -(2**53 - 1), 2**53 - 1


def _json_integer(value: Any) -> Any:
    """Integers as JSON Schema means them: 5 and 5.0, never "5" or true (a client bug
    should be seen, not coerced away)."""
    if isinstance(value, bool | str) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be an integer (not a string, a boolean or a fraction)")
    return int(value) if isinstance(value, float) else value


def _json_number(value: Any) -> Any:
    """A JSON number, not a boolean or a numeric string coerced into one."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


# The limits live in the types, so the OpenAPI schema (and clients generated from it) knows them.
# (Bounds before the validator: so they reach the JSON schema as minimum/maximum.)
SafeInt = Annotated[int, Field(ge=SAFE_INT_MIN, le=SAFE_INT_MAX), BeforeValidator(_json_integer)]
SourceCount = Annotated[int, Field(ge=1, le=100), BeforeValidator(_json_integer)]
FilterValue = (
    StrictStr
    | SafeInt
    | StrictBool
    | Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_FILTER_VALUES)]
    | Annotated[list[SafeInt], Field(min_length=1, max_length=MAX_FILTER_VALUES)]
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _QuestionRequest(_Strict):
    """What /search and /query share: a question, k and filters."""

    query: str = Field(
        min_length=1,
        json_schema_extra={"pattern": r"\S"},  # not blank; _not_blank says so readably
        validation_alias=AliasChoices("query", "question"),
        description="The question (``question`` is accepted as a synonym).",
        examples=["How do I scale a deployment?"],
    )
    k: SourceCount | None = Field(None, description="Number of sources [settings].")
    filters: dict[str, FilterValue] | None = Field(
        None,
        description=(
            "Payload filters: key → value (match) or list (match any); the key "
            "``url_prefix`` keeps pages whose URL starts with the value."
        ),
        examples=[{"url_prefix": "https://docs.ray.io/en/latest/serve/"}],
        json_schema_extra={
            "propertyNames": {"pattern": _FILTER_KEY.pattern, "maxLength": MAX_FILTER_KEY_CHARS},
            "maxProperties": MAX_FILTER_KEYS,
            "properties": {"url_prefix": {"type": "string"}},
        },
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
            if len(key) > MAX_FILTER_KEY_CHARS or not _FILTER_KEY.match(key):
                raise ValueError(f"filter key {key!r} is not a payload field name")
            if isinstance(item, list) and not 1 <= len(item) <= MAX_FILTER_VALUES:
                raise ValueError(f"filter {key!r} needs 1 to {MAX_FILTER_VALUES} values")
            if key == "url_prefix" and not isinstance(item, str):
                raise ValueError("filter 'url_prefix' takes one string")
            for one in item if isinstance(item, list) else [item]:
                _check_filter_value(key, one)
        return value

    def search_filter(self) -> SearchFilter | None:
        """The store's filter for these request filters (None when unfiltered)."""
        return filter_from_mapping(self.filters)


def _check_filter_value(key: str, value: str | int | bool) -> None:
    """Values the store can hold: exact integers, strings that are valid Unicode."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not (SAFE_INT_MIN <= value <= SAFE_INT_MAX)
    ):
        raise ValueError(f"filter {key!r}: {value} is beyond ±(2**53 - 1), JSON's exact integers")
    if isinstance(value, str) and has_lone_surrogate(value):
        raise ValueError(f"filter {key!r}: the value holds a lone UTF-16 surrogate")


def has_lone_surrogate(text: str) -> bool:
    """True if ``text`` holds an unpaired surrogate (JSON's ``"\\ud800"``): not encodable."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class SearchRequest(_QuestionRequest):
    """Retrieval only: which chunks would an answer be written from."""

    mode: SearchMode | None = Field(None, description="Retrieval mode [settings].")


class QueryRequest(_QuestionRequest):
    """A question to answer; ``stream`` switches to Server-Sent Events."""

    stream: StrictBool = Field(False, description="Stream the answer as Server-Sent Events.")


class SourceOut(BaseModel):
    """A numbered citation: ``[n]`` in the answer text links to ``url``."""

    n: int
    url: str
    page_url: str
    title: str
    score: float
    snippet: str
    heading_path: list[str] = Field(
        default_factory=list, description="Page title, then the headings down to the section."
    )


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
    """``type`` is this service's error type; on /v1 routes it is OpenAI's
    (``invalid_request_error``...) and ``code`` carries this service's."""

    type: str
    message: str
    request_id: str | None = None
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body has this shape; never a stack trace."""

    error: ErrorBody


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    problems: list[str] = Field(default_factory=list)
    #: The index version new requests are answered from (``/readyz`` only).
    index_version: str | None = None


# -- web page: feedback and status ----------------------------------------------


class FeedbackSourceIn(_Strict):
    """A citation of the rated answer; the snippet is not needed to identify it."""

    n: int = Field(ge=1, le=100)
    url: str = Field(min_length=1, max_length=2048)
    title: str = Field("", max_length=1000)
    score: Annotated[float, BeforeValidator(_json_number)] | None = Field(None, allow_inf_nan=False)


class FeedbackRequest(_Strict):
    """A verdict on one answer. Send the returned ``id`` again to add a comment or
    change the verdict instead of recording a second one."""

    id: str | None = Field(
        None, pattern=r"^[0-9a-f]{32}$", description="The id a previous call returned."
    )
    rating: Literal["up", "down"]
    question: str = Field(min_length=1, max_length=10_000)
    answer: str = Field(max_length=20_000)
    sources: list[FeedbackSourceIn] = Field(default_factory=list, max_length=100)
    source: str | None = Field(
        None,
        max_length=2048,
        description="The URL of the source that answers the question (one of ``sources``).",
    )
    comment: str | None = Field(None, max_length=2_000)
    index_version: str | None = Field(None, max_length=200)
    request_id: str | None = Field(None, max_length=128)
    llm: str | None = Field(None, max_length=200, description="The model that wrote the answer.")

    @field_validator("source")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    def marked_source(self) -> str | None:
        """``source`` when it is one of the answer's citations; else a ``ValueError``."""
        if self.source is None:
            return None
        if self.source not in {item.url for item in self.sources}:
            raise ValueError("'source' must be the url of one of the answer's 'sources'")
        return self.source


class FeedbackResponse(BaseModel):
    id: str = Field(description="Send it with a later call to update this verdict.")
    rating: Literal["up", "down"]


class StatusIndex(BaseModel):
    collection: str
    backend: str
    exists: bool
    points: int
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    last_ingest: dict[str, Any] | None
    index_version: str | None
    last_eval: dict[str, Any] | None = None
    error: str | None


class StatusLLM(BaseModel):
    provider: str
    model: str | None
    reachable: bool
    problem: str | None


class StatusResponse(BaseModel):
    """What the web page's status view shows."""

    model_config = ConfigDict(populate_by_name=True)

    version: str
    ready: bool
    problems: list[str]
    index: StatusIndex
    llm: StatusLLM
    retrieve: dict[str, Any]
    auth_required: bool
    rate_limit_per_minute: int


# -- OpenAI-compatible facade ---------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr = Field(max_length=64)
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _encodable(cls, value: str | list[dict[str, Any]] | None) -> Any:
        parts = [value] if isinstance(value, str) else [str(p.get("text", "")) for p in value or []]
        if any(has_lone_surrogate(part) for part in parts):
            raise ValueError("the message holds a lone UTF-16 surrogate; send valid Unicode")
        return value

    def text(self) -> str:
        """The message text; multi-part content contributes its ``text`` parts."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``; ``include_usage`` adds a final usage chunk."""

    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat request this service uses; the rest is ignored.

    The fields it uses are strict (``"stream": "yes"`` is a 422, as at OpenAI),
    the rest pass through unread: SDKs send parameters this service ignores.
    """

    model_config = ConfigDict(extra="allow")

    model: StrictStr = "ragserve"
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

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
    "FeedbackRequest",
    "FeedbackResponse",
    "FeedbackSourceIn",
    "HealthResponse",
    "QueryRequest",
    "QueryResponse",
    "SearchRequest",
    "SearchResponse",
    "SourceOut",
    "StatusResponse",
]
