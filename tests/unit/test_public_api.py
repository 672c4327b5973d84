"""The public API is what ``ragserve`` exports, and the README documents exactly that.

A name added to ``__all__`` without a README entry (or documented but not
exported) fails here, so the API cannot grow or shrink by accident.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ragserve

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    bullets = "\n".join(line for line in section.splitlines() if line.startswith(("- ", "  ")))
    return set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", bullets))


def test_readme_lists_exactly_the_exported_names() -> None:
    documented = _documented_names()
    exported = set(ragserve.__all__)
    assert documented - exported == set(), "documented in the README but not exported"
    assert exported - documented == set(), "exported but not in the README's Python API"


def test_every_exported_name_resolves() -> None:
    for name in ragserve.__all__:
        assert getattr(ragserve, name) is not None, name


def test_the_seams_users_implement_are_protocols() -> None:
    for name in ("Embedder", "LLM", "Reranker", "VectorStore"):
        assert getattr(getattr(ragserve, name), "_is_protocol", False), name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NotAThing"):
        ragserve.NotAThing  # type: ignore[attr-defined]  # noqa: B018
