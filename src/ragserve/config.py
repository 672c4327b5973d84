"""All settings in one object, read once at the edge (CLI or Serve deployment).

Environment variables use the ``RAGSERVE_`` prefix and ``__`` for nesting, e.g.
``RAGSERVE_EMBED__MODEL=BAAI/bge-base-en-v1.5`` or ``RAGSERVE_LLM__API_KEY=...``.
A TOML/JSON/YAML file can be passed with ``--config``. Library code never reads
ragserve's configuration from ``os.environ``: it gets a ``Settings`` (or one of
its groups) passed down. The only environment it touches belongs to other
libraries' interfaces, in one place each: Ray's (``RAY_ADDRESS`` and two
switches, ``ragserve.runtime``) and Hugging Face's offline switches, set where
a model is loaded so that nothing ever tries the network.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ragserve.errors import ConfigError
from ragserve.query import SearchMode

DEFAULT_EMBED_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODELS_DIR = Path("~/.cache/ragserve/models")


class IngestSettings(BaseModel):
    """Crawling, extraction and chunking."""

    max_pages: int = Field(10_000, ge=1)
    max_depth: int = Field(20, ge=0)
    timeout_s: float = Field(20.0, gt=0)
    max_page_bytes: int = Field(10_000_000, ge=1024)
    concurrency: int = Field(8, ge=1, le=256)
    per_host_delay_s: float = Field(0.0, ge=0)
    retries: int = Field(3, ge=0, le=10)
    respect_robots: bool = True
    use_sitemap: bool = True
    allow_private: bool = False
    user_agent: str = "ragserve/0.1 (+https://github.com/ragserve/ragserve)"
    base_url: str | None = None
    chunk_size: int = Field(512, ge=64, le=8192)
    chunk_overlap: int = Field(50, ge=0)
    section_aware: bool = True
    #: Chunks per Ray Data batch handed to an embedding actor (and per store write).
    #: The actor sorts each batch by token length, so a larger one pads less:
    #: full Ray docs, 2 cores, one run each: 256 → 276 s, 512 → 246 s, 1,024 →
    #: 229 s, at a peak RSS of 3.85, 3.91 and 4.16 GB.
    batch_size: int = Field(512, ge=1)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IngestSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        return self


class EmbedSettings(BaseModel):
    """The sentence-transformers embedder."""

    model: str = DEFAULT_EMBED_MODEL
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    batch_size: int = Field(64, ge=1, le=4096)
    #: Reduced precision: bf16 on CPU, fp16 on CUDA. "auto" picks what is fast.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    max_seq_length: int | None = Field(None, ge=16)
    #: CPU threads for torch. None: one per query process (many small requests
    #: run side by side), all of a node's cores split over ingest actors.
    threads: int | None = Field(None, ge=1)
    actors: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0)
    #: What runs the encoder. ``auto``: on a CPU without native bf16, the ONNX
    #: export of the model when one was made (``ragserve models export``; ``make
    #: models`` makes it) — torch fp32's vectors (cosine 1.000000), 1.5x its speed;
    #: torch elsewhere: with native bf16 (AMX) torch's bf16 is 1.9x the ONNX
    #: export, and GPUs run torch (bench/results/encoder.json). ``onnx`` demands
    #: the export; ``torch`` never uses it.
    backend: Literal["auto", "torch", "onnx"] = "auto"


class StoreSettings(BaseModel):
    """Where the index lives: Qdrant Edge on disk, or a Qdrant server."""

    backend: Literal["edge", "qdrant"] = "edge"
    data_dir: Path = Path(".ragserve")
    collection: str = "docs"
    url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0)
    #: HNSW search breadth. bench/query.py at 100k chunks: the engine default
    #: found 0.82 of the exact dense top-5, ef=256 0.93 for +1 ms p50.
    hnsw_ef: int | None = Field(256, ge=4)
    #: How often a server checks which index version is live (a file read or an
    #: alias lookup); a refresh or rollback reaches it within this many seconds.
    version_poll_s: float = Field(2.0, gt=0)

    @field_validator("collection")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
            raise ValueError("collection names use letters, digits, '-' and '_' only")
        return value

    @model_validator(mode="after")
    def _url_means_server(self) -> StoreSettings:
        if self.url and self.backend == "edge":
            self.backend = "qdrant"
        return self


class RetrieveSettings(BaseModel):
    """How questions find chunks."""

    k: int = Field(5, ge=1, le=100)
    mode: SearchMode = "hybrid"
    #: Candidates fetched from each of dense and BM25 before RRF fusion. Deep
    #: lists let fusion see chunks that both retrievers like: on the Ray docs
    #: dev set, 40 → 0.624, 100 → 0.679, 400 → 0.706 retrieval score at k=5.
    candidates: int = Field(400, ge=1, le=2000)
    #: At most this many chunks from one page; spreads the k slots over pages.
    max_per_page: int = Field(1, ge=1)
    #: Hybrid, one chunk per page: after fusion picks the pages, cite each page's
    #: section closest to the question in meaning (one extra dense query over
    #: those pages). Pages unchanged; section@5 on the Ray docs dev set +5/−2,
    #: Celery +7/−9, Git +5/−4 questions: a wash, so it is off by default.
    section_by_meaning: bool = False
    min_score: float | None = None
    reranker: str | None = None
    rerank_candidates: int = Field(20, ge=1, le=200)
    #: Weight of the reranker's rank against the first stage's when the two
    #: orders are fused (``retrieve.fuse_ranks``); 0 keeps the first-stage order.
    rerank_weight: float = Field(1.0, ge=0)


class LLMSettings(BaseModel):
    """The language model that writes answers."""

    #: ``auto``: the offline instruct model (``local``) when it is fetched and its
    #: engine installed, else ``extractive``. ``local``: Qwen2.5-Coder-0.5B-Instruct
    #: on prebuilt llama.cpp (xllamacpp). ``llamacpp``: any GGUF via llama-cpp-python.
    provider: Literal["auto", "extractive", "openai", "llamacpp", "local"] = "auto"
    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    model_path: Path | None = None
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(512, ge=1)
    context_window: int = Field(8192, ge=256)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, le=10)


class ServeSettings(BaseModel):
    """The HTTP service."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: list[SecretStr] = Field(default_factory=list)
    require_auth: bool | None = None
    rate_limit_per_minute: int = Field(120, ge=0)
    max_body_bytes: int = Field(65_536, ge=1024)
    max_question_chars: int = Field(2_000, ge=1)
    request_timeout_s: float = Field(60.0, gt=0)
    #: A request body must arrive whole within this many seconds, or 408 and close.
    body_timeout_s: float = Field(30.0, gt=0)
    #: The largest request head (request line + headers) uvicorn buffers (h11 limit).
    max_header_bytes: int = Field(65_536, ge=4096)
    #: Failed authentications per client address per minute before 429 (0: unlimited).
    auth_failures_per_minute: int = Field(10, ge=0)
    #: Requests handled at once by one process; more are answered 503 + Retry-After (0: off).
    max_in_flight: int = Field(64, ge=0)
    #: Serve /metrics without a key (for a scraper on a private network).
    metrics_public: bool = False
    #: Serve /docs and /openapi.json without a key.
    docs_public: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    retriever_replicas: int = Field(1, ge=1)
    generator_replicas: int = Field(1, ge=1)
    autoscaling: bool = False
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    #: Requests one replica takes at once before Serve queues them. Serve's
    #: default (5) made one replica collapse at 32 concurrent clients here.
    max_ongoing_requests: int = Field(64, ge=1)
    retriever_num_gpus: float = Field(0.0, ge=0)
    #: Embedded (Edge) index only: give each Retriever replica a private copy,
    #: since one Edge shard opens in one process. A Qdrant server needs no copy.
    copy_edge_index: bool = False
    #: At most this many replicas of one deployment on one Ray node (None: Serve's
    #: default, a soft spread). 1 puts every replica on its own node, so a
    #: multi-node cluster keeps answering when a node goes.
    max_replicas_per_node: int | None = Field(None, ge=1)
    generator_num_gpus: float = Field(0.0, ge=0)
    #: Ray Serve layout. ``split``: Ingress → Retriever and Generator
    #: deployments over handles, each side scaling on its own. ``single``: one
    #: deployment answers in-process, saving a Serve hop per stage (measured
    #: here: ~5 ms per handle call). ``auto``: ``single`` unless generation runs
    #: in-process (llama.cpp) or the two sides ask for different replicas or GPUs.
    topology: Literal["auto", "single", "split"] = "auto"


