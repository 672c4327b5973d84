"""``QueryAgent``: the one object the CLI and the HTTP API call.

question → retrieve (hybrid, filtered, diversified, reranked) → prompt with
numbered sources → LLM → ``Answer`` with deep-linked sources and per-stage
timings. When the LLM fails, the agent still answers from the sources with an
extractive summary and marks the answer ``degraded`` (``strict=True`` raises
instead), because a user with sources beats a user with a stack trace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ragserve.config import EmbedSettings, Settings
from ragserve.documents import Answer, ScoredChunk, Source
from ragserve.embed import Embedder, build_embedder
from ragserve.errors import IndexNotFoundError, LLMError, QueryError, SchemaMismatchError
from ragserve.generate import LLM, NO_ANSWER, ExtractiveLLM, build_llm, build_prompt
from ragserve.generate.citations import CITATION, cite_from_chunks, drop_unretrieved
from ragserve.rerank import Reranker, build_reranker
from ragserve.retrieve import Retrieval, Retriever
from ragserve.store import SearchFilter, VectorStore, open_store
from ragserve.store.base import SearchMode
from ragserve.store.live import LiveIndex

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 300
FALLBACK_LABEL = "The language model is unavailable; extracted from the documentation instead:"


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """One step of a streamed answer: tokens, then sources, then the full answer."""

    kind: Literal["token", "sources", "done"]
    text: str = ""
    sources: tuple[Source, ...] = ()
    answer: Answer | None = None


class QueryAgent:
    """Retrieval plus generation over one index; thread-safe after warm-up."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: VectorStore | None = None,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        follow_live: bool = False,
    ) -> None:
        """``follow_live`` (servers): move to a newly published index version without
        a restart (see ``ragserve.store.live``); ignored when ``store`` is given."""
        self.settings = settings
        self._store = store
        self._embedder = embedder
        self._llm = llm
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()
        self._follow = follow_live and store is None
        self._live: LiveIndex[Retriever] | None = None
        self._reranker: Reranker | None = None

    # -- lazy components ---------------------------------------------------
    @property
    def store(self) -> VectorStore:
        """The index (while following: the live version's handle, which changes)."""
        if self._follow:
            return self._live_index().current()[0]
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings.store)
            return self._store

    @property
    def llm(self) -> LLM:
        with self._lock:
            if self._llm is None:
                self._llm = build_llm(self.settings.llm, self.settings.models_dir)
            return self._llm

    @property
    def retriever(self) -> Retriever:
        if self._follow:
            return self._live_index().current()[1]
        store = self.store
        with self._lock:
            if self._retriever is None:
                self._retriever = self._build_retriever(store)
            return self._retriever

    def _build_retriever(self, store: VectorStore) -> Retriever:
        """A retriever over ``store``; the embedder and reranker load once per agent."""
        embed = self._embed_settings_for(store)
        if self._embedder is None:
            # One thread per query: a short text gains nothing from more, and
            # concurrent requests then use the cores side by side.
            self._embedder = build_embedder(
                embed,
                models_dir=self.settings.models_dir,
                threads=embed.threads or 1,
            )
        if self._reranker is None and self.settings.retrieve.reranker:
            self._reranker = build_reranker(
                self.settings.retrieve.reranker, models_dir=self.settings.models_dir
            )
        return Retriever(store, self._embedder, self.settings.retrieve, reranker=self._reranker)

    def _live_index(self) -> LiveIndex[Retriever]:
        with self._lock:
            if self._live is None:
                if self._store is None:
                    self._store = open_store(self.settings.store)
                self._live = LiveIndex(
                    self._store,
                    self._build_retriever,
                    poll_s=self.settings.store.version_poll_s,
                )
            return self._live

    def index_version(self) -> str | None:
        """The index version new requests are answered from."""
        if self._follow:
            live = self._live_index()
            live.refresh()
            return live.version
        return self.store.version

    def _embed_settings_for(self, store: VectorStore) -> EmbedSettings:
        """The embedding settings that match ``store``'s index.

        With no model asked for, queries use the model the index was built
        with; that is a derived copy, because the ``Settings`` this agent was
        given are shared with its caller and never mutated.
        """
        schema = store.stored_schema() if store.exists() else None
        if schema is None or store.count() == 0:
            raise IndexNotFoundError(
                f"index '{store.name}' is missing or empty; build it first with "
                "`ragserve ingest <url-or-folder>` (same --data-dir / --collection)"
            )
        if schema.embed_model != self.settings.embed.model:
            if "model" in self.settings.embed.model_fields_set:
                raise SchemaMismatchError(
                    f"index '{store.name}' was built with {schema.embed_model} "
                    f"({schema.dimension}-d); you asked for {self.settings.embed.model}. "
                    "Query with the index's model (drop --embed-model) or re-ingest with "
                    "--recreate --embed-model ..."
                )
            # No model was asked for: use the one the index was built with.
            return self.settings.embed.model_copy(update={"model": schema.embed_model})
        return self.settings.embed

    def warm_up(self) -> None:
        """Open the index and load the embedder now, not on the first request."""
        self.retriever.embedder.embed_query("warm up")

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
        if self._store is not None:
            self._store.close()

    # -- the API -----------------------------------------------------------
    def search(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: SearchFilter | None = None,
        mode: SearchMode | None = None,
    ) -> tuple[list[Source], dict[str, float]]:
        """Retrieval only: numbered sources and stage timings."""
        retrieval = self._retrieve(question, k, filters, mode)
        return to_sources(retrieval.chunks), retrieval.timings

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: SearchFilter | None = None,
        strict: bool = False,
    ) -> Answer:
        """Answer ``question`` from the index, citing sources as ``[n]``."""
        answer: Answer | None = None
        for event in self.ask_stream(question, k=k, filters=filters, strict=strict):
            if event.kind == "done":
                answer = event.answer
        assert answer is not None
        return answer

    def answer_retrieved(
        self, question: str, retrieval: Retrieval, *, strict: bool = False
    ) -> Answer:
        """``ask`` for a retrieval done elsewhere: ``eval`` retrieves once, then
        lets each generator answer from the same chunks."""
        answer: Answer | None = None
        for event in self.generate_stream(question, retrieval, strict=strict):
            if event.kind == "done":
                answer = event.answer
        assert answer is not None
        return answer

    def ask_stream(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: SearchFilter | None = None,
        strict: bool = False,
    ) -> Iterator[AnswerEvent]:
        """Like ``ask`` but yields tokens as the LLM writes them."""
        retrieval = self._retrieve(question, k, filters, None)
        yield from self.generate_stream(question, retrieval, strict=strict)

    def generate_stream(
        self, question: str, retrieval: Retrieval, *, strict: bool = False
    ) -> Iterator[AnswerEvent]:
        """The generation half of ``ask_stream``, for a retrieval done elsewhere.

        Ray Serve's Generator deployment calls this with the chunks its
        Retriever deployment found, so the two sides scale separately.
        """
        started = time.perf_counter() - sum(retrieval.timings.values())
        timings = dict(retrieval.timings)
        chunks = retrieval.chunks
        llm = self.llm
        max_tokens = self.settings.llm.max_tokens
        warnings: list[str] = []
        degraded = False
        parts: list[str] = []
        t_gen = time.perf_counter()
        prompt = build_prompt(question, chunks, llm, max_tokens=max_tokens)
        try:
            for delta in llm.stream(
                prompt, max_tokens=max_tokens, temperature=self.settings.llm.temperature
            ):
                parts.append(delta)
                yield AnswerEvent(kind="token", text=delta)
            model = llm.model
        except LLMError as exc:
            if strict:
                raise
            logger.warning("LLM failed, answering extractively: %s", exc)
            warnings.append(
                f"the language model failed ({exc}); showing extracted passages instead"
            )
            degraded = True
            fallback = ExtractiveLLM(label=FALLBACK_LABEL)
            fallback_prompt = build_prompt(question, chunks, fallback, max_tokens=max_tokens)
            text = fallback.complete(fallback_prompt, max_tokens=max_tokens, temperature=0.0).text
            # Tokens already sent stay on the client's screen: set the passages apart.
            # The final answer (the ``done`` event) is the passages alone.
            yield AnswerEvent(kind="token", text=f"\n\n{text}" if parts else text)
            parts = [text]
            model = fallback.model
        timings["generate"] = time.perf_counter() - t_gen
        timings["total"] = time.perf_counter() - started
        sources = to_sources(chunks[: prompt.sources_used] if prompt.sources_used else chunks)
        if not chunks:
            warnings.append("no matching passages were found in the index")
        text = "".join(parts).strip()
        if not degraded and not isinstance(llm, ExtractiveLLM):
            # A small model forgets [n]; cite each sentence from the source it is drawn from.
            text = cite_from_chunks(text, chunks[: len(sources)])
        yield AnswerEvent(kind="sources", sources=tuple(sources))
        usage = _usage(llm, prompt.user, text)
        grounded, grounding_warnings = check_citations(text, len(sources))
        warnings.extend(grounding_warnings)
        # Only retrieved sources may be cited: a [n] copied from a page or invented goes.
        text, _ = drop_unretrieved(text, len(sources))
        answer = Answer(
            question=question,
            text=text,
            sources=tuple(sources),
            model=model,
            timings={key: round(value, 4) for key, value in timings.items()},
            usage=usage,
            degraded=degraded,
            warnings=tuple(warnings),
            grounded=grounded,
        )
        yield AnswerEvent(kind="done", answer=answer)

    def retrieve(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: SearchFilter | None = None,
        mode: SearchMode | None = None,
    ) -> Retrieval:
        """Retrieval only, as ``search`` does it, returning the scored chunks."""
        return self._retrieve(question, k, filters, mode)

    def _retrieve(
        self,
        question: str,
        k: int | None,
        filters: SearchFilter | None,
        mode: SearchMode | None,
    ) -> Retrieval:
        limit = 10_000
        if len(question) > limit:
            raise QueryError(f"the question is {len(question)} characters; the limit is {limit}")
        if not self._follow:
            return self.retriever.retrieve(question, k=k, search_filter=filters, mode=mode)
        with self._live_index().lease() as (_, retriever):
            return retriever.retrieve(question, k=k, search_filter=filters, mode=mode)


