"""What the HTTP layer calls: ``AgentLike``, and ``LocalAgent`` over a ``QueryAgent``.

Routes are async and must never block the event loop, while ``QueryAgent``
is synchronous (torch, Qdrant Edge, blocking HTTP to the LLM). ``LocalAgent``
runs its calls in worker threads and turns ``ask_stream`` into an async
iterator fed by a thread. The Ray Serve ingress provides the same interface
over deployment handles (``ragserve.serve.deployments``), so one FastAPI app
serves both ways.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

from starlette.concurrency import run_in_threadpool

from ragserve.agent import AnswerEvent, QueryAgent
from ragserve.documents import Source
from ragserve.errors import RagserveError
from ragserve.query import SearchFilter, SearchMode

logger = logging.getLogger(__name__)

T = TypeVar("T")
SearchResult = tuple[list[Source], dict[str, float]]


@runtime_checkable
class AgentLike(Protocol):
    """The asynchronous agent interface the FastAPI app is written against."""

    async def search(
        self, question: str, *, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> SearchResult:
        """Numbered sources and stage timings, without generation."""
        ...

    def ask_stream(
        self, question: str, *, k: int | None, filters: SearchFilter | None
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Token events, then one sources event, then one done event with the answer."""
        ...

    async def readiness(self) -> list[str]:
        """Why the service cannot answer now (empty when ready)."""
        ...

    async def index_info(self) -> dict[str, Any]:
        """The index for the status page (``ragserve.serve.status.index_info``)."""
        ...

    async def warm_up(self) -> None:
        """Load models and open the index before traffic arrives."""
        ...


class LocalAgent:
    """A ``QueryAgent`` in this process, its blocking calls run in threads."""

    def __init__(self, agent: QueryAgent) -> None:
        self.agent = agent

    async def search(
        self, question: str, *, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> SearchResult:
        return await run_in_threadpool(self.agent.search, question, k=k, filters=filters, mode=mode)

    def ask_stream(
        self, question: str, *, k: int | None, filters: SearchFilter | None
    ) -> AsyncGenerator[AnswerEvent, None]:
        return iterate_in_thread(lambda: self.agent.ask_stream(question, k=k, filters=filters))

    async def readiness(self) -> list[str]:
        return await run_in_threadpool(readiness_problems, self.agent)

    async def index_info(self) -> dict[str, Any]:
        from ragserve.serve.status import index_info

        return await run_in_threadpool(index_info, self.agent)

    async def warm_up(self) -> None:
        await run_in_threadpool(self.agent.warm_up)


def readiness_problems(agent: QueryAgent) -> list[str]:
    """Index open and non-empty, LLM reachable; each failure as a readable reason."""
    problems: list[str] = []
    try:
        store = agent.store
        if not store.exists() or store.count() == 0:
            problems.append(
                f"index '{store.name}' is missing or empty; build it with `ragserve ingest`"
            )
    except RagserveError as exc:
        problems.append(f"index: {exc}")
    try:
        agent.llm.check()
    except RagserveError as exc:
        problems.append(f"llm: {exc}")
    return problems


_END = object()


async def iterate_in_thread(make_iterator: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """Run a blocking iterator in a worker thread and yield its items here.

    The iterator is created inside the thread, so even its set-up (retrieval)
    stays off the event loop. When the consumer stops early (client gone,
    timeout) the thread is told to stop at its next item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[object, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: object, error: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop closed under us: nobody is listening any more
            stop.set()

    def produce() -> None:
        try:
            for item in make_iterator():
                if stop.is_set():
                    return
                put(item)
        except BaseException as exc:
            put(_END, exc)
        else:
            put(_END)

    worker = loop.run_in_executor(None, produce)
    try:
        while True:
            item, error = await queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if worker.done():
            worker.result()


__all__ = ["AgentLike", "LocalAgent", "SearchResult", "iterate_in_thread", "readiness_problems"]
