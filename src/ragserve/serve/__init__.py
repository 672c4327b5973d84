"""The HTTP service: a FastAPI app, served by uvicorn or composed in Ray Serve.

``create_app(settings, agent)`` builds the app; ``run_serve(settings)`` runs
it on Ray Serve with retrieval and generation as separately scaled
deployments; ``serve_config_yaml(settings)`` renders a config for
``serve deploy``. Ray is imported only by the Ray Serve functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragserve.serve.app import create_app, run_uvicorn
from ragserve.serve.backend import AgentLike, LocalAgent

if TYPE_CHECKING:
    from ragserve.serve.deployments import app_builder, build_app, run_serve, serve_config_yaml

_RAY_NAMES = {"app_builder", "build_app", "run_serve", "serve_config_yaml"}


def __getattr__(name: str) -> Any:
    if name in _RAY_NAMES:
        from ragserve.serve import deployments

        return getattr(deployments, name)
    raise AttributeError(f"module 'ragserve.serve' has no attribute {name!r}")


__all__ = [
    "AgentLike",
    "LocalAgent",
    "app_builder",
    "build_app",
    "create_app",
    "run_serve",
    "run_uvicorn",
    "serve_config_yaml",
]