def check_citations(text: str, n_sources: int) -> tuple[bool, list[str]]:
    """Is the answer tied to its sources? Returns (grounded, warnings).

    The prompt asks for ``[n]`` citations; an answer that cites nothing (and
    is not the "I don't know" reply), or cites a number with no source
    behind it, is flagged so a client can show it as unverified.
    """
    cited = {int(number) for number in CITATION.findall(text)}
    invalid = sorted(n for n in cited if not 1 <= n <= n_sources)
    warnings = []
    if invalid:
        listed = ", ".join(f"[{n}]" for n in invalid)
        warnings.append(
            f"the answer cites {listed}, which no source has (removed); treat it as unverified"
        )
    if not cited and NO_ANSWER.lower() not in text.lower() and n_sources:
        warnings.append("the answer cites no source; treat it as unverified")
    return not warnings, warnings


def to_sources(chunks: Sequence[ScoredChunk]) -> list[Source]:
    """Number retrieved chunks as citations ``[1]..[n]`` with deep links."""
    return [
        Source(
            n=i,
            url=scored.chunk.section_url,
            title=_title(scored),
            score=round(float(scored.score), 6),
            snippet=_snippet(scored.chunk.text),
            page_url=scored.chunk.url,
            heading_path=scored.chunk.heading_path,
        )
        for i, scored in enumerate(chunks, start=1)
    ]


