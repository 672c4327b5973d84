"""Pick the ``LLM`` backend named in settings (``RAGSERVE_LLM__PROVIDER``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from ragserve.config import DEFAULT_MODELS_DIR, LLMSettings
from ragserve.errors import ConfigError
from ragserve.generate.base import LLM
from ragserve.generate.extractive import ExtractiveLLM
from ragserve.generate.llamacpp import LlamaCppLLM
from ragserve.generate.local import LOCAL_MODEL, LocalLLM, local_engine_available
from ragserve.generate.openai_compat import OpenAICompatibleLLM
from ragserve.models import is_fetched, model_path

logger = logging.getLogger(__name__)

Provider = Literal["extractive", "openai", "llamacpp", "local"]

#: Answer tokens for the offline model unless RAGSERVE_LLM__MAX_TOKENS says otherwise:
#: answers from a few sources are short, and each token costs ~40 ms on 2 cores.
LOCAL_MAX_TOKENS = 256


def resolve_provider(settings: LLMSettings, models_dir: Path | None = None) -> Provider:
    """``auto`` made concrete: the offline model when it is usable, else extractive.

    Usable means the xllamacpp engine is installed and the model is fetched
    (or ``llm.model_path`` names a file), so ``auto`` never fails a question.
    """
    if settings.provider != "auto":
        return settings.provider
    folder = models_dir or DEFAULT_MODELS_DIR.expanduser()
    has_model = (
        settings.model_path.is_file() if settings.model_path else is_fetched(LOCAL_MODEL, folder)
    )
    if has_model and local_engine_available():
        return "local"
    logger.info(
        "no offline model in %s (or xllamacpp missing): answers are extractive; "
        "`ragserve models fetch %s` enables generated answers",
        folder,
        LOCAL_MODEL,
    )
    return "extractive"


def build_llm(settings: LLMSettings, models_dir: Path | None = None) -> LLM:
    """The configured backend, not yet loaded or connected (that happens on first use).

    ``models_dir`` is where fetched models live (``Settings.models_dir``; the
    default folder when None). Raises ``ConfigError`` when the hosted OpenAI
    API is selected without a key, or ``local`` without the model fetched: it
    would fail on every question, so it fails at start-up instead.
    """
    provider = resolve_provider(settings, models_dir)
    if provider == "extractive":
        return ExtractiveLLM(context_window=settings.context_window)
    if provider == "local":
        path = settings.model_path or model_path(
            LOCAL_MODEL, models_dir or DEFAULT_MODELS_DIR.expanduser()
        )
        answer_tokens = (
            settings.max_tokens if "max_tokens" in settings.model_fields_set else LOCAL_MAX_TOKENS
        )
        return LocalLLM(path, settings.context_window, max_answer_tokens=answer_tokens)
    if provider == "llamacpp":
        return LlamaCppLLM(settings.model_path, settings.context_window)
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    if not api_key and urlparse(settings.base_url).hostname == "api.openai.com":
        raise ConfigError(
            "llm.provider is 'openai' with the OpenAI API but no key; set RAGSERVE_LLM__API_KEY, "
            "or RAGSERVE_LLM__BASE_URL to your own OpenAI-compatible server"
        )
    return OpenAICompatibleLLM(
        base_url=settings.base_url,
        api_key=api_key,
        model=settings.model,
        timeout_s=settings.timeout_s,
        retries=settings.retries,
        context_window=settings.context_window,
    )
