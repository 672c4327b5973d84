"""The Kubernetes recipe in ``deploy/`` parses, and its parts are what ragserve accepts.

The RayService's embedded Serve config is validated with Ray's own schema
(``ServeDeploySchema``) and its settings with ragserve's ``Settings``; the
CronJob's ``ragserve refresh`` arguments are checked against the real command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration  # imports Ray Serve's schema

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    found = [doc for path in DEPLOY.glob("*.yaml") for doc in documents(path.name)]
    matches = [doc for doc in found if doc.get("kind") == kind]
    assert len(matches) == 1, f"expected one {kind} in deploy/, found {len(matches)}"
    return matches[0]


def test_every_manifest_parses_and_names_its_kind() -> None:
    kinds = {doc["kind"] for path in DEPLOY.glob("*.yaml") for doc in documents(path.name)}
    assert {"RayService", "CronJob", "Secret", "StatefulSet", "Service"} <= kinds


def test_the_rayservice_serve_config_passes_rays_own_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    service = by_kind("RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    (application,) = schema.applications
    assert application.import_path == "ragserve.serve.deployments:app_builder"


def test_the_serve_config_settings_load_and_use_the_qdrant_server() -> None:
    from ragserve.config import load_settings
    from ragserve.serve.deployments import _dotted

    config = yaml.safe_load(by_kind("RayService")["spec"]["serveConfigV2"])
    args = config["applications"][0]["args"]
    settings = load_settings(None, **_dotted(args["settings"]))
    assert settings.store.backend == "qdrant"
    assert settings.store.url == "http://qdrant:6333"
    assert "api_key" not in args["settings"]["store"]  # secrets come from the Secret


def test_every_pod_reads_its_secrets_from_the_kubernetes_secret() -> None:
    secret = by_kind("Secret")["metadata"]["name"]
    service = by_kind("RayService")["spec"]["rayClusterConfig"]
    groups = [service["headGroupSpec"], *service["workerGroupSpecs"]]
    job = by_kind("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    containers = [c for g in groups for c in g["template"]["spec"]["containers"]]
    for container in [*containers, *job["containers"]]:
        assert {"secretRef": {"name": secret}} in container["envFrom"]


def test_the_cronjob_runs_ragserve_refresh_with_options_the_command_has() -> None:
    import typer

    from ragserve.cli import app

    cronjob = by_kind("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["ragserve"]
    assert container["args"][0] == "refresh"
    command = typer.main.get_command(app).commands["refresh"]  # type: ignore[attr-defined]
    known = {opt for param in command.params for opt in param.opts}
    used = {arg for arg in container["args"] if arg.startswith("--")}
    assert used <= known
