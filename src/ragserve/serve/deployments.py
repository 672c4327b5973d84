"""Ray Serve: retrieval and generation as deployments that scale on their own.

    split:   HTTP ─► Ingress (FastAPI app, auth, limits, metrics)
                       ├─ handle ─► Retriever  (embedder + index; CPU or a slice of a GPU)
                       └─ handle ─► Generator  (the LLM; streams tokens back)

    single:  HTTP ─► Ingress (the same app, embedder + index + LLM client in-process)

Every handle call costs a Serve hop (about 5 ms on the 2-core machine this was
measured on, on top of ~4 ms for the proxy), so when the LLM is a remote
endpoint (OpenAI-compatible server) or there is none (extractive), a Generator
deployment would only forward HTTP calls: ``topology = auto`` then serves from
one deployment. The split layout pays off when generation is heavy and local
(llama.cpp) or the two sides need different replica counts or GPUs.

Replica counts, autoscaling and GPUs come from ``ServeSettings``.

The embedded Qdrant Edge index can be opened by one process at a time (its
WAL is locked; there is no read-only mode), so with ``store.backend = edge``
the Retriever runs one replica. To run several, either point the store at a
Qdrant server (``RAGSERVE_STORE__URL``), or pass ``copy_edge_index=True``:
each replica then serves a private copy of the index taken at start-up
(fine for a read-only index; re-ingest and redeploy to update it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import FastAPI

from ragserve.agent import AnswerEvent, QueryAgent
from ragserve.config import Settings, load_settings
from ragserve.errors import RagserveError
from ragserve.generate import build_llm
from ragserve.query import SearchFilter, SearchMode
from ragserve.retrieve import Retrieval
from ragserve.runtime import ensure_ray, pid_alive
from ragserve.serve.app import create_app
from ragserve.serve.backend import AgentLike, LocalAgent, SearchResult, readiness_problems
from ragserve.serve.observability import configure_json_logging
from ragserve.serve.security import auth_required
from ragserve.serve.status import index_info
from ragserve.store import open_store

try:
    from ray import serve
    from ray.exceptions import RayActorError
    from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
except ImportError as exc:  # pragma: no cover - ray[serve] is a core dependency
    from ragserve.errors import MissingDependencyError

    raise MissingDependencyError("ray[serve]", "serve", "Serving with Ray Serve") from exc

logger = logging.getLogger(__name__)

APP_NAME = "ragserve"
IMPORT_PATH = "ragserve.serve.deployments:app_builder"
#: Logical CPU reservations; small so the three deployments fit a laptop.
_CPUS = {"Ingress": 0.1, "Retriever": 0.5, "Generator": 0.25}
#: Secrets never written into a Serve config file; replicas read them from the env.
_SECRET_FIELDS = {"store": {"api_key"}, "llm": {"api_key"}, "serve": {"api_keys"}}


class RetrieverReplica:
    """Embedder + index: question → ranked chunks. Scale with ``retriever_replicas``."""

    def __init__(self, settings: Settings, copy_edge_index: bool = False) -> None:
        configure_json_logging()
        self._agent, self._copy_dir = _open_agent(settings, copy_edge_index)

    def retrieve(
        self, question: str, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> Retrieval:
        return self._agent.retrieve(question, k=k, filters=filters, mode=mode)

    def search(
        self, question: str, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> SearchResult:
        return self._agent.search(question, k=k, filters=filters, mode=mode)

    def readiness(self) -> list[str]:
        return [p for p in readiness_problems(self._agent) if not p.startswith("llm:")]

    def index_info(self) -> dict[str, Any]:
        return index_info(self._agent)

    def __del__(self) -> None:
        _release(getattr(self, "_agent", None), getattr(self, "_copy_dir", None))


class GeneratorReplica:
    """The LLM: retrieved chunks → streamed, cited answer. Scale with ``generator_replicas``."""

    def __init__(self, settings: Settings) -> None:
        configure_json_logging()
        self._settings = settings
        self._llm = build_llm(settings.llm, settings.models_dir)
        # Generation only: this agent never opens the index or loads the embedder.
        self._agent = QueryAgent(settings, llm=self._llm)

    def generate(self, question: str, retrieval: Retrieval) -> Iterator[AnswerEvent]:
        yield from self._agent.generate_stream(question, retrieval)

    def readiness(self) -> list[str]:
        try:
            self._llm.check()
        except RagserveError as exc:
            return [f"llm: {exc}"]
        return []


#: The deployments (typed ``Any``: Ray's decorators return untyped wrappers).
Retriever: Any = serve.deployment(name="Retriever")(RetrieverReplica)
Generator: Any = serve.deployment(name="Generator")(GeneratorReplica)


class RemoteAgent:
    """``AgentLike`` over deployment handles: what the ingress's FastAPI app calls."""

    def __init__(self, retriever: DeploymentHandle[Any], generator: DeploymentHandle[Any]) -> None:
        self._retriever = retriever
        self._generator = generator.options(stream=True)
        self._generator_unary = generator

    async def search(
        self, question: str, *, k: int | None, filters: SearchFilter | None, mode: SearchMode | None
    ) -> SearchResult:
        result: SearchResult = await self._retrieve_once_more("search", question, k, filters, mode)
        return result

    async def ask_stream(
        self, question: str, *, k: int | None, filters: SearchFilter | None
    ) -> AsyncGenerator[AnswerEvent, None]:
        retrieval: Retrieval = await self._retrieve_once_more(
            "retrieve", question, k, filters, None
        )
        events = self._generator.generate.remote(question, retrieval)
        assert isinstance(events, DeploymentResponseGenerator)
        async for event in events:
            yield event

    async def _retrieve_once_more(self, method: str, *args: Any) -> Any:
        """A Retriever call, sent again once if its replica died while answering it.

        Serve itself re-routes a request whose replica is gone before it is
        accepted; one that was running when the process died (OOM killer, a
        crash, a node lost) fails with ``RayActorError``. Retrieval only reads,
        so a second replica can answer it; a second failure goes to the client
        (503, retry later). Generation is not resent: tokens may be out.
        """
        try:
            return await getattr(self._retriever, method).remote(*args)
        except RayActorError as exc:
            logger.warning("a Retriever replica failed mid-request (%s); sending it again", exc)
            return await getattr(self._retriever, method).remote(*args)

    async def readiness(self) -> list[str]:
        retriever, generator = await asyncio.gather(
            self._retriever.readiness.remote(), self._generator_unary.readiness.remote()
        )
        return [*retriever, *generator]

    async def index_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._retriever.index_info.remote()
        return info

    async def warm_up(self) -> None:
        """Nothing to load here: the Retriever and Generator warm up in their replicas."""


