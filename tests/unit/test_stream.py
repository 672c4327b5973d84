"""PageStream: the source runs ahead of the consumer by a bounded number of pages.

Why it matters: a crawl of a large site used to be held whole in the driver
and then in Ray's object store, so memory grew with the corpus. These tests
pin the bound (queue blocks + the block being filled + the one being put),
the order, the filter, and how a failing source or consumer ends the thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ragserve.documents import Document
from ragserve.ingest.stream import PageStream


class CountingSource:
    """A source of ``total`` pages that records how many it has yielded."""

    def __init__(self, total: int, fail_at: int | None = None) -> None:
        self.total = total
        self.fail_at = fail_at
        self.yielded = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[object]:
        for i in range(self.total):
            if i == self.fail_at:
                raise RuntimeError(f"source broke at page {i}")
            with self.lock:
                self.yielded += 1
            yield Document(url=f"https://docs.test/p{i}", content=f"<p>page {i}</p>")


def _keep(item: object) -> Document | None:
    return item if isinstance(item, Document) else None


def _wait_until_stalled(source: CountingSource, settle_s: float = 0.3) -> int:
    """Wait until the source stops advancing (blocked on a full queue); its count then."""
    last = -1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with source.lock:
            now = source.yielded
        if now == last:
            return now
        last = now
        time.sleep(settle_s)
    raise AssertionError("the source never stopped advancing")


def test_a_slow_consumer_holds_the_source_back_to_a_bounded_lead() -> None:
    block_pages, queue_blocks = 4, 2
    source = CountingSource(total=1000)
    with PageStream(source, _keep, block_pages=block_pages, queue_blocks=queue_blocks) as stream:
        blocks = stream.blocks()
        consumed = 0
        # Bound: full queue + one block waiting to be put + the page that filled it.
        bound = (queue_blocks + 1) * block_pages + 1
        for _ in range(5):
            lead = _wait_until_stalled(source) - consumed
            assert 0 < lead <= bound, f"source ran {lead} pages ahead (bound {bound})"
            consumed += len(next(blocks))
        assert source.yielded < 100  # nowhere near the 1000 pages of the corpus


def test_every_accepted_page_arrives_once_in_order_in_full_blocks() -> None:
    source = CountingSource(total=23)
    only_even = lambda item: item if item.url[-1] in "02468" else None  # type: ignore[attr-defined]  # noqa: E731
    with PageStream(source, only_even, block_pages=5, queue_blocks=1) as stream:
        blocks = list(stream.blocks())
    urls = [row["url"] for block in blocks for row in block]
    expected = [f"https://docs.test/p{i}" for i in range(23) if str(i)[-1] in "02468"]
    assert urls == expected
    assert [len(b) for b in blocks] == [5, 5, 2]
    assert set(blocks[0][0]) == {"url", "content", "kind", "content_hash"}
    assert stream.error is None
    assert stream.seconds > 0


def test_a_failing_source_ends_the_blocks_and_keeps_the_error() -> None:
    source = CountingSource(total=50, fail_at=7)
    with PageStream(source, _keep, block_pages=3, queue_blocks=4) as stream:
        rows = [row for block in stream.blocks() for row in block]
    # The pages read before the failure still arrive (they can be written).
    assert len(rows) == 7
    assert isinstance(stream.error, RuntimeError)
    assert "page 7" in str(stream.error)


def test_a_consumer_that_stops_early_stops_the_source_thread() -> None:
    source = CountingSource(total=10_000)

    def consume_one_block_then_fail() -> None:
        with PageStream(source, _keep, block_pages=2, queue_blocks=1) as stream:
            next(stream.blocks())
            raise ValueError("consumer broke")

    with pytest.raises(ValueError, match="consumer broke"):
        consume_one_block_then_fail()
    stopped_at = source.yielded
    time.sleep(0.3)
    assert source.yielded == stopped_at  # the thread is gone, not still reading
    assert stopped_at < 50
    assert not any(t.name == "ragserve-source" and t.is_alive() for t in threading.enumerate())
