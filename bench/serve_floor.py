"""The floor of Ray Serve's per-request cost on this machine, with no ragserve code.

    .venv/bin/python bench/serve_floor.py [--requests 300]

A hello-world FastAPI route (returns a constant) answered three ways, one
request at a time from an httpx client on 127.0.0.1:

* ``uvicorn``: the route on bare uvicorn in a child process;
* ``serve-proxy``: the route in a Serve ingress deployment (proxy → replica);
* ``serve-hop``: the route awaits one handle call to a second deployment
  (proxy → replica → replica), the shape of every ``split``-topology stage.

``bench/serve.py`` measures ragserve's own overhead; this says how much of it
Ray Serve costs by itself here, i.e. what no change to ragserve can remove.
Writes ``bench/results/serve-floor.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from fastapi import FastAPI

from _common import free_port, machine, write_result
from ragserve.eval.statistics import percentile

ROUTE_APP = (
    "import uvicorn\n"
    "from fastapi import FastAPI\n"
    "app = FastAPI()\n"
    "@app.get('/direct')\n"
    "async def direct():\n"
    "    return {'ok': 1}\n"
    "uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')\n"
)


def timed_gets(url: str, requests: int, warmup: int = 30) -> dict[str, float]:
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + 60
        while True:  # wait until the server answers
            try:
                client.get(url).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for _ in range(warmup):
            client.get(url)
        millis = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            millis.append((time.perf_counter() - started) * 1000)
    return {f"p{q}_ms": round(percentile(millis, q), 2) for q in (50, 90, 99)}


def bare_uvicorn(requests: int) -> dict[str, float]:
    port = free_port()
    code = ROUTE_APP.replace("{port}", str(port))
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        return timed_gets(f"http://127.0.0.1:{port}/direct", requests)
    finally:
        process.terminate()
        process.wait(timeout=30)


def ray_serve(requests: int) -> dict[str, dict[str, float]]:
    import ray
    from ray import serve

    app = FastAPI()

    @serve.deployment(max_ongoing_requests=64)
    class Leaf:
        def ping(self, value: str) -> str:
            return value

    @serve.deployment(max_ongoing_requests=64)
    @serve.ingress(app)
    class Front:
        def __init__(self, leaf: Any) -> None:
            self.leaf = leaf

        @app.get("/direct")
        async def direct(self) -> dict[str, int]:
            return {"ok": 1}

        @app.get("/hop")
        async def hop(self) -> dict[str, str]:
            return {"ok": await self.leaf.ping.remote("x")}

    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(Front.bind(Leaf.bind()), name="floor", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        return {
            "serve-proxy": timed_gets(f"{base}/direct", requests),
            "serve-hop": timed_gets(f"{base}/hop", requests),
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    targets = {"uvicorn": bare_uvicorn(args.requests), **ray_serve(args.requests)}
    base = targets["uvicorn"]["p50_ms"]
    path = write_result(
        "serve-floor",
        {
            "machine": machine(),
            "requests": args.requests,
            "concurrency": 1,
            "targets": targets,
            "added_p50_ms": {
                name: round(row["p50_ms"] - base, 2)
                for name, row in targets.items()
                if name != "uvicorn"
            },
        },
    )
    for name, row in targets.items():
        print(f"{name:12s} p50 {row['p50_ms']:6.2f} ms  p90 {row['p90_ms']:6.2f} ms")
    print(path)


if __name__ == "__main__":
    main()
