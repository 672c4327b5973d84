"""Helpers shared by the benchmarks: corpora, peak memory, JSON results."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = REPO / "bench" / "results"
CORPORA = {
    "sample": REPO / "examples" / "ray-serve-docs-2023.tar.gz",
    "ray-docs": SHARED / "corpora" / "ray-docs-2023.tar.gz",
}


def unpack(corpus: str, into: Path) -> Path:
    """Unpack a named corpus once (reused between runs) and return its folder."""
    target = into / corpus
    marker = target / ".unpacked"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(CORPORA[corpus]) as archive:
            archive.extractall(target, filter="data")
        marker.touch()
    return target


class PeakRss:
    """Samples the RSS of this process and all its children (Ray workers) in MB."""

    def __init__(self, pid: int | None = None, interval: float = 0.25) -> None:
        import psutil

        self._proc = psutil.Process(pid or os.getpid())
        self._interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        total = 0
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total / 1e6

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_with_peak_rss(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[str, float, float]:
    """Run a command; return its stdout, wall seconds and peak RSS (tree) in MB."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with PeakRss(proc.pid) as peak:
        stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {stderr[-2000:]}")
    return stdout, time.perf_counter() - started, peak.peak_mb


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server the benchmark starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