class IngressReplica:
    """HTTP entry: the FastAPI app of ``create_app`` over the two deployments
    (split topology), or over a ``QueryAgent`` in this replica (single)."""

    def __init__(
        self,
        settings: Settings,
        retriever: DeploymentHandle[Any] | None = None,
        generator: DeploymentHandle[Any] | None = None,
        copy_edge_index: bool = False,
    ) -> None:
        configure_json_logging()
        self._settings = settings
        self._local: QueryAgent | None = None
        self._copy_dir: Path | None = None
        self._agent: AgentLike
        if retriever is not None and generator is not None:
            self._agent = RemoteAgent(retriever, generator)
        else:
            self._local, self._copy_dir = _open_agent(settings, copy_edge_index)
            self._agent = LocalAgent(self._local)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self._settings, self._agent, behind_serve_proxy=True)
        app.add_middleware(ReplicaHeaders, **replica_identity())
        return app

    def __del__(self) -> None:
        _release(getattr(self, "_local", None), getattr(self, "_copy_dir", None))


Ingress: Any = serve.deployment(name="Ingress")(serve.ingress()(IngressReplica))


def replica_identity() -> dict[str, str]:
    """This Serve replica's id and its Ray node's id (from inside a replica)."""
    import ray

    return {
        "replica": serve.get_replica_context().replica_id.unique_id,
        "node": ray.get_runtime_context().get_node_id(),
    }


class ReplicaHeaders:
    """ASGI middleware: every response names the ingress replica and Ray node that
    answered (``x-ragserve-replica``, ``x-ragserve-node``), so an operator can see
    requests spread over replicas and nodes. Pure ASGI, so streamed (SSE)
    responses pass through untouched apart from their headers."""

    def __init__(self, app: Any, *, replica: str, node: str) -> None:
        self._app = app
        self._headers = [
            (b"x-ragserve-replica", replica.encode("latin-1")),
            (b"x-ragserve-node", node.encode("latin-1")),
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._headers]}
            await send(message)

        await self._app(scope, receive, stamped)


