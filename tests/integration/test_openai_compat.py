"""OpenAICompatibleLLM over real HTTP: llama_cpp.server and scripted failures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.support.llm_server import (
    Reply,
    RunningServer,
    ScriptedServer,
    chat_reply,
    free_port,
    llama_server,
    sse_reply,
)

from ragserve.errors import LLMAuthError, LLMError, LLMModelNotFoundError, LLMUnavailableError
from ragserve.generate import OpenAICompatibleLLM, Prompt

pytestmark = [pytest.mark.integration]

# Deliberately tiny: on a shared 2-core machine llama.cpp prefills only tens of tokens/s.
PROMPT = Prompt(
    system="Answer briefly.",
    user="What is the capital of France?",
    completion_text="Q: What is the capital of France?\nA:",
    sources_used=0,
)
UNAVAILABLE = Reply(status=503, body={"error": {"message": "overloaded"}})
MODEL_NOT_FOUND = Reply(
    status=404,
    body={"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}},
)


def client(base_url: str, **options: object) -> OpenAICompatibleLLM:
    defaults: dict[str, object] = {"model": "scripted", "timeout_s": 5.0, "retries": 3}
    defaults |= {"backoff_base_s": 0.02, "backoff_max_s": 0.1}
    return OpenAICompatibleLLM(base_url, **(defaults | options))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gemma() -> Iterator[RunningServer]:
    with llama_server() as server:
        yield server


@pytest.mark.slow
def test_complete_through_llama_cpp_server_returns_text_and_reported_usage(
    gemma: RunningServer,
) -> None:
    llm = OpenAICompatibleLLM(gemma.base_url, None, gemma.model, 120.0, 0, 2048)

    completion = llm.complete(PROMPT, max_tokens=8, temperature=0.0)

    assert completion.text.strip()
    assert completion.model == gemma.model
    assert completion.usage["prompt_tokens"] >= 5  # reported by the server, not estimated
    assert 0 < completion.usage["completion_tokens"] <= 8


@pytest.mark.slow
def test_stream_through_llama_cpp_server_yields_text_deltas(gemma: RunningServer) -> None:
    llm = OpenAICompatibleLLM(gemma.base_url, None, gemma.model, 120.0, 0, 2048)

    deltas = list(llm.stream(PROMPT, max_tokens=8, temperature=0.0))

    assert deltas
    assert all(isinstance(delta, str) and delta for delta in deltas)


@pytest.mark.slow
def test_check_accepts_the_served_model_and_names_the_served_ones_otherwise(
    gemma: RunningServer,
) -> None:
    OpenAICompatibleLLM(gemma.base_url, None, gemma.model).check()

    with pytest.raises(LLMModelNotFoundError, match=rf"'gpt-x'.*serves: {gemma.model}"):
        OpenAICompatibleLLM(gemma.base_url, None, "gpt-x").check()


def test_rejected_key_is_an_auth_error_without_retries() -> None:
    with ScriptedServer([Reply(status=401, body={"error": {"message": "bad key"}})]) as server:
        with pytest.raises(LLMAuthError, match="RAGSERVE_LLM__API_KEY"):
            client(server.base_url, api_key="sk-wrong").complete(
                PROMPT, max_tokens=8, temperature=0.0
            )

        assert server.attempts == 1
        assert server.requests[0][0]["authorization"] == "Bearer sk-wrong"


def test_two_503s_are_retried_then_the_answer_arrives() -> None:
    with ScriptedServer([UNAVAILABLE, UNAVAILABLE, chat_reply("hello [1]")]) as server:
        completion = client(server.base_url).complete(PROMPT, max_tokens=8, temperature=0.0)

        assert server.attempts == 3
    assert completion.text == "hello [1]"
    assert completion.usage == {"prompt_tokens": 11, "completion_tokens": 7}
    body = server.requests[0][1]
    assert [message["role"] for message in body["messages"]] == ["system", "user"]


def test_persistent_5xx_gives_up_after_the_configured_retries() -> None:
    with ScriptedServer([UNAVAILABLE]) as server:
        with pytest.raises(LLMUnavailableError, match="HTTP 503 overloaded after 3 attempt"):
            client(server.base_url, retries=2).complete(PROMPT, max_tokens=8, temperature=0.0)

        assert server.attempts == 3


def test_429_waits_for_retry_after_but_no_longer_than_the_cap() -> None:
    throttled = Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "600"})
    with ScriptedServer([throttled, chat_reply("ok")]) as server:
        started = time.monotonic()
        completion = client(server.base_url, retry_after_cap_s=0.3).complete(
            PROMPT, max_tokens=8, temperature=0.0
        )
        elapsed = time.monotonic() - started

    assert completion.text == "ok"
    assert 0.3 <= elapsed < 3


def test_other_4xx_fails_at_once_with_the_server_message() -> None:
    bad = Reply(status=400, body={"error": {"message": "max_tokens is too large"}})
    with ScriptedServer([bad]) as server:
        with pytest.raises(LLMError, match="max_tokens is too large"):
            client(server.base_url).complete(PROMPT, max_tokens=8, temperature=0.0)

        assert server.attempts == 1


def test_unknown_model_names_it_and_lists_the_served_models() -> None:
    models = Reply(body={"object": "list", "data": [{"id": "llama-3"}, {"id": "qwen"}]})
    with ScriptedServer([MODEL_NOT_FOUND], models=models) as server:
        with pytest.raises(LLMModelNotFoundError, match=r"'nope'.*serves: llama-3, qwen"):
            client(server.base_url, model="nope").complete(PROMPT, max_tokens=8, temperature=0.0)

        assert server.attempts == 1


def test_connection_refused_fails_fast_naming_the_url() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()

    with pytest.raises(LLMUnavailableError, match=f"cannot reach the LLM endpoint {base_url}"):
        OpenAICompatibleLLM(base_url, None, "m", 30.0, 2).complete(
            PROMPT, max_tokens=8, temperature=0.0
        )

    assert time.monotonic() - started < 3


def test_slow_server_times_out_with_advice_to_raise_the_timeout() -> None:
    slow = Reply(delay_s=1.0, body={})
    with (
        ScriptedServer([slow]) as server,
        pytest.raises(LLMUnavailableError, match="RAGSERVE_LLM__TIMEOUT_S"),
    ):
        client(server.base_url, timeout_s=0.2, retries=0).complete(
            PROMPT, max_tokens=8, temperature=0.0
        )


def test_stream_parses_server_sent_events_after_retrying_a_503() -> None:
    with ScriptedServer([UNAVAILABLE, sse_reply(["Port ", "8000", " [1]."])]) as server:
        deltas = list(client(server.base_url).stream(PROMPT, max_tokens=8, temperature=0.0))

        assert server.attempts == 2
        assert server.requests[1][1]["stream"] is True
    assert deltas == ["Port ", "8000", " [1]."]


def test_error_event_in_a_stream_raises_instead_of_ending_quietly() -> None:
    broken = Reply(sse=['{"choices": [{"delta": {"content": "Po"}}]}', '{"error": "oom"}'])
    with ScriptedServer([broken]) as server:
        stream = client(server.base_url).stream(PROMPT, max_tokens=8, temperature=0.0)

        assert next(stream) == "Po"
        with pytest.raises(LLMError, match="oom"):
            next(stream)


def test_a_stream_that_ends_without_done_is_an_error_not_a_short_answer() -> None:
    cut_clean = Reply(sse=['{"choices": [{"delta": {"content": "Port 80"}}]}'])
    with ScriptedServer([cut_clean]) as server:
        stream = client(server.base_url).stream(PROMPT, max_tokens=8, temperature=0.0)

        assert next(stream) == "Port 80"
        with pytest.raises(LLMUnavailableError, match="without \\[DONE\\] or a finish_reason"):
            next(stream)


def test_a_finish_reason_ends_a_stream_that_has_no_done() -> None:
    events = [
        '{"choices": [{"delta": {"content": "Port 8000."}}]}',
        '{"choices": [{"delta": {}, "finish_reason": "stop"}]}',
    ]
    with ScriptedServer([Reply(sse=events)]) as server:
        deltas = list(client(server.base_url).stream(PROMPT, max_tokens=8, temperature=0.0))

    assert deltas == ["Port 8000."]


def test_a_stream_cut_mid_body_names_how_much_arrived() -> None:
    reply = sse_reply(["Port ", "8000", " [1]."])
    first_event = len(f"data: {reply.sse[0]}\n\n")
    with ScriptedServer([Reply(sse=reply.sse, cut_after=first_event)]) as server:
        stream = client(server.base_url, retries=0).stream(PROMPT, max_tokens=8, temperature=0.0)

        assert next(stream) == "Port "
        with pytest.raises(LLMUnavailableError, match="broke off after 5 characters"):
            next(stream)


def test_a_trickling_stream_gets_the_whole_answer_timeout_not_one_per_read() -> None:
    trickle = sse_reply([f"w{i} " for i in range(40)])
    with ScriptedServer([Reply(sse=trickle.sse, pace_s=0.1)]) as server:
        llm = client(server.base_url, timeout_s=1.0)
        started = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="did not finish within 1s"):
            list(llm.stream(PROMPT, max_tokens=8, temperature=0.0))
        elapsed = time.monotonic() - started

    assert elapsed < 3.5  # 40 events at 0.1 s would take 4 s; each read alone is quick
