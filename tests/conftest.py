"""Fixtures shared across the suite: corpora, Ray, settings with a temp index."""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TARBALL = REPO / "examples" / "ray-serve-docs-2023.tar.gz"
SHARED = REPO.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The default generator is the offline model when it is fetched (make test fetches it);
# tests pin the model-free one, and the offline model's own tests ask for it by name.
os.environ.setdefault("RAGSERVE_LLM__PROVIDER", "extractive")


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled 43-page Ray Serve docs sample, unpacked once per session."""
    root = tmp_path_factory.mktemp("sample")
    with tarfile.open(SAMPLE_TARBALL) as archive:
        archive.extractall(root, filter="data")
    return root


@pytest.fixture
def small_corpus(sample_corpus: Path, tmp_path: Path) -> Path:
    """Five real pages of the sample, copied so a test may edit or delete them."""
    pages = [
        "serve/index.html",
        "serve/scaling-and-resource-allocation.html",
        "serve/getting_started.html",
        "serve/production-guide/config.html",
        "serve/architecture.html",
    ]
    root = tmp_path / "site"
    for page in pages:
        target = root / page
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_corpus / page, target)
    return root


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One local Ray for the whole session (starting Ray costs seconds)."""
    from ragserve.runtime import ensure_ray

    ray = ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings with the index in a temp dir; keyword overrides use dotted keys."""
    from ragserve.config import load_settings

    def build(**overrides: Any) -> Any:
        values = {"store.data_dir": tmp_path / "index", **overrides}
        return load_settings(None, **values)

    return build
