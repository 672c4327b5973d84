"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, llama.cpp server, Ollama…

Plain httpx rather than the ``openai`` package: one fewer heavy dependency,
and the few things that matter here are explicit — which failures are
retried (timeouts, connection errors, 429 and 5xx, with exponential backoff,
jitter and ``Retry-After``), which are not (every other 4xx: retrying a bad
key or a bad request only delays the error), and what each error tells the
operator to change.

Token counts are estimates (``ragserve.generate.tokens``): the server's
tokenizer is unknown and tiktoken would download its tables at run time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from ragserve.errors import LLMAuthError, LLMError, LLMModelNotFoundError, LLMUnavailableError
from ragserve.generate.base import Completion, Prompt
from ragserve.generate.tokens import estimate_tokens
from ragserve.retry import backoff_s, retry_after_s

logger = logging.getLogger(__name__)

_ERROR_DETAIL_CHARS = 300


class OpenAICompatibleLLM:
    """An ``LLM`` served over HTTP at ``{base_url}/chat/completions``.

    ``retries`` is how many times a retryable failure is tried again, so a
    request is sent at most ``retries + 1`` times. ``transport`` lets tests
    and embedders pass an ``httpx`` transport.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        timeout_s: float = 60.0,
        retries: int = 3,
        context_window: int = 8192,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_cap_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._model = model
        self._timeout_s = timeout_s
        self._retries = retries
        self._context_window = context_window
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._retry_after_cap_s = retry_after_cap_s
        self._transport = transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._model

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def base_url(self) -> str:
        return self._base_url

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        body = self._chat_body(prompt, max_tokens=max_tokens, temperature=temperature)
        response = self._send("POST", "/chat/completions", body, retries=self._retries)
        data = _json_of(response, self._url("/chat/completions"))
        text = _message_text(data)
        return Completion(
            text=text,
            model=str(data.get("model") or self._model),
            usage=_usage(data, prompt, text),
        )

    def stream(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Text deltas from the server-sent events; retries happen before the first one."""
        body = self._chat_body(prompt, max_tokens=max_tokens, temperature=temperature)
        body["stream"] = True
        response = self._send("POST", "/chat/completions", body, retries=self._retries, stream=True)
        try:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("application/json"):
                response.read()  # a server that ignored "stream": one whole answer
                yield _message_text(_json_of(response, self._url("/chat/completions")))
                return
            if content_type and not content_type.startswith("text/event-stream"):
                response.read()  # an HTML error page from a proxy, say
                raise LLMError(
                    f"{self._url('/chat/completions')} answered with something other than "
                    f"JSON or an event stream ({content_type}: {response.text[:80]!r}); "
                    "is RAGSERVE_LLM__BASE_URL an OpenAI-compatible API?"
                )
            yield from self._deltas(response)
        finally:
            response.close()

    def check(self) -> None:
        """Reach ``GET {base_url}/models`` once and confirm the model is served.

        An endpoint without ``/models`` (404) passes: it answered, and some
        proxies simply do not list models.
        """
        try:
            available = self.available_models(retries=0)
        except _NoModelListError:
            logger.info("%s has no model list; skipping the model check", self._base_url)
            return
        if available and self._model not in available:
            raise LLMModelNotFoundError(self._model_missing_message(available))

    def available_models(self, *, retries: int = 0) -> list[str]:
        """Model ids listed by ``GET {base_url}/models``."""
        response = self._send("GET", "/models", None, retries=retries, list_models=True)
        data = _json_of(response, self._url("/models"))
        entries = data.get("data")
        if not isinstance(entries, list):
            entries = []
        return [str(entry["id"]) for entry in entries if isinstance(entry, dict) and "id" in entry]

    def close(self) -> None:
        """Close the connection pool (the client reopens one if used again)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- HTTP --------------------------------------------------------------

    def _http(self) -> httpx.Client:
        """One pooled client, made on first use so the object pickles (Ray)."""
        with self._client_lock:
            if self._client is None:
                headers = {"Accept": "application/json, text/event-stream"}
                if self._api_key:
                    headers["Authorization"] = f"Bearer {self._api_key}"
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self._timeout_s, connect=min(self._timeout_s, 10.0)),
                    headers=headers,
                    transport=self._transport,
                )
            return self._client

    def _url(self, path: str) -> str:
        return f"{self._base_url}{path}"

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        retries: int,
        stream: bool = False,
        list_models: bool = False,
    ) -> httpx.Response:
        """A 2xx response, after retrying what is worth retrying.

        Non-retryable statuses are mapped to ``LLMError`` subclasses at once.
        A streamed response is returned open; the caller closes it.
        """
        url = self._url(path)
        attempts = retries + 1
        for attempt in range(1, attempts + 1):
            try:
                request = self._http().build_request(method, url, json=body)
                response = self._http().send(request, stream=stream)
            except httpx.TimeoutException as exc:
                failure: LLMError = LLMUnavailableError(
                    f"the LLM endpoint {url} did not answer within {self._timeout_s:g}s "
                    f"({attempt} attempt(s)); check the server's load or raise "
                    "RAGSERVE_LLM__TIMEOUT_S"
                )
                cause: BaseException = exc
                delay = self._backoff(attempt)
            except httpx.TransportError as exc:
                failure = LLMUnavailableError(
                    f"cannot reach the LLM endpoint {url} ({type(exc).__name__}: {exc}) after "
                    f"{attempt} attempt(s); check that the server is running and that "
                    "RAGSERVE_LLM__BASE_URL points at it"
                )
                cause = exc
                delay = self._backoff(attempt)
            else:
                if response.is_success:
                    return response
                if stream:
                    response.read()
                    response.close()
                if not _retryable(response.status_code):
                    raise self._status_error(response, url, list_models=list_models)
                failure = LLMUnavailableError(
                    f"the LLM endpoint {url} kept failing: HTTP {response.status_code} "
                    f"{_detail(response)} after {attempt} attempt(s); try again later"
                )
                cause = httpx.HTTPStatusError(
                    f"HTTP {response.status_code}", request=response.request, response=response
                )
                delay = self._retry_after(response) or self._backoff(attempt)
            if attempt == attempts:
                raise failure from cause
            logger.warning(
                "LLM request to %s failed (%s); retry %d of %d in %.2fs",
                url,
                cause if not isinstance(cause, httpx.HTTPStatusError) else str(cause),
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, base_s=self._backoff_base_s, cap_s=self._backoff_max_s)

    def _retry_after(self, response: httpx.Response) -> float | None:
        return retry_after_s(response.headers, cap_s=self._retry_after_cap_s)

    def _status_error(self, response: httpx.Response, url: str, *, list_models: bool) -> LLMError:
        status = response.status_code
        detail = _detail(response)
        if status in (401, 403):
            return LLMAuthError(
                f"the LLM endpoint rejected the API key (HTTP {status} from {url}: {detail}); "
                "set RAGSERVE_LLM__API_KEY to a key this endpoint accepts"
            )
        if list_models and status == 404:
            return _NoModelListError(f"{url} returned 404")
        if _is_model_not_found(response):
            return LLMModelNotFoundError(self._model_missing_message())
        if status == 404:
            return LLMError(
                f"{url} does not exist (HTTP 404: {detail}); RAGSERVE_LLM__BASE_URL should be "
                "the API root that has /chat/completions below it, usually ending in /v1"
            )
        return LLMError(
            f"the LLM endpoint rejected the request: HTTP {status} from {url}: {detail}"
        )

    def _model_missing_message(self, available: list[str] | None = None) -> str:
        if available is None:
            try:
                available = self.available_models()
            except LLMError:
                available = []
        listing = f"; it serves: {', '.join(sorted(available))}" if available else ""
        return (
            f"the LLM endpoint {self._base_url} does not serve the model {self._model!r}"
            f"{listing}. Set RAGSERVE_LLM__MODEL to a model it serves"
        )

    # --- payloads ----------------------------------------------------------

    def _chat_body(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {
            "model": self._model,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }

    def _deltas(self, response: httpx.Response) -> Iterator[str]:
        """The text of an answer stream, which must end as the protocol says it ends.

        A stream that stops without ``[DONE]`` or a ``finish_reason`` (a proxy
        that cut it, a server that crashed mid-answer with a clean close) is an
        error, not an answer that happens to be short; and a server trickling
        bytes gets the same total time as a whole answer (``timeout_s``), not
        ``timeout_s`` per read.
        """
        url = self._url("/chat/completions")
        deadline = time.monotonic() + self._timeout_s
        received = 0
        finished = False
        try:
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise LLMUnavailableError(
                        f"the answer stream from {url} did not finish within "
                        f"{self._timeout_s:g}s ({received} characters so far); check the "
                        "server's load or raise RAGSERVE_LLM__TIMEOUT_S"
                    )
                if not line.startswith("data:"):
                    continue  # blank separators, ": keep-alive" comments, "event:" names
                payload = line[len("data:") :].strip()
                if payload == "[DONE]":
                    return
                event = _parse_event(payload, url)
                finished = finished or _has_finish_reason(event)
                for delta in _event_deltas(event, url):
                    received += len(delta)
                    yield delta
        except httpx.TransportError as exc:
            raise LLMUnavailableError(
                f"the answer stream from {url} broke off after {received} characters "
                f"({type(exc).__name__}); ask again"
            ) from exc
        if not finished:
            raise LLMUnavailableError(
                f"the answer stream from {url} ended after {received} characters without "
                "[DONE] or a finish_reason, so the answer may be cut short; ask again"
            )


class _NoModelListError(LLMError):
    """The endpoint answers but has no ``/models`` route (internal signal)."""


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _detail(response: httpx.Response) -> str:
    """The server's own error message, short enough for a log line."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:_ERROR_DETAIL_CHARS] or response.reason_phrase
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:_ERROR_DETAIL_CHARS]
    if isinstance(error, str):
        return error[:_ERROR_DETAIL_CHARS]
    if isinstance(data, dict) and data.get("detail"):
        return str(data["detail"])[:_ERROR_DETAIL_CHARS]
    return json.dumps(data)[:_ERROR_DETAIL_CHARS]


