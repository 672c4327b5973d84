"""What every ``ragserve`` command shares: consoles, exit codes, option types, helpers.

Commands live in ``ragserve.cli`` (the core ones) and in ``ragserve.commands.*``
(one module per command group, registered on the app in ``cli.py``); both take
their options and error rendering from here so they read and fail alike.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ragserve.config import Settings, load_settings
from ragserve.errors import ConfigError

err = Console(stderr=True, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED, EXIT_GATE = 1, 2, 3, 4

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Settings file (TOML/JSON/YAML).")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the embedded index lives [.ragserve].")
]
CollectionOpt = Annotated[
    str | None, typer.Option("--collection", "-c", help="Index name \\[docs].")
]
QdrantUrlOpt = Annotated[
    str | None,
    typer.Option("--qdrant-url", help="Use a Qdrant server instead of the embedded store."),
]
QdrantKeyOpt = Annotated[
    str | None,
    typer.Option("--qdrant-api-key", envvar="QDRANT_API_KEY", help="Qdrant server API key."),
]
EmbedModelOpt = Annotated[
    str | None,
    typer.Option(
        "--embed-model", help="sentence-transformers model name or path \\[all-MiniLM-L6-v2]."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]

# -- the LLM, for ask, serve and eval ------------------------------------------
LlmOpt = Annotated[
    str | None, typer.Option("--llm", help="extractive | openai | llamacpp \\[extractive].")
]
LlmUrlOpt = Annotated[
    str | None,
    typer.Option("--llm-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1."),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="LLM model name.")]
KOpt = Annotated[int | None, typer.Option("-k", "--k", min=1, help="Sources to retrieve [5].")]

# -- reading a source, for ingest and refresh ----------------------------------
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="Public URL that replaces the source root in indexed URLs."),
]
MaxPagesOpt = Annotated[
    int | None, typer.Option("--max-pages", help="Stop crawling after N pages.")
]
AllowPrivateOpt = Annotated[
    bool, typer.Option("--allow-private", help="Allow crawling loopback/private addresses.")
]

# -- the quality gate, for ingest and refresh ----------------------------------
EvalOpt = Annotated[
    Path | None,
    typer.Option(
        "--eval", help="Question set (JSONL) the new version must pass before it is live."
    ),
]
MinScoreOpt = Annotated[
    float | None,
    typer.Option("--min-score", help="Gate: the new version's retrieval score must reach this."),
]
MaxDropOpt = Annotated[
    float | None,
    typer.Option(
        "--max-drop",
        help="Gate: fail when the score falls more than this below the live version's, e.g. 0.02.",
    ),
]
PrefixOpt = Annotated[
    list[str] | None,
    typer.Option("--source-prefix", help="With --eval: rewrite OLD=NEW in reference URLs."),
]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")]


def build_settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config, **overrides)


def store_overrides(
    data_dir: Path | None, collection: str | None, url: str | None, api_key: str | None
) -> dict[str, Any]:
    return {
        "store.data_dir": data_dir,
        "store.collection": collection,
        "store.url": url,
        "store.api_key": api_key,
    }


def parse_prefixes(prefixes: list[str]) -> dict[str, str]:
    """``--source-prefix OLD=NEW`` values as a mapping; a value without ``=`` is a ConfigError."""
    mapping = {}
    for item in prefixes:
        if "=" not in item:
            raise ConfigError(f"--source-prefix takes OLD=NEW (got {item!r})")
        old, new = item.split("=", 1)
        mapping[old] = new
    return mapping


def llm_overrides(provider: str | None, base_url: str | None, model: str | None) -> dict[str, Any]:
    return {"llm.provider": provider, "llm.base_url": base_url, "llm.model": model}


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def fail(exc: Exception) -> typer.Exit:
    code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(code)
