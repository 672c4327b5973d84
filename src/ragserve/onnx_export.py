"""Export a bundled sentence-transformers model to ONNX, once, into the models folder.

Why: on a CPU, ONNX Runtime runs the same BERT graph with fused attention
kernels and no Python per layer, and an ingest spends nearly all its time in
the encoder. The vectors must not change (an index built by one path is queried
by the other), so an export is checked against torch before it is kept: the
cosine between the two paths' vectors on probe sentences must be at least
``MIN_COSINE``, or nothing is written.

The export needs torch and the ``onnx`` package (torch's exporter writes the
graph through it); running the exported model needs neither. It happens only
when asked (``ragserve models export``, ``make models``), never at import time,
and lands atomically: a temporary folder renamed into place, with a manifest
that pins the sha256 of every file.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.errors import EmbedderError, MissingDependencyError
from ragserve.models import sha256_of

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MIN_COSINE = 0.999
OPSET = 17
_PROBES = (
    "How do I configure autoscaling for a Ray Serve deployment?",
    "Replicas finish in-flight requests before they stop; tune graceful_shutdown_timeout_s.",
    "ray.data.read_parquet(paths, columns=None, filesystem=None) -> Dataset",
    "a",
)


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """A model that exports, and how its token states become a sentence vector."""

    folder: str
    #: The model's own ``max_seq_length`` (sentence_bert_config.json): longer
    #: inputs are cut there by sentence-transformers, so the ONNX path cuts there too.
    max_length: int
    pooling: str = "mean"


#: Models ``ragserve models export`` knows, by every name that means them.
EXPORTABLE: dict[str, ExportSpec] = {
    name: ExportSpec(folder="all-minilm-l6-v2-onnx", max_length=256)
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2")
}


def spec_for(model: str) -> ExportSpec | None:
    return EXPORTABLE.get(model)


def export_path(model: str, models_dir: Path) -> Path:
    spec = spec_for(model)
    if spec is None:
        raise EmbedderError(
            f"model '{model}' has no ONNX export; exportable: all-MiniLM-L6-v2. "
            "Use embed.backend=torch for other sentence-transformers models"
        )
    return models_dir.expanduser() / spec.folder


def exported(model: str, models_dir: Path | None) -> Path | None:
    """The folder of a complete export of ``model``, or None (not exportable or not made).

    Complete means the manifest is there and every file it pins has its size;
    ``verify`` checks the hashes too (``ragserve models verify``).
    """
    if models_dir is None or spec_for(model) is None:
        return None
    folder = export_path(model, models_dir)
    manifest = _read_manifest(folder)
    if manifest is None:
        return None
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
    return folder


def verify(folder: Path) -> list[str]:
    """Problems with an export folder (missing or altered files); empty when it is intact."""
    manifest = _read_manifest(folder)
    if manifest is None:
        return [f"{folder / MANIFEST} is missing or unreadable"]
    problems = []
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{path} does not match its pinned sha256")
    return problems


def export_model(model: str, models_dir: Path, *, force: bool = False) -> Path:
    """Export ``model`` to ONNX under ``models_dir`` (idempotent) and return the folder."""
    target = export_path(model, models_dir)
    if not force and exported(model, models_dir) is not None:
        return target
    spec = spec_for(model)
    assert spec is not None  # export_path refused the others
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise MissingDependencyError("torch", "torch", "exporting an ONNX embedder") from exc
    try:
        import onnx  # noqa: F401  # torch's exporter writes the graph with it
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx", "exporting an ONNX embedder") from exc

    from ragserve.embed import resolve_model_path

    source = Path(resolve_model_path(model))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        # Eager attention exports the classic MatMul/Softmax pattern that
        # ONNX Runtime's BERT optimizer fuses into one Attention op; SDPA's does not fuse.
        encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
        raw = staging / "raw.onnx"
        _export_graph(torch, encoder, raw)
        _fuse(raw, staging / "model.onnx", encoder.config)
        raw.unlink()
        shutil.copyfile(source / "tokenizer.json", staging / "tokenizer.json")
        cosine = _min_cosine_against_torch(staging, source, spec)
        if cosine < MIN_COSINE:
            raise EmbedderError(
                f"the ONNX export of {model} disagrees with torch (min cosine {cosine:.5f} "
                f"< {MIN_COSINE}); keep embed.backend=torch and report this"
            )
        _write_manifest(staging, model, source, spec, cosine, torch.__version__)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s", model, target)
    return target


def _last_hidden_state(torch: Any, encoder: Any) -> Any:
    """``BertModel`` with positional inputs and one output, as the exporter wants it."""

    class LastHiddenState(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    return LastHiddenState().eval()


def _export_graph(torch: Any, encoder: Any, path: Path) -> None:
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad():
        # The TorchScript exporter: the dynamo one needs onnxscript, which is not
        # on every package index, and gives the same graph for a BERT encoder.
        torch.onnx.export(
            _last_hidden_state(torch, encoder),
            sample,
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _fuse(raw: Path, path: Path, config: Any) -> None:
    """Fuse attention, LayerNorm and GELU (onnxruntime's transformer optimizer).

    On 2 CPU cores, 500 sample-corpus chunks: 68 chunks/s unfused, 84 fused,
    64 for torch fp32, with identical vectors (bench/results/encoder.json).
    """
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    model.save_model_to_file(str(path))


def _min_cosine_against_torch(folder: Path, source: Path, spec: ExportSpec) -> float:
    from sentence_transformers import SentenceTransformer

    from ragserve.onnx_encoder import OnnxEncoder

    reference = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    expected = np.asarray(reference.encode(list(_PROBES), normalize_embeddings=True))
    states = OnnxEncoder(folder, max_length=spec.max_length, threads=1).run(list(_PROBES))
    pooled = np.stack([state.mean(axis=0) for state in states])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    return float(np.min(np.sum(pooled * expected, axis=1)))


def _write_manifest(
    folder: Path, model: str, source: Path, spec: ExportSpec, cosine: float, torch_version: str
) -> None:
    files = {
        path.name: {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
    manifest = {
        "model": model,
        "source": str(source),
        "pooling": spec.pooling,
        "max_length": spec.max_length,
        "opset": OPSET,
        "torch": torch_version,
        "min_cosine_vs_torch": round(cosine, 6),
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    return manifest