def _is_model_not_found(response: httpx.Response) -> bool:
    if response.status_code not in (400, 404):
        return False
    try:
        data = response.json()
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("code") == "model_not_found":
        return True
    text = _detail(response).lower()
    return response.status_code == 404 and "model" in text


def _json_of(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise LLMError(
            f"{url} answered with something other than JSON ({response.text[:80]!r}); "
            "is RAGSERVE_LLM__BASE_URL an OpenAI-compatible API?"
        ) from exc
    if not isinstance(data, dict):
        raise LLMError(f"{url} answered with JSON that is not an object; is it OpenAI-compatible?")
    return data


def _message_text(data: dict[str, Any]) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(
            f"the LLM response has no choices[0].message.content: {json.dumps(data)[:200]}"
        ) from exc
    if not isinstance(content, str):
        raise LLMError("the LLM returned no text (content is null); try again or another model")
    return content


def _usage(data: dict[str, Any], prompt: Prompt, text: str) -> dict[str, int]:
    reported = data.get("usage")
    if not isinstance(reported, dict):
        reported = {}
    usage = {
        "prompt_tokens": estimate_tokens(prompt.system) + estimate_tokens(prompt.user),
        "completion_tokens": estimate_tokens(text),
    }
    for key in usage:
        if isinstance(reported.get(key), int):
            usage[key] = reported[key]
    return usage


def _parse_event(payload: str, url: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise LLMError(
            f"the answer stream from {url} sent malformed data: {payload[:80]!r}"
        ) from exc
    if not isinstance(event, dict):
        raise LLMError(f"the answer stream from {url} sent a non-object event: {payload[:80]!r}")
    return event


def _has_finish_reason(event: dict[str, Any]) -> bool:
    choices = event.get("choices") or []
    return any(isinstance(choice, dict) and choice.get("finish_reason") for choice in choices)


def _event_deltas(event: dict[str, Any], url: str) -> Iterator[str]:
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise LLMError(f"the LLM failed while streaming from {url}: {message}")
    for choice in event.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            yield content
