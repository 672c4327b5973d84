"""Freed heap handed back to the OS between ingest batches (glibc's malloc_trim)."""

from __future__ import annotations

import sys

import pytest

from ragserve import heap
from ragserve.heap import ONEDNN_CACHE_CAPACITY, embed_actor_env, release_free_memory


def test_releasing_free_memory_finds_glibc_on_linux_and_is_a_no_op_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = [bytes(4096) for _ in range(10_000)]  # 40 MB of heap, freed just before the call
    del blocks
    assert isinstance(release_free_memory(), bool)
    if sys.platform.startswith("linux"):
        assert heap._malloc_trim() is not None
    heap._malloc_trim.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert heap._malloc_trim() is None
        assert release_free_memory() is False
    finally:
        heap._malloc_trim.cache_clear()


def test_the_embedding_actor_caps_onednn_shape_cache_unless_the_user_set_it() -> None:
    variable = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
    assert embed_actor_env({}) == {variable: ONEDNN_CACHE_CAPACITY}
    assert embed_actor_env({variable: ""}) == {variable: ONEDNN_CACHE_CAPACITY}
    assert embed_actor_env({variable: "1024"}) == {variable: "1024"}
    assert embed_actor_env({"PATH": "/bin"}) == {variable: ONEDNN_CACHE_CAPACITY}
