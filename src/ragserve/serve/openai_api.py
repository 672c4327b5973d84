"""An OpenAI-compatible facade: chat clients and SDKs can ask the docs directly.

The last user message is the question; earlier turns are ignored (answers
are grounded in the index, not the conversation). Responses are standard
``chat.completion`` objects with one extra field, ``sources``; streams are
``chat.completion.chunk`` events ending with ``data: [DONE]``, the last chunk
carrying the sources.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from ragserve.agent import AnswerEvent
from ragserve.documents import Answer
from ragserve.serve.routes import (
    ERROR_RESPONSES,
    SSE_HEADERS,
    Client,
    Ctx,
    ServiceContext,
    check_question,
    collect_answer,
    error_payload,
    next_event,
    observe,
    primed,
    sources_json,
)
from ragserve.serve.schemas import ChatCompletionRequest

MODEL_ID = "ragserve"

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models")
async def list_models(_client: Client) -> dict[str, Any]:
    """The one model this service offers: ``ragserve`` (retrieval + the configured LLM)."""
    return {
        "object": "list",
        "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ragserve"}],
    }


@router.post(
    "/chat/completions",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def chat_completions(body: ChatCompletionRequest, ctx: Ctx, _client: Client) -> Any:
    """Answer the last user message; ``stream: true`` sends ``chat.completion.chunk`` SSE."""
    question = body.question()
    if question is None or not question.strip():
        raise HTTPException(400, "messages need a non-empty message with role 'user'")
    check_question(ctx, question)
    events = ctx.agent.ask_stream(question, k=None, filters=None)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        return completion(await collect_answer(ctx, events), completion_id, created)
    first, until = await primed(ctx, events)
    chunks = _chunk_stream(ctx, first, events, until, completion_id, created)
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)


def completion(answer: Answer, completion_id: str, created: int) -> dict[str, Any]:
    prompt_tokens = answer.usage.get("prompt_tokens", 0)
    completion_tokens = answer.usage.get("completion_tokens", 0)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "sources": sources_json(answer.sources),
        "degraded": answer.degraded,
        "grounded": answer.grounded,
    }


def _chunk(
    completion_id: str, created: int, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _data(payload: dict[str, Any] | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n"


async def _chunk_stream(
    ctx: ServiceContext,
    first: AnswerEvent | None,
    events: AsyncGenerator[AnswerEvent, None],
    until: float,
    completion_id: str,
    created: int,
) -> AsyncIterator[str]:
    async with aclosing(events):
        yield _data(_chunk(completion_id, created, {"role": "assistant", "content": ""}, None))
        event = first
        try:
            while event is not None:
                if event.kind == "token" and event.text:
                    yield _data(_chunk(completion_id, created, {"content": event.text}, None))
                elif event.kind == "done" and event.answer is not None:
                    observe(ctx, event.answer)
                    final = _chunk(completion_id, created, {}, "stop")
                    final["sources"] = sources_json(event.answer.sources)
                    yield _data(final)
                event = await next_event(events, until)
        except Exception as exc:
            yield _data({"error": error_payload(ctx, exc)})
        yield _data("[DONE]")