def build_app(settings: Settings, *, copy_edge_index: bool = False) -> Any:
    """The Serve application (Ingress ← Retriever + Generator), configured from settings.

    Raises ``ConfigError`` early (before any replica starts) when auth is
    required but no keys are configured.
    """
    auth_required(settings.serve)
    settings = _with_absolute_paths(settings)
    serve_settings = settings.serve
    retriever_replicas, pinned = _retriever_replicas(settings, copy_edge_index)
    topology = resolve_topology(settings)
    logger.info("Ray Serve topology: %s", topology)
    if topology == "single":
        return Ingress.options(
            **_scaling(settings, retriever_replicas, pinned=pinned),
            ray_actor_options=_actor_options("Retriever", serve_settings.retriever_num_gpus),
            graceful_shutdown_timeout_s=serve_settings.request_timeout_s + 5,
        ).bind(settings, None, None, copy_edge_index)
    retriever = Retriever.options(
        **_scaling(settings, retriever_replicas, pinned=pinned),
        ray_actor_options=_actor_options("Retriever", serve_settings.retriever_num_gpus),
        graceful_shutdown_timeout_s=serve_settings.request_timeout_s + 5,
    ).bind(settings, copy_edge_index)
    generator = Generator.options(
        **_scaling(settings, serve_settings.generator_replicas),
        ray_actor_options=_actor_options("Generator", serve_settings.generator_num_gpus),
        graceful_shutdown_timeout_s=serve_settings.request_timeout_s + 5,
    ).bind(settings)
    ingress_replicas = max(retriever_replicas, serve_settings.generator_replicas)
    return Ingress.options(
        **_scaling(settings, ingress_replicas),
        ray_actor_options=_actor_options("Ingress", 0.0),
        graceful_shutdown_timeout_s=serve_settings.request_timeout_s + 5,
    ).bind(settings, retriever, generator)


def app_builder(args: dict[str, Any]) -> Any:
    """Entry point for ``serve run`` / ``serve deploy`` (see ``serve_config_yaml``).

    ``args["settings"]`` holds setting groups (no secrets: those come from the
    ``RAGSERVE_*`` environment of the cluster); ``args["copy_edge_index"]``
    is passed to ``build_app``.
    """
    overrides = _dotted(args.get("settings") or {})
    settings = load_settings(None, **overrides)
    return build_app(settings, copy_edge_index=bool(args.get("copy_edge_index", False)))


def run_serve(settings: Settings, *, blocking: bool = True, copy_edge_index: bool = False) -> Any:
    """Start Ray (or join ``RAY_ADDRESS``) and Serve, and deploy the app on host:port.

    ``blocking=True`` serves until interrupted, then shuts Serve down so
    in-flight requests finish (each replica gets ``request_timeout_s + 5`` s).
    Returns the ingress handle when not blocking.
    """
    application = build_app(settings, copy_edge_index=copy_edge_index)
    ensure_ray()
    serve.start(http_options=_http_options(settings))
    logger.info("serving on http://%s:%d", settings.serve.host, settings.serve.port)
    handle = serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    if not blocking:
        return handle
    try:
        _stop_on_sigterm()
        _wait_forever()
    except KeyboardInterrupt:
        logger.info("shutting down; finishing in-flight requests")
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
    return None


def serve_config_yaml(settings: Settings, *, copy_edge_index: bool = False) -> str:
    """A Serve config for ``serve deploy`` that rebuilds this app from ``settings``.

    Secrets (API keys) are left out on purpose; set them in the cluster's
    environment (``RAGSERVE_SERVE__API_KEYS``, ``RAGSERVE_LLM__API_KEY``, ...).
    """
    config = {
        "proxy_location": "EveryNode",
        "http_options": _http_options(settings),
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": {
                    "settings": _public_settings(settings),
                    "copy_edge_index": copy_edge_index,
                },
            }
        ],
    }
    header = (
        "# Ray Serve config for ragserve: `serve deploy this.yaml` (or `serve run this.yaml`).\n"
        "# Secrets are not written here; set RAGSERVE_SERVE__API_KEYS and RAGSERVE_LLM__API_KEY\n"
        "# in the environment of the Ray cluster.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


# -- helpers ---------------------------------------------------------------------


def resolve_topology(settings: Settings) -> Literal["single", "split"]:
    """``single`` or ``split`` for ``serve.topology`` (see the module docstring)."""
    serve_settings = settings.serve
    if serve_settings.topology != "auto":
        return serve_settings.topology
    heavy_local_llm = settings.llm.provider == "llamacpp"
    sides_differ = (
        serve_settings.generator_replicas != serve_settings.retriever_replicas
        or serve_settings.generator_num_gpus > 0
    )
    return "split" if heavy_local_llm or sides_differ else "single"


def _retriever_replicas(settings: Settings, copy_edge_index: bool) -> tuple[int, bool]:
    """Replicas for the Retriever, and whether Edge's one-process limit pins it to 1."""
    wanted = settings.serve.retriever_replicas
    scaling = settings.serve.autoscaling and settings.serve.max_replicas > 1
    if settings.store.backend == "edge" and not copy_edge_index:
        if wanted > 1 or scaling:
            logger.warning(
                "the embedded Qdrant Edge index can be opened by one process only, so the "
                "Retriever runs 1 replica (asked for %s). For more, serve from a Qdrant server "
                "(RAGSERVE_STORE__URL) or give each replica a copy of the index "
                "(copy_edge_index).",
                "autoscaling" if scaling else wanted,
            )
        return 1, True
    return wanted, False


def _scaling(settings: Settings, replicas: int, *, pinned: bool = False) -> dict[str, Any]:
    serve_settings = settings.serve
    limit: dict[str, Any] = {"max_ongoing_requests": serve_settings.max_ongoing_requests}
    if serve_settings.max_replicas_per_node is not None:
        limit["max_replicas_per_node"] = serve_settings.max_replicas_per_node
    if serve_settings.autoscaling and not pinned:
        return {
            **limit,
            "autoscaling_config": {
                "min_replicas": serve_settings.min_replicas,
                "max_replicas": serve_settings.max_replicas,
                "target_ongoing_requests": serve_settings.target_ongoing_requests,
            },
        }
    return {**limit, "num_replicas": replicas}


def _actor_options(name: str, num_gpus: float) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": _CPUS[name]}
    if num_gpus:
        options["num_gpus"] = num_gpus
    return options


def _http_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.serve.host,
        "port": settings.serve.port,
        # Slightly above the app's own timeout, so clients get its 504 JSON body.
        "request_timeout_s": settings.serve.request_timeout_s + 5,
    }


