"""Grounded, cited answers: the ``LLM`` seam, its backends, and the prompt.

``build_prompt`` turns a question and retrieved chunks into a ``Prompt`` that
fits the model's window; ``build_llm`` picks the backend from settings. Only
``llamacpp`` needs an optional extra (``pip install 'ragserve[llamacpp]'``),
and it is imported only when that backend is used.
"""

from ragserve.generate.base import LLM, Completion, Prompt
from ragserve.generate.extractive import EXTRACTIVE_LABEL, ExtractiveLLM
from ragserve.generate.factory import build_llm
from ragserve.generate.llamacpp import LlamaCppLLM, default_model_path
from ragserve.generate.openai_compat import OpenAICompatibleLLM
from ragserve.generate.prompt import NO_ANSWER, SYSTEM_PROMPT, build_prompt
from ragserve.generate.tokens import estimate_tokens

__all__ = [
    "EXTRACTIVE_LABEL",
    "LLM",
    "NO_ANSWER",
    "SYSTEM_PROMPT",
    "Completion",
    "ExtractiveLLM",
    "LlamaCppLLM",
    "OpenAICompatibleLLM",
    "Prompt",
    "build_llm",
    "build_prompt",
    "default_model_path",
    "estimate_tokens",
]
