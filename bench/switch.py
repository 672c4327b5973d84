"""Switch under load: 8 loopback clients on /search while the index version switches twice.

A ``ragserve serve --no-ray`` process serves the small test index (v1). After
``--warm`` seconds a new version with one new page is published (what an ingest
does at its end), and again halfway; the clients count errors and latency, split
into "steady" and "within 2 s after a switch", and check that the new page is
the top answer for its question right after each switch.

    python bench/switch.py --seconds 60 --clients 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _common import REPO, free_port, machine, write_result

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from test_serve_ray_versions import NEW_URL, QUESTION, publish_a_new_page
from tests.support.index import build_index

from ragserve.eval.statistics import percentile


def serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAGSERVE_EMBED__DEVICE": "cpu",
        "RAGSERVE_STORE__VERSION_POLL_S": "1",
        "RAGSERVE_SERVE__RATE_LIMIT_PER_MINUTE": "0",
    }
    command = [sys.executable, "-m", "ragserve.cli", "serve", "--no-ray", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def run(seconds: float, clients: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-switch-")) / "index"
    build_index(data_dir)
    process, base = serve(data_dir)
    samples: list[tuple[float, float, int]] = []  # (start, latency, status)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = http.post(f"{base}/search", json={"query": QUESTION}).status_code
                except httpx.HTTPError:
                    status = -1
                samples.append((started, time.monotonic() - started, status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    switches: list[dict[str, Any]] = []
    for at in (seconds / 3, 2 * seconds / 3):
        time.sleep(max(0.0, began + at - time.monotonic()))
        switched = time.monotonic()
        version = publish_a_new_page(data_dir)
        published = time.monotonic()
        while httpx.get(f"{base}/readyz", timeout=10).json().get("index_version") != version:
            time.sleep(0.05)
        seen = time.monotonic()
        top = httpx.post(f"{base}/search", json={"query": QUESTION}, timeout=30).json()
        switches.append(
            {
                "version": version,
                "build_and_publish_s": round(published - switched, 3),
                # Includes /readyz's own 2 s cache and the 1 s poll interval.
                "published_to_readyz_s": round(seen - published, 3),
                "top_is_new_page": top["sources"][0]["page_url"] == NEW_URL,
                "at": switched,
            }
        )
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    process.terminate()
    process.wait(timeout=30)

    def near_switch(start: float) -> bool:
        return any(0 <= start - s["at"] <= 2.0 for s in switches)

    steady = [lat for start, lat, _ in samples if not near_switch(start)]
    during = [lat for start, lat, _ in samples if near_switch(start)]
    for switch in switches:
        del switch["at"]
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(samples),
        "errors": sum(1 for _, _, status in samples if status != 200),
        "qps": round(len(samples) / seconds, 1),
        "steady_ms": _percentiles(steady),
        "within_2s_of_a_switch_ms": {"n": len(during), **_percentiles(during)},
        "switches": switches,
        "machine": machine(),
    }


def _percentiles(latencies: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(latencies, 50) * 1000, 1),
        "p99": round(percentile(latencies, 99) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    result = run(args.seconds, args.clients)
    print({k: v for k, v in result.items() if k != "machine"})
    print(f"wrote {write_result('switch', result)}")


if __name__ == "__main__":
    main()
