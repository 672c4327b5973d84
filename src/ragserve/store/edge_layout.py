"""The on-disk layout of a versioned Qdrant Edge collection.

    data_dir/collections/<name>/
        current                 the live version's name; replaced with os.replace
        versions/v1/            one Edge collection per version:
            shard/              the Edge shard (segments + WAL)
            collection.json     schema + metadata, written last: marks it complete
        versions/v2/ ...
        shard/, collection.json a collection from before versions ("legacy"):
                                read in place until the first versioned ingest
                                switches ``current`` away from it

A version is only ever written by the process that staged it, so readers of
the live version (a running server) never hold the lock on a version being
built. The pointer is the one thing two processes share, and it changes by
one atomic rename.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from ragserve.errors import StoreUnavailableError, VersionError

#: The name of a pre-versions collection read in place.
LEGACY = "legacy"
POINTER_FILE = "current"
VERSIONS_DIR = "versions"
SCHEMA_FILE = "collection.json"
SHARD_DIR = "shard"
_VERSION_NAME = re.compile(r"^v(\d+)$")


def version_dir(root: Path, version: str) -> Path:
    """Where ``version`` of the collection at ``root`` lives."""
    if version == LEGACY:
        return root
    if not _VERSION_NAME.match(version):
        raise VersionError(
            f"'{version}' is not a version name; versions are called v1, v2, ... "
            f"(see `ragserve index list`)"
        )
    return root / VERSIONS_DIR / version


def is_complete(directory: Path) -> bool:
    return (directory / SCHEMA_FILE).is_file() and (directory / SHARD_DIR).is_dir()


def read_pointer(root: Path) -> str | None:
    """The live version: the pointer, else a legacy collection, else None."""
    try:
        name = (root / POINTER_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return LEGACY if is_complete(root) else None
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot read the live-version pointer {root / POINTER_FILE}: {exc}; "
            f"check the data directory's permissions"
        ) from exc
    return name or None


def write_pointer(root: Path, version: str) -> None:
    """Point readers at ``version``: write a temp file, fsync, ``os.replace``, fsync dir."""
    handle, tmp_name = tempfile.mkstemp(dir=root, prefix=".current-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as tmp:
            tmp.write(version + "\n")
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, root / POINTER_FILE)
        _fsync_dir(root)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise StoreUnavailableError(
            f"cannot switch the live version of {root} to {version}: {exc}; "
            f"the previous version stays live"
        ) from exc


def version_names(root: Path) -> list[str]:
    """Complete versions, oldest first; the legacy collection (if any) comes first."""
    names = [LEGACY] if is_complete(root) else []
    numbered = sorted(
        (int(match.group(1)), entry.name)
        for entry in _entries(root / VERSIONS_DIR)
        if (match := _VERSION_NAME.match(entry.name)) and is_complete(entry)
    )
    return names + [name for _, name in numbered]


def incomplete_versions(root: Path) -> list[str]:
    """Version directories a killed run left without ``collection.json``."""
    return [
        entry.name
        for entry in _entries(root / VERSIONS_DIR)
        if _VERSION_NAME.match(entry.name) and not is_complete(entry)
    ]


def new_version_dir(root: Path) -> tuple[str, Path]:
    """Reserve the next version name by creating its directory (atomic ``mkdir``)."""
    base = root / VERSIONS_DIR
    base.mkdir(parents=True, exist_ok=True)
    numbers = [
        int(match.group(1))
        for entry in _entries(base)
        if (match := _VERSION_NAME.match(entry.name))
    ]
    number = max(numbers, default=0) + 1
    while True:
        name = f"v{number}"
        try:
            (base / name).mkdir()
        except FileExistsError:
            number += 1
            continue
        return name, base / name


def copy_shard(source: Path, target: Path) -> None:
    """Copy a shard directory, keeping holes in sparse files (the WAL is 32 MiB of them).

    A plain copy would write every WAL segment out in full; seeking over
    holes keeps a seeded version as small as the live one. Raises
    ``StoreUnavailableError`` (disk full, permissions) after removing the
    partial copy.
    """
    try:
        for directory, _, files in os.walk(source):
            relative = Path(directory).relative_to(source)
            (target / relative).mkdir(parents=True, exist_ok=True)
            for name in files:
                if name.startswith(".probe-"):
                    continue
                _copy_sparse(Path(directory) / name, target / relative / name)
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        full = exc.errno == errno.ENOSPC
        cause = "no space left on the device" if full else str(exc)
        remedy = (
            "free disk space or prune old versions (`ragserve index prune`)"
            if full
            else "check the data directory"
        )
        raise StoreUnavailableError(
            f"cannot copy the live index into a new version at {target}: {cause}; "
            f"the live version is intact: {remedy} and run again"
        ) from exc


def _copy_sparse(source: Path, target: Path) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        size = os.fstat(reader.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                data_at = os.lseek(reader.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            hole_at = os.lseek(reader.fileno(), data_at, os.SEEK_HOLE)
            reader.seek(data_at)
            writer.seek(data_at)
            remaining = hole_at - data_at
            while remaining:
                block = reader.read(min(remaining, 1 << 20))
                if not block:
                    break
                writer.write(block)
                remaining -= len(block)
            offset = hole_at
        writer.truncate(size)
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(source, target)


def remove_version_dir(root: Path, version: str) -> None:
    """Delete a version's files; the legacy one leaves ``versions/`` alone."""
    directory = version_dir(root, version)
    try:
        if version == LEGACY:
            shutil.rmtree(root / SHARD_DIR, ignore_errors=False)
            (root / SCHEMA_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreUnavailableError(
            f"cannot delete index version {version} at {directory}: {exc}; "
            f"check the directory's permissions or delete it by hand"
        ) from exc


def _entries(directory: Path) -> list[Path]:
    try:
        return [entry for entry in directory.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
