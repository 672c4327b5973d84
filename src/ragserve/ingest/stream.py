"""Pages stream from the source into Ray Data while the source is still being read.

Why: a crawl is network-bound and the embedder CPU-bound, so they should run
at the same time; and a corpus held whole (every page in the driver, then
all of it in Ray's object store) makes memory grow with the corpus. Here a
thread reads the source (``PageStream``), keeps only the sync bookkeeping
(URLs and hashes, ``SyncPlan``) and hands pages to write on in blocks of
``BLOCK_PAGES`` through a queue of at most ``QUEUE_BLOCKS`` blocks; the
driver forwards them to a Ray queue that one long-running Ray Data read
task (``QueuedPages``) drains, so a single pipeline — one embedding actor
pool, loaded once — runs from the first page to the last. When the
embedder falls behind, Ray Data's backpressure stops the read, the queues
fill, and the crawl waits: pages in flight are bounded, not the corpus.

Ray Data merges a read task's output until it reaches
``DataContext.target_max_block_size`` (128 MiB by default) before passing it
on, which would hold a streamed crawl back until its end; ``streaming``
lowers that to ``BLOCK_BYTES`` for the run. Downstream stages re-batch
(``batch_size``), so smaller blocks only cost object-store bookkeeping.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ragserve.documents import Document
from ragserve.ingest.stages import document_to_row

logger = logging.getLogger(__name__)

#: Pages per block handed to Ray Data: small enough that embedding starts
#: after the first few dozen pages, large enough that per-block costs vanish.
BLOCK_PAGES = 32
#: Blocks the source may run ahead of Ray Data (in each of the two queues).
QUEUE_BLOCKS = 4
#: Ray Data's output block size for the run (see the module docstring).
BLOCK_BYTES = 256 * 1024

Row = dict[str, Any]
_POLL_S = 0.1


class PageStream:
    """Reads ``items`` on a thread; ``accept(item)`` returns the page to write, if any.

    ``blocks()`` yields lists of rows (``document_to_row``) as the thread
    produces them and ends when the source does. A failure of the source is
    kept in ``error`` (raised by the caller once the pages read so far are
    written or dropped); ``seconds`` is how long reading the source took.
    """

    def __init__(
        self,
        items: Iterable[object],
        accept: Callable[[object], Document | None],
        *,
        block_pages: int = BLOCK_PAGES,
        queue_blocks: int = QUEUE_BLOCKS,
    ) -> None:
        self._items = items
        self._accept = accept
        self._block_pages = block_pages
        self._queue: queue.Queue[list[Row] | None] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ragserve-source", daemon=True)
        self.error: BaseException | None = None
        self.seconds = 0.0

    def __enter__(self) -> PageStream:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop reading (when the consumer failed) and wait for the thread to end."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)  # make room for a blocked put
        self._thread.join()

    def blocks(self) -> Iterator[list[Row]]:
        """The blocks in order; ends with the source, or soon after the stream is stopped."""
        while True:
            try:
                block = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set() or not self._thread.is_alive():
                    return
                continue
            if block is None:
                return
            yield block

    def _run(self) -> None:
        started = time.perf_counter()
        block: list[Row] = []
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                document = self._accept(item)
                if document is None:
                    continue
                block.append(document_to_row(document))
                if len(block) >= self._block_pages:
                    self._put(block)
                    block = []
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - started
            if block:
                self._put(block)  # every page read before the end or a failure arrives
            self._put(None)

    def _put(self, block: list[Row] | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(block, timeout=_POLL_S)
                return
            except queue.Full:
                continue


def queued_pages_dataset(ray: Any, pages: Any) -> Any:
    """A Ray Data dataset of the rows put on the Ray queue ``pages`` until a ``None``."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class QueuedPages(Datasource):  # type: ignore[misc]
        """One read task that yields a block per block put on the queue."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[Any]:
            metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None)
            return [ReadTask(functools.partial(_read_queue, pages), metadata)]

    # A sliver of a CPU: the read mostly waits on the queue, and must not take a
    # slot the extraction tasks or the embedder need.
    return ray.data.read_datasource(QueuedPages(), override_num_blocks=1, num_cpus=0.05)


def _read_queue(pages: Any) -> Iterator[Any]:
    import pyarrow as pa  # type: ignore[import-untyped]

    while (rows := pages.get()) is not None:
        yield pa.Table.from_pylist(rows)


@contextlib.contextmanager
def streaming(ray: Any, first: list[Row], rest: Iterator[list[Row]]) -> Iterator[Any]:
    """The Ray queue that ``queued_pages_dataset`` reads, fed with ``first`` then ``rest``.

    A thread forwards the blocks (the driver's iteration of the pipeline must
    not wait on the source) and ends the queue with ``None``; Ray Data's block
    size is lowered for the duration (module docstring).
    """
    from ray.util.queue import Queue

    context = ray.data.DataContext.get_current()
    block_bytes = context.target_max_block_size
    context.target_max_block_size = BLOCK_BYTES
    pages = Queue(maxsize=QUEUE_BLOCKS, actor_options={"num_cpus": 0})
    stop = threading.Event()

    def forward() -> None:
        for block in _chain(first, rest):
            if not _put_until(pages, block, stop):
                return
        _put_until(pages, None, stop)

    forwarder = threading.Thread(target=forward, name="ragserve-forward", daemon=True)
    forwarder.start()
    try:
        yield pages
    finally:
        stop.set()
        # A forwarder waiting on the source ends when the PageStream is stopped.
        forwarder.join(timeout=1)
        context.target_max_block_size = block_bytes
        pages.shutdown()


def _chain(first: list[Row], rest: Iterator[list[Row]]) -> Iterator[list[Row]]:
    yield first
    yield from rest


def _put_until(pages: Any, block: list[Row] | None, stop: threading.Event) -> bool:
    """Put ``block`` on the Ray queue, waiting while it is full; False once stopped."""
    from ray.util.queue import Full

    while not stop.is_set():
        try:
            pages.put(block, timeout=_POLL_S * 5)
            return True
        except Full:
            continue
        except Exception:  # the queue actor is gone: the run is over
            return False
    return False
