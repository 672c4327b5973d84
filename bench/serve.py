"""Serving throughput and latency: bare FastAPI + uvicorn vs Ray Serve at 1 and 2 replicas.

    .venv/bin/python bench/serve.py                                  # tiny built-in index
    .venv/bin/python bench/serve.py --data-dir tmp/bench-index --requests 200

The same app (``ragserve.serve.create_app``) answers in every target, over the
same index, with the extractive LLM (no model server), so the difference
between targets is the serving stack: uvicorn in one process calling
``QueryAgent`` in threads, vs Ray Serve in its two layouts (``serve.topology``):
``split`` (proxy → Ingress → Retriever / Generator replicas over handles) and
``single`` (proxy → one Ingress deployment answering in-process).

Per target, endpoint (/search, /query) and concurrency (1, 8, 32) a bounded
load of ``--requests`` requests (stopping early after ``--max-seconds``) runs
from an httpx async client on 127.0.0.1; latency percentiles cover successful
requests, QPS counts them over the wall time.

Targets run one after another. uvicorn runs in a child process. Ray Serve runs
from this process (the driver only submits; replicas are other processes).
Qdrant Edge lets one process open an index, so the 2-replica Ray run gives each
Retriever replica a private copy of it (``copy_edge_index``); no Qdrant server
binary exists on this machine for the shared-index alternative.

The client shares the machine's cores with the server: on a small machine the
figures include the client's own CPU use and are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import REPO, free_port, machine, write_result
from ragserve.config import Settings

QUESTIONS = [
    "How do I run several copies of a deployment?",
    "How do I stream tokens to the client?",
    "How do deployments call each other?",
    "How does autoscaling decide the number of replicas?",
    "How do I give a deployment a GPU?",
    "How do I serve a FastAPI app with Ray Serve?",
    "What does serve deploy do with a config file?",
    "How do I set a request timeout?",
    "How do replicas shut down gracefully?",
    "What is a DeploymentHandle?",
]

logger = logging.getLogger("bench.serve")


def settings_for(
    data_dir: Path, collection: str, port: int, replicas: int = 1, topology: str = "auto"
) -> Settings:
    return Settings.model_validate(
        {
            "store": {"data_dir": data_dir, "collection": collection},
            "embed": {"device": "cpu"},
            "llm": {"provider": "extractive"},
            "serve": {
                "host": "127.0.0.1",
                "port": port,
                "rate_limit_per_minute": 0,
                "retriever_replicas": replicas,
                "generator_replicas": replicas,
                "topology": topology,
            },
        }
    )


def wait_ready(base: str, timeout_s: float = 180.0) -> None:
    from tests.support.ready import wait_until_ready

    wait_until_ready(base, timeout_s)


@contextmanager
def uvicorn_server(data_dir: Path, collection: str) -> Iterator[str]:
    """The bare app under uvicorn in a child process, configured through the env."""
    port = free_port()
    env = {
        **os.environ,
        "RAGSERVE_STORE__DATA_DIR": str(data_dir),
        "RAGSERVE_STORE__COLLECTION": collection,
        "RAGSERVE_EMBED__DEVICE": "cpu",
        "RAGSERVE_SERVE__PORT": str(port),
        "RAGSERVE_SERVE__RATE_LIMIT_PER_MINUTE": "0",
    }
    code = (
        "from ragserve.config import load_settings\n"
        "from ragserve.serve import run_uvicorn\n"
        "run_uvicorn(load_settings(), log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def deploy_ray(data_dir: Path, collection: str, port: int, replicas: int, topology: str) -> str:
    """(Re)deploy the Ray Serve app with ``replicas`` replicas per deployment."""
    from ray import serve

    from ragserve.serve.deployments import run_serve

    settings = settings_for(data_dir, collection, port, replicas, topology)
    run_serve(settings, blocking=False, copy_edge_index=replicas > 1)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    deployments = serve.status().applications["ragserve"].deployments
    running = {name: d.replica_states.get("RUNNING", 0) for name, d in deployments.items()}
    logger.info("ray serve running replicas: %s", running)
    return base


async def load(
    base: str, endpoint: str, concurrency: int, requests: int, max_seconds: float
) -> dict[str, Any]:
    """``requests`` POSTs from ``concurrency`` workers; stops early after ``max_seconds``."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    ticket = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        stop_at = started + max_seconds

        async def worker() -> None:
            while (n := next(ticket)) < requests and time.perf_counter() < stop_at:
                question = QUESTIONS[n % len(QUESTIONS)]
                t0 = time.perf_counter()
                try:
                    response = await client.post(endpoint, json={"query": question})
                    outcome = "ok" if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                if outcome == "ok":
                    latencies.append(time.perf_counter() - t0)
                else:
                    failures[outcome] = failures.get(outcome, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    millis = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "endpoint": endpoint,
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": sum(failures.values()),
        "error_kinds": failures,
        "seconds": round(wall, 3),
        "qps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(millis, 50)), 2),
        "p99_ms": round(float(np.percentile(millis, 99)), 2),
        "mean_ms": round(float(np.mean(millis)), 2),
    }


