"""Every command that opens the index takes the same five store options, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from ragserve.cli import app
from ragserve.commands.options import ANY_STORE, StoreChoice, with_store_options

STORE_FLAGS = {"--config", "--data-dir", "--collection", "--qdrant-url", "--qdrant-api-key"}
INDEX_COMMANDS = {
    ("ask",), ("status",), ("serve",), ("ingest",), ("refresh",), ("eval",),
    ("index", "list"), ("index", "rollback"), ("index", "prune"),
}  # fmt: skip


def commands(group: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf command below ``group``, by its path of names."""
    found: dict[tuple[str, ...], Any] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a sub-group such as ``index``
            found |= commands(command, (*path, name))
        else:
            found[(*path, name)] = command
    return found


def flags(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_command_that_opens_the_index_has_the_five_store_options() -> None:
    found = commands(typer.main.get_command(app))

    assert set(found) >= INDEX_COMMANDS
    for path in INDEX_COMMANDS:
        command = found[path]
        assert flags(command) >= STORE_FLAGS, path
        assert "store_options" not in {param.name for param in command.params}, path
        by_name = {param.name: param for param in command.params}
        assert "-c" in by_name["collection"].opts, path
        assert by_name["qdrant_api_key"].envvar == "QDRANT_API_KEY", path


def test_the_decorator_hands_the_command_one_store_choice(tmp_path: Path) -> None:
    seen: list[StoreChoice] = []
    tiny = typer.Typer()

    @tiny.command()
    @with_store_options
    def show(name: str, store_options: StoreChoice = ANY_STORE, loud: bool = False) -> None:
        seen.append(store_options)

    result = CliRunner().invoke(
        tiny,
        ["x", "--data-dir", str(tmp_path), "-c", "handbook", "--loud"],
        env={"QDRANT_API_KEY": None},
    )

    assert result.exit_code == 0, result.output
    assert seen == [StoreChoice(data_dir=tmp_path, collection="handbook")]


def test_the_options_reach_the_settings_as_one_store_choice(tmp_path: Path) -> None:
    choice = StoreChoice(data_dir=tmp_path, collection="handbook", qdrant_url=None)

    settings = choice.settings()

    assert settings.store.data_dir == tmp_path
    assert settings.store.collection == "handbook"
    assert settings.store.url is None