class Settings(BaseSettings):
    """Every setting of ragserve; groups mirror the pipeline stages."""

    model_config = SettingsConfigDict(
        env_prefix="RAGSERVE_", env_nested_delimiter="__", extra="forbid"
    )

    ingest: IngestSettings = Field(default_factory=IngestSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    retrieve: RetrieveSettings = Field(default_factory=RetrieveSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    data_dir: Path | None = None
    #: Where ``ragserve models fetch`` puts verified model files (RAGSERVE_MODELS_DIR).
    models_dir: Path = Field(default_factory=lambda: DEFAULT_MODELS_DIR.expanduser())

    @field_validator("models_dir")
    @classmethod
    def _expand_models_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _top_level_data_dir(self) -> Settings:
        # RAGSERVE_DATA_DIR is the documented short form of RAGSERVE_STORE__DATA_DIR.
        if self.data_dir is not None:
            self.store.data_dir = self.data_dir
        return self


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build ``Settings`` from an optional file, the environment, and overrides.

    Precedence, lowest first: defaults, file, environment, ``overrides`` (CLI
    flags). ``overrides`` use dotted keys, e.g. ``{"store.collection": "x"}``;
    ``None`` values are ignored so unset CLI flags don't clobber anything.
    Raises ``ConfigError`` with the offending setting named.
    """
    try:
        env_only = Settings()
        merged: dict[str, Any] = _read_config_file(config_file) if config_file else {}
        _deep_update(merged, env_only.model_dump(exclude_unset=True))
        for dotted, value in overrides.items():
            if value is not None:
                _set_dotted(merged, dotted, value)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from exc
    except SettingsError as exc:
        raise ConfigError(_describe_settings_error(exc)) from exc


def _describe_settings_error(exc: SettingsError) -> str:
    """A value pydantic-settings could not even parse, e.g. ``RAGSERVE_LLM=extractive``.

    A whole group is set from one variable only as JSON; the usual mistake is
    a single underscore pair where the nested form was meant, so say both.
    """
    found = re.search(r'field "([^"]+)"', str(exc))
    group = found.group(1) if found else "?"
    env = f"RAGSERVE_{group.upper()}"
    field = Settings.model_fields.get(group)
    model = field.annotation if field is not None else None
    names = (
        list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
    )
    example = f" (e.g. {env}__{names[0].upper()})" if names else ""
    return (
        f"the environment variable {env} could not be read as the '{group}' settings group "
        f"(it must be a JSON object); to set one field use {env}__<FIELD>{example}"
    )


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing --config file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            loaded = yaml.safe_load(text) or {}
        else:
            loaded = json.loads(text)
    except Exception as exc:
        raise ConfigError(f"config file {path} could not be parsed: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting groups")
    return loaded


def _deep_update(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        env = "RAGSERVE_" + "__".join(str(p).upper() for p in error["loc"])
        problems.append(f"{where}: {error['msg']} (env {env})")
    return "invalid configuration: " + "; ".join(problems)
