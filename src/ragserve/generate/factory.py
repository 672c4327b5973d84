"""Pick the ``LLM`` backend named in settings (``RAGSERVE_LLM__PROVIDER``)."""

from __future__ import annotations

from urllib.parse import urlparse

from ragserve.config import LLMSettings
from ragserve.errors import ConfigError
from ragserve.generate.base import LLM
from ragserve.generate.extractive import ExtractiveLLM
from ragserve.generate.llamacpp import LlamaCppLLM
from ragserve.generate.openai_compat import OpenAICompatibleLLM


def build_llm(settings: LLMSettings) -> LLM:
    """The configured backend, not yet loaded or connected (that happens on first use).

    Raises ``ConfigError`` when the hosted OpenAI API is selected without a
    key: it would fail on every question, so it fails at start-up instead.
    """
    if settings.provider == "extractive":
        return ExtractiveLLM(context_window=settings.context_window)
    if settings.provider == "llamacpp":
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
