"""``GET /api/status``: what the web page's status view and header show.

The index side (collection, points, embedder, last ingest) is read where the
index is open: in this process for a local agent, in the Retriever replica
under Ray Serve's split layout (``index_info`` is what both call). The LLM
side comes from the settings plus the same readiness checks ``/readyz``
runs, so the page and an orchestrator never disagree about "reachable".
The route sits behind the API key and rate limit like every data route.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

import ragserve
from ragserve.agent import QueryAgent
from ragserve.config import LLMSettings
from ragserve.errors import RagserveError
from ragserve.generate.factory import resolve_provider
from ragserve.generate.local import LOCAL_MODEL
from ragserve.serve.routes import ERROR_RESPONSES, Client, Ctx
from ragserve.serve.schemas import StatusResponse

router = APIRouter()

#: Keys of the stored last-ingest summary the page shows (not its per-page failures).
_INGEST_FIELDS = (
    "source",
    "pages",
    "pages_written",
    "pages_skipped",
    "pages_deleted",
    "chunks",
    "points_written",
    "points_deleted",
    "points_total",
    "seconds",
    "finished_at",
)


def index_info(agent: QueryAgent) -> dict[str, Any]:
    """The index as the status page shows it; a store failure becomes ``error``."""
    store_settings = agent.settings.store
    info: dict[str, Any] = {
        "collection": store_settings.collection,
        "backend": store_settings.backend,
        "exists": False,
        "points": 0,
        "schema": None,
        "last_ingest": None,
        "index_version": None,
        "last_eval": None,
        "error": None,
    }
    try:
        store = agent.store
        if not store.exists():
            return info
        schema = store.stored_schema()
        meta = store.get_meta()
        last = meta.get("last_ingest")
        info.update(
            last_eval=_eval_summary(meta.get("eval")),
            exists=True,
            points=store.count(),
            schema=schema.to_dict() if schema else None,
            last_ingest=_ingest_summary(last),
            index_version=_store_version(store) or index_version(store.name, last),
        )
    except RagserveError as exc:
        info["error"] = str(exc)
    return info


def index_version(collection: str, last_ingest: Any) -> str | None:
    """A label for the index as it is now: the collection and when ingest last finished.

    Feedback records it, so verdicts given before and after a re-ingest can
    be told apart.
    """
    if not isinstance(last_ingest, dict) or "finished_at" not in last_ingest:
        return None
    return f"{collection}@{int(float(last_ingest['finished_at']))}"


def _store_version(store: object) -> str | None:
    """The version this store handle reads, where the backend keeps versions."""
    version = getattr(store, "version", None)
    if callable(version):
        version = version()
    return str(version) if version else None


def _eval_summary(evaluation: Any) -> dict[str, Any] | None:
    """The quality gate's outcome recorded with this version (``ingest --eval``)."""
    if not isinstance(evaluation, dict) or "retrieval_score" not in evaluation:
        return None
    keys = ("retrieval_score", "passed", "evaluated_at", "questions", "report")
    return {key: evaluation.get(key) for key in keys}


def _ingest_summary(last: Any) -> dict[str, Any] | None:
    if not isinstance(last, dict):
        return None
    summary = {key: last[key] for key in _INGEST_FIELDS if key in last}
    failed = last.get("pages_failed")
    summary["pages_failed"] = len(failed) if isinstance(failed, list) else 0
    return summary


def llm_model_name(llm: LLMSettings, provider: str) -> str | None:
    """The model the settings name, without loading it (None: the backend's default)."""
    if provider == "openai":
        return llm.model
    if llm.model_path and provider in {"llamacpp", "local"}:
        return llm.model_path.name
    if provider == "local":
        return LOCAL_MODEL
    return None if provider == "llamacpp" else "extractive"


@router.get(
    "/api/status",
    response_model=StatusResponse,
    responses=ERROR_RESPONSES,
    summary="The index, the LLM and the service limits, for the web page's status view",
)
async def status(ctx: Ctx, _client: Client) -> dict[str, Any]:
    index, problems = await asyncio.gather(ctx.agent.index_info(), ctx.agent.readiness())
    llm_problems = [p.removeprefix("llm: ") for p in problems if p.startswith("llm:")]
    settings = ctx.settings
    # ``auto`` shown as what it resolves to (the offline model when fetched, else extractive).
    provider = resolve_provider(settings.llm, settings.models_dir)
    return {
        "version": ragserve.__version__,
        "ready": not problems,
        "problems": problems,
        "index": index,
        "llm": {
            "provider": provider,
            "model": llm_model_name(settings.llm, provider),
            "reachable": not llm_problems,
            "problem": llm_problems[0] if llm_problems else None,
        },
        "retrieve": {"k": settings.retrieve.k, "mode": settings.retrieve.mode, "max_k": 100},
        "auth_required": ctx.keys.required,
        "rate_limit_per_minute": settings.serve.rate_limit_per_minute,
    }


__all__ = ["index_info", "index_version", "router"]
