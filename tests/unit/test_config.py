"""Settings: defaults, environment, files, overrides, and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragserve.config import load_settings
from ragserve.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_are_the_embedded_offline_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGSERVE_LLM__PROVIDER", raising=False)  # conftest pins extractive
    settings = load_settings()
    assert settings.store.backend == "edge"
    assert settings.embed.model == "all-MiniLM-L6-v2"
    assert settings.llm.provider == "auto"  # the offline model if fetched, else extractive
    assert settings.ingest.chunk_size == 512


def test_environment_overrides_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSERVE_RETRIEVE__K", "7")
    monkeypatch.setenv("RAGSERVE_DATA_DIR", "/srv/idx")
    settings = load_settings()
    assert settings.retrieve.k == 7
    assert settings.store.data_dir == Path("/srv/idx")


def test_cli_overrides_win_over_file_and_none_is_ignored(tmp_path: Path) -> None:
    config = tmp_path / "ragserve.toml"
    config.write_text('[retrieve]\nk = 9\n[store]\ncollection = "fromfile"\n')
    settings = load_settings(config, **{"retrieve.k": 3, "store.collection": None})
    assert settings.retrieve.k == 3
    assert settings.store.collection == "fromfile"


def test_qdrant_url_selects_the_server_backend() -> None:
    settings = load_settings(None, **{"store.url": "http://qdrant:6333"})
    assert settings.store.backend == "qdrant"


def test_bad_value_names_the_setting_and_its_env_var() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, **{"ingest.chunk_size": 10})
    message = str(excinfo.value)
    assert "ingest.chunk_size" in message
    assert "RAGSERVE_INGEST__CHUNK_SIZE" in message


def test_a_group_variable_that_is_not_json_is_one_line_naming_the_nested_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGSERVE_LLM", "extractive")  # RAGSERVE_LLM__PROVIDER was meant
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None)
    message = str(excinfo.value)

    assert "\n" not in message
    assert "RAGSERVE_LLM " in message
    assert "RAGSERVE_LLM__PROVIDER" in message


def test_overlap_must_be_below_chunk_size() -> None:
    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(None, **{"ingest.chunk_size": 100, "ingest.chunk_overlap": 100})


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_api_key_is_secret_in_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSERVE_LLM__API_KEY", "sk-very-secret")
    settings = load_settings()
    assert "sk-very-secret" not in repr(settings)
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-very-secret"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "single"),
        ({"llm.provider": "openai"}, "single"),
        ({"llm.provider": "llamacpp"}, "split"),
        ({"serve.generator_replicas": 2}, "split"),
        ({"serve.generator_num_gpus": 1}, "split"),
        ({"llm.provider": "llamacpp", "serve.topology": "single"}, "single"),
        ({"serve.topology": "split"}, "split"),
    ],
)
def test_serve_topology_is_single_unless_generation_is_heavy_or_scaled_apart(
    overrides: dict[str, object], expected: str
) -> None:
    from ragserve.serve.deployments import resolve_topology

    assert resolve_topology(load_settings(None, **overrides)) == expected


@pytest.mark.parametrize("command", ["ask", "eval"])
def test_k_below_one_is_a_usage_error(tmp_path: Path, command: str) -> None:
    """``-k 0`` used to fall back to the default 5 sources (``k or settings.k``)."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "ragserve.cli", command]
    args += ["anything", "-k", "0"] if command == "ask" else ["-q", "q.jsonl", "-k", "0"]
    result = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    assert "-k" in result.stderr
    assert "greater than or equal to 1" in result.stderr
