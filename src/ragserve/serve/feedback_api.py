"""``POST /feedback``: a reader's thumbs up or down on an answer, stored durably.

Behind the same API key and rate limit as ``/query``: the page gives no way
around either. The verdict is written to the SQLite log beside the index
(``ragserve.feedback``) in a worker thread, so a slow disk never stalls the
event loop; a log that cannot be written is a 503 that says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from ragserve.feedback import Feedback, FeedbackSource, FeedbackStore, feedback_path
from ragserve.serve.routes import ERROR_RESPONSES, Client, Ctx, ServiceContext
from ragserve.serve.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter()


def feedback_store(ctx: ServiceContext) -> FeedbackStore:
    """The app's feedback log, made on first use (the data dir may not exist at start)."""
    if ctx.feedback is None:
        ctx.feedback = FeedbackStore(feedback_path(ctx.settings.store.data_dir))
    return ctx.feedback


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses=ERROR_RESPONSES,
    summary="Record a thumbs up or down (and an optional comment) on an answer",
)
async def feedback(body: FeedbackRequest, ctx: Ctx, client: Client) -> dict[str, Any]:
    try:
        marked = body.marked_source()
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    store = feedback_store(ctx)
    previous = await run_in_threadpool(store.get, body.id) if body.id else None
    if previous is not None and previous.client != client:
        previous = None  # another caller's verdict: record a new one, never overwrite it
    record = Feedback(
        rating=body.rating,
        question=body.question,
        answer=body.answer,
        sources=tuple(
            FeedbackSource(n=item.n, url=item.url, title=item.title, score=item.score)
            for item in body.sources
        ),
        comment=(body.comment or "").strip() or None,
        correct_source=marked,
        index_version=body.index_version,
        request_id=body.request_id,
        model=body.llm,
        client=client,
    )
    if previous is not None:
        record = replace(record, id=previous.id, created_at=previous.created_at)
    await run_in_threadpool(store.record, record)
    return {"id": record.id, "rating": record.rating}


__all__ = ["feedback_store", "router"]