def run_levels(
    target: str, replicas: int, base: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    for endpoint in args.endpoints:
        asyncio.run(load(base, endpoint, 2, args.warmup, 60))
        for concurrency in args.concurrency:
            row = asyncio.run(load(base, endpoint, concurrency, args.requests, args.max_seconds))
            row = {"target": target, "replicas": replicas, **row}
            logger.info(json.dumps(row))
            rows.append(row)
    return rows


def overhead(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray Serve minus bare uvicorn, per endpoint and concurrency (p50 ms, QPS)."""
    bare = {(r["endpoint"], r["concurrency"]): r for r in rows if r["target"] == "uvicorn"}
    out = []
    for row in rows:
        base = bare.get((row["endpoint"], row["concurrency"]))
        if row["target"] == "uvicorn" or base is None:
            continue
        out.append(
            {
                "target": f"{row['target']}-{row['replicas']}",
                "endpoint": row["endpoint"],
                "concurrency": row["concurrency"],
                "p50_ms_added": round(row["p50_ms"] - base["p50_ms"], 2),
                "p99_ms_added": round(row["p99_ms"] - base["p99_ms"], 2),
                "qps_ratio": round(row["qps"] / base["qps"], 3) if base["qps"] else None,
            }
        )
    return out


def tiny_index() -> Path:
    sys.path.insert(0, str(REPO))
    from tests.support.index import build_index

    data_dir = Path(tempfile.mkdtemp(prefix="ragserve-bench-serve-"))
    build_index(data_dir)
    return data_dir


def measure(data_dir: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every cell: bare uvicorn first, then Ray Serve at each replica count."""
    rows: list[dict[str, Any]] = []
    with uvicorn_server(data_dir, args.collection) as base:
        rows += run_levels("uvicorn", 1, base, args)
    if args.skip_ray:
        return rows
    import ray
    from ray import serve

    port = free_port()
    try:
        for topology, replicas in itertools.product(args.topologies, args.replicas):
            base = deploy_ray(data_dir, args.collection, port, replicas, topology)
            rows += run_levels(f"ray-serve-{topology}", replicas, base, args)
    finally:
        serve.shutdown()
        ray.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, help="index built by `ragserve ingest` [tiny built-in]"
    )
    parser.add_argument("--collection", default="docs")
    parser.add_argument("--requests", type=int, default=100, help="requests per cell")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="time cap per cell")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--endpoints", nargs="+", default=["/search", "/query"])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--topologies", nargs="+", default=["single", "split"], choices=["single", "split"]
    )
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")

    data_dir = (args.data_dir or tiny_index()).resolve()
    try:
        rows = measure(data_dir, args)
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    path = write_result(
        "serve",
        {
            "machine": machine(),
            # Not the path: results are committed, machine paths are noise there.
            "index": data_dir.name if args.data_dir else "tiny index from tests/support/index.py",
            "llm": "extractive",
            "requests_per_cell": args.requests,
            "max_seconds_per_cell": args.max_seconds,
            "results": rows,
            "ray_serve_overhead": overhead(rows),
            "notes": (
                "client and servers share the machine's cores; Ray 2-replica run serves a "
                "private copy of the Edge index per Retriever replica (copy_edge_index)"
            ),
        },
    )
    print(path)


if __name__ == "__main__":
    main()
