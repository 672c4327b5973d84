"""What every ``ragserve`` command shares: consoles, exit codes, option types, helpers.

Commands live in ``ragserve.cli`` (the core ones) and in ``ragserve.commands.*``
(one module per command group, registered on the app in ``cli.py``); both take
their options and error rendering from here so they read and fail alike.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from ragserve.config import Settings, load_settings
from ragserve.errors import ConfigError

if TYPE_CHECKING:
    from ragserve.store.base import VectorStore

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


@dataclass(frozen=True)
class StoreChoice:
    """The index a command works on, as its five shared options chose it."""

    config: Path | None = None
    data_dir: Path | None = None
    collection: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None

    def overrides(self) -> dict[str, Any]:
        """The settings overrides these options stand for (None: not given)."""
        return {
            "store.data_dir": self.data_dir,
            "store.collection": self.collection,
            "store.url": self.qdrant_url,
            "store.api_key": self.qdrant_api_key,
        }

    @contextmanager
    def opened(self) -> Iterator[tuple[Settings, VectorStore]]:
        """The settings and the index they name, open for the block, closed after it."""
        from ragserve.store import open_store

        settings = self.settings()
        store = open_store(settings.store)
        try:
            yield settings, store
        finally:
            store.close()

    def settings(self, **overrides: Any) -> Settings:
        """Settings from ``--config`` with these store options and ``overrides`` applied."""
        return build_settings(self.config, **self.overrides(), **overrides)


#: The default a decorated command's ``store_options`` parameter declares (never used:
#: ``with_store_options`` always passes one).
ANY_STORE = StoreChoice()

#: The options ``with_store_options`` adds, in the order ``--help`` lists them.
_STORE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("config", ConfigOpt),
    ("data_dir", DataDirOpt),
    ("collection", CollectionOpt),
    ("qdrant_url", QdrantUrlOpt),
    ("qdrant_api_key", QdrantKeyOpt),
)

R = TypeVar("R")


def with_store_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give ``command`` the five store options; it receives them as ``store_options``.

    Every command that opens the index takes the same ``--config``,
    ``--data-dir``, ``--collection``, ``--qdrant-url`` and ``--qdrant-api-key``;
    declaring them once keeps their names, help and meaning from drifting
    apart. Typer reads the wrapper's signature, in which the five options
    stand where the command's ``store_options: StoreChoice`` parameter stood.
    """
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    at = next(i for i, param in enumerate(params) if param.name == "store_options")
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
        for name, kind in _STORE_OPTIONS
    ]
    params[at : at + 1] = added
    params = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY) for param in params]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        choice = StoreChoice(**{name: kwargs.pop(name) for name, _ in _STORE_OPTIONS})
        return command(store_options=choice, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {param.name: param.annotation for param in params}
    return wrapper


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