def _open_agent(settings: Settings, copy_edge_index: bool) -> tuple[QueryAgent, Path | None]:
    """A warmed-up ``QueryAgent`` for a replica that holds the index, on a private
    copy of an Edge index when asked (see the module docstring)."""
    copy_dir: Path | None = None
    if copy_edge_index and settings.store.backend == "edge":
        settings, copy_dir = _private_index_copy(settings)
    # A private copy is a snapshot taken at start-up; otherwise follow index switches.
    agent = QueryAgent(settings, follow_live=copy_dir is None)
    try:
        agent.warm_up()
    except RagserveError as exc:  # keep the replica up: readiness and requests say why
        logger.warning("warm-up failed: %s", exc)
    return agent, copy_dir


def _release(agent: QueryAgent | None, copy_dir: Path | None) -> None:
    """Close what ``_open_agent`` opened (from a replica's ``__del__``)."""
    if agent is not None:
        agent.close()
    if copy_dir is not None:
        shutil.rmtree(copy_dir, ignore_errors=True)


#: Private index copies are ``<tmp>/ragserve-replica-<pid>-<random>``: the pid of the
#: replica that owns one lets a later replica remove those of replicas that died.
_COPY_PREFIX = "ragserve-replica-"


def _private_index_copy(settings: Settings) -> tuple[Settings, Path]:
    _remove_orphaned_copies(Path(tempfile.gettempdir()))
    target_root = Path(tempfile.mkdtemp(prefix=f"{_COPY_PREFIX}{os.getpid()}-"))
    source = open_store(settings.store)
    try:
        source.copy_to(target_root)
    finally:
        source.close()
    logger.info(
        "serving a private copy of the index in %s from %s", settings.store.data_dir, target_root
    )
    private = settings.model_copy(deep=True)
    private.store.data_dir = target_root
    return private, target_root


def _remove_orphaned_copies(parent: Path) -> list[Path]:
    """Delete the index copies of replicas that are gone; returns what was removed.

    A replica removes its copy when it stops cleanly, but one that is killed
    (OOM killer, SIGKILL, a crash) cannot, and Serve starts a replacement that
    makes a new copy: without this sweep every lost replica leaves a whole
    index behind in the temp dir. A copy is orphaned when no process has the
    pid in its name (a reused pid only delays its removal to a later sweep).
    """
    removed = []
    for path in parent.glob(f"{_COPY_PREFIX}*"):
        owner = path.name.removeprefix(_COPY_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or pid_alive(int(owner)):
            continue  # a copy made before pids were in the name, or a live replica's
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        logger.info("removed %d index copies of replicas that are gone", len(removed))
    return removed


def _with_absolute_paths(settings: Settings) -> Settings:
    """Replicas may run in another working directory: pin the index path down."""
    absolute = settings.model_copy(deep=True)
    absolute.store.data_dir = settings.store.data_dir.expanduser().resolve()
    return absolute


def _public_settings(settings: Settings) -> dict[str, Any]:
    settings = _with_absolute_paths(settings)
    data: dict[str, Any] = settings.model_dump(mode="json", exclude=_SECRET_FIELDS)
    data.pop("data_dir", None)
    return data


def _dotted(groups: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in groups.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            flat.update(_dotted(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _stop_on_sigterm() -> None:
    """Treat SIGTERM (orchestrators, ``kill``) like Ctrl-C: shut Serve down gracefully."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _wait_forever() -> None:
    import time

    while True:
        time.sleep(3600)