def _title(scored: ScoredChunk) -> str:
    chunk = scored.chunk
    if chunk.heading_path and chunk.heading_path[-1] != chunk.title:
        return (
            f"{chunk.title} › {chunk.heading_path[-1]}" if chunk.title else chunk.heading_path[-1]
        )
    return chunk.title or chunk.url


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def _usage(llm: LLM, prompt_text: str, completion: str) -> dict[str, int]:
    try:
        return {
            "prompt_tokens": llm.count_tokens(prompt_text),
            "completion_tokens": llm.count_tokens(completion),
        }
    except Exception:  # token counting is informational only
        return {}


def source_to_dict(source: Source) -> dict[str, Any]:
    """The JSON shape of one citation."""
    return {
        "n": source.n,
        "url": source.url,
        "page_url": source.page_url,
        "title": source.title,
        "score": source.score,
        "snippet": source.snippet,
        "heading_path": list(source.heading_path),
    }


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    """The JSON shape of an answer, shared by ``ask --json`` and the API."""
    return {
        "question": answer.question,
        "answer": answer.text,
        "sources": [source_to_dict(source) for source in answer.sources],
        "model": answer.model,
        "timings": answer.timings,
        "usage": answer.usage,
        "degraded": answer.degraded,
        "grounded": answer.grounded,
        "warnings": list(answer.warnings),
    }


__all__ = ["AnswerEvent", "QueryAgent", "answer_to_dict", "source_to_dict", "to_sources"]
