"""An OpenAI-compatible facade: chat clients and SDKs can ask the docs directly.

The last user message is the question; earlier turns are ignored (answers
are grounded in the index, not the conversation). Responses are standard
``chat.completion`` objects with one extra field, ``sources``; streams are
``chat.completion.chunk`` events ending with ``data: [DONE]``, the last chunk
carrying the sources.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from ragserve.agent import AnswerEvent
from ragserve.documents import Answer
from ragserve.serve.failures import ApiError
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
    sse,
)
from ragserve.serve.schemas import ChatCompletionRequest, ErrorResponse

MODEL_ID = "ragserve"

router = APIRouter(prefix="/v1", tags=["openai"])


MODEL = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ragserve"}


@router.get("/models")
async def list_models(_client: Client) -> dict[str, Any]:
    """The one model this service offers: ``ragserve`` (retrieval + the configured LLM)."""
    return {"object": "list", "data": [MODEL]}


@router.get("/models/{model_id}", responses=ERROR_RESPONSES | {404: {"model": ErrorResponse}})
async def retrieve_model(model_id: str, _client: Client) -> dict[str, Any]:
    """One model by id (``client.models.retrieve``): ``ragserve``, or 404 ``model_not_found``."""
    if model_id != MODEL_ID:
        raise ApiError(
            404,
            "model_not_found",
            f"the model {model_id[:100]!r} does not exist; this service serves {MODEL_ID!r}",
        )
    return MODEL


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
    usage = body.stream_options is not None and body.stream_options.include_usage
    chunks = _chunk_stream(ctx, first, events, until, completion_id, created, usage=usage)
    return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)


def usage_json(answer: Answer) -> dict[str, int]:
    prompt_tokens = answer.usage.get("prompt_tokens", 0)
    completion_tokens = answer.usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(answer: Answer, completion_id: str, created: int) -> dict[str, Any]:
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
        "usage": usage_json(answer),
        "sources": sources_json(answer.sources),
        "degraded": answer.degraded,
        "grounded": answer.grounded,
    }


async def _chunk_stream(
    ctx: ServiceContext,
    first: AnswerEvent | None,
    events: AsyncGenerator[AnswerEvent, None],
    until: float,
    completion_id: str,
    created: int,
    *,
    usage: bool = False,
) -> AsyncIterator[str]:
    """The chunks; with ``usage`` (``stream_options.include_usage``) every chunk has
    ``usage: null`` and a last one, with empty ``choices``, the token counts."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            body["usage"] = None
        return body

    async with aclosing(events):
        yield sse(None, chunk({"role": "assistant", "content": ""}, None))
        event = first
        try:
            while event is not None:
                if event.kind == "token" and event.text:
                    yield sse(None, chunk({"content": event.text}, None))
                elif event.kind == "done" and event.answer is not None:
                    observe(ctx, event.answer)
                    final = chunk({}, "stop")
                    final["sources"] = sources_json(event.answer.sources)
                    yield sse(None, final)
                    if usage:
                        last = chunk({}, None) | {"choices": [], "usage": usage_json(event.answer)}
                        yield sse(None, last)
                event = await next_event(events, until)
        except Exception as exc:
            yield sse(None, {"error": error_payload(ctx, exc)})
        yield sse(None, "[DONE]")
