"""Every command that opens the index takes the same five store options, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ragserve.cli import app
from ragserve.commands.options import StoreChoice

STORE_FLAGS = {"--config", "--data-dir", "--collection", "--qdrant-url", "--qdrant-api-key"}
INDEX_COMMANDS = {
    ("ask",), ("status",), ("serve",), ("ingest",), ("refresh",), ("eval",),
    ("index", "list"), ("index", "rollback"), ("index", "prune"),
}  # fmt: skip


def commands(group: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's own click core)
            found |= commands(command, (*path, name))
        else:
            found[(*path, name)] = command
    return found


def flags(command: Any) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


def test_every_command_that_opens_the_index_has_the_five_store_options() -> None:
    cli = typer.main.get_command(app)
    assert hasattr(cli, "commands")
    found = commands(cli)

    assert set(found) >= INDEX_COMMANDS
    for path in INDEX_COMMANDS:
        assert flags(found[path]) >= STORE_FLAGS, path
        assert "store_options" not in {param.name for param in found[path].params}, path
    collection = next(p for p in found[("ask",)].params if p.name == "collection")
    assert set(collection.opts) == {"--collection", "-c"}


def test_the_options_reach_the_settings_as_one_store_choice(tmp_path: Path) -> None:
    choice = StoreChoice(data_dir=tmp_path, collection="handbook", qdrant_url=None)

    settings = choice.settings()

    assert settings.store.data_dir == tmp_path
    assert settings.store.collection == "handbook"
    assert settings.store.url is None
