"""The index schema's vector size, read from a model's files without loading it.

The ingest driver needs the size before the first batch; loading torch there kept
the weights resident for the whole run. These use real folder layouts of
sentence-transformers models (the bundled one and hand-written configs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragserve.embed import dimension_from_files, resolve_model_path


def _model_folder(root: Path, modules: list[tuple[str, str, dict[str, object]]]) -> Path:
    listed = []
    for idx, (kind, path, config) in enumerate(modules):
        listed.append({"idx": idx, "name": str(idx), "path": path, "type": kind})
        if config:
            (root / path).mkdir(parents=True, exist_ok=True)
            (root / path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (root / "modules.json").write_text(json.dumps(listed), encoding="utf-8")
    return root


TRANSFORMER = ("sentence_transformers.models.Transformer", "", {})


def test_the_bundled_model_is_384_wide_by_its_files() -> None:
    assert dimension_from_files(Path(resolve_model_path("all-MiniLM-L6-v2"))) == 384


def test_a_dense_projection_after_pooling_sets_the_size(tmp_path: Path) -> None:
    folder = _model_folder(
        tmp_path,
        [
            TRANSFORMER,
            (
                "sentence_transformers.models.Pooling",
                "1_Pooling",
                {"word_embedding_dimension": 768, "pooling_mode_mean_tokens": True},
            ),
            ("sentence_transformers.models.Dense", "2_Dense", {"out_features": 256}),
            ("sentence_transformers.models.Normalize", "3_Normalize", {}),
        ],
    )
    assert dimension_from_files(folder) == 256


def test_each_pooling_mode_adds_a_block(tmp_path: Path) -> None:
    pooling = {
        "word_embedding_dimension": 384,
        "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "include_prompt": True,
    }
    folder = _model_folder(
        tmp_path, [TRANSFORMER, ("sentence_transformers.models.Pooling", "1_Pooling", pooling)]
    )
    assert dimension_from_files(folder) == 768


@pytest.mark.parametrize(
    "modules",
    [
        [TRANSFORMER],  # no pooling: the size is the model's to say
        [TRANSFORMER, ("my_package.CustomHead", "1_Head", {"width": 10})],
        [
            TRANSFORMER,
            ("sentence_transformers.models.Pooling", "1_Pooling", {"pooling_mode_cls_token": True}),
        ],
    ],
    ids=["no-pooling", "custom-module", "pooling-without-size"],
)
def test_an_unrecognised_layout_answers_none_so_the_model_is_loaded(
    tmp_path: Path, modules: list[tuple[str, str, dict[str, object]]]
) -> None:
    assert dimension_from_files(_model_folder(tmp_path, modules)) is None


def test_no_folder_or_broken_json_answers_none(tmp_path: Path) -> None:
    assert dimension_from_files(tmp_path / "missing") is None
    (tmp_path / "modules.json").write_text("{not json", encoding="utf-8")
    assert dimension_from_files(tmp_path) is None


def test_asking_the_default_models_size_does_not_import_torch() -> None:
    code = (
        "import sys; from ragserve.config import EmbedSettings; "
        "from ragserve.embed import embedding_dimension; "
        "print(embedding_dimension(EmbedSettings()), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["384", "False"]
