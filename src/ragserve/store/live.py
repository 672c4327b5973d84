"""``LiveIndex``: a long-running reader that follows the live index version.

A server opens the version that is live when it starts. When an ingest,
refresh or rollback switches the pointer (Edge) or alias (server), the next
request that comes after the poll interval notices it (a file read or one
alias lookup, at most every ``poll_s`` seconds), opens the new version and
builds what reads it (a ``Retriever``) *before* it is swapped in, so no
request waits on the switch or fails because of it. Requests hold a lease on
the generation they started with: in-flight ones finish on the old version,
which is closed when its last lease ends.

If the new version cannot be opened (deleted meanwhile, schema mismatch), the
old one keeps serving and the switch is tried again at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from ragserve.errors import IndexNotFoundError, RagserveError
from ragserve.store.base import VectorStore

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Generation(Generic[T]):
    version: str
    store: VectorStore
    value: T
    leases: int = 0
    retired: bool = False
    closed: bool = False


class LiveIndex(Generic[T]):
    """The live version of ``base``'s collection and a value built over it.

    ``build(store)`` makes the reader (raising ``RagserveError`` when the
    version is unusable); ``open_version(name)`` opens a version (default
    ``base.at_version``). ``base`` is only asked which version is live.
    """

    def __init__(
        self,
        base: VectorStore,
        build: Callable[[VectorStore], T],
        *,
        poll_s: float = 2.0,
        open_version: Callable[[str], VectorStore] | None = None,
        release_version: Callable[[VectorStore], None] | None = None,
    ) -> None:
        self._base = base
        self._build = build
        self._poll_s = poll_s
        self._open_version = open_version or base.at_version
        self._release_version = release_version or _close
        self._current: _Generation[T] | None = None
        self._lock = threading.Lock()
        self._switching = threading.Lock()
        self._next_check = 0.0
        self.switches = 0

    @property
    def version(self) -> str | None:
        """The version new requests get (None before any version is live)."""
        current = self._current
        return current.version if current else None

    def current(self) -> tuple[VectorStore, T]:
        """The current generation without a lease (for checks, not for queries)."""
        self.refresh()
        current = self._current
        if current is None:
            raise self._missing()
        return current.store, current.value

    @contextmanager
    def lease(self) -> Iterator[tuple[VectorStore, T]]:
        """The current generation, kept open until the ``with`` block ends."""
        self.refresh()
        with self._lock:
            current = self._current
            if current is None:
                raise self._missing()
            current.leases += 1
        try:
            yield current.store, current.value
        finally:
            with self._lock:
                current.leases -= 1
                done = current.retired and current.leases == 0
            if done:
                self._retire(current)

    def refresh(self, *, force: bool = False) -> bool:
        """Switch if the live version changed; True when it did. Cheap between polls."""
        now = time.monotonic()
        if not force and now < self._next_check and self._current is not None:
            return False
        if not self._switching.acquire(blocking=self._current is None):
            return False  # another thread is switching; keep serving the current one
        try:
            self._next_check = time.monotonic() + self._poll_s
            return self._switch_if_changed()
        finally:
            self._switching.release()

    def close(self) -> None:
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            self._retire(current)

    def _switch_if_changed(self) -> bool:
        try:
            live = self._base.live_version()
        except RagserveError as exc:
            logger.warning("cannot read the live index version (keeping the current one): %s", exc)
            return False
        current = self._current
        if live is None or (current is not None and live == current.version):
            return False
        store = self._open_version(live)
        try:
            value = self._build(store)
        except RagserveError as exc:
            self._release_version(store)
            if current is None:
                raise
            logger.warning("index version %s cannot be served yet, keeping %s: %s", live,
                           current.version, exc)  # fmt: skip
            return False
        with self._lock:
            previous, self._current = self._current, _Generation(live, store, value)
            idle = previous is not None and previous.leases == 0
            if previous is not None:
                previous.retired = True
        self.switches += previous is not None
        logger.info("now serving index version %s (was %s)", live,
                    previous.version if previous else None)  # fmt: skip
        if previous is not None and idle:
            self._retire(previous)
        return True

    def _retire(self, generation: _Generation[T]) -> None:
        with self._lock:
            if generation.closed:
                return
            generation.closed = True
        self._release_version(generation.store)

    def _missing(self) -> IndexNotFoundError:
        return IndexNotFoundError(
            f"index '{self._base.name}' has no live version yet; build it with `ragserve ingest`"
        )


def _close(store: VectorStore) -> None:
    store.close()
