"""Overload: capacity first, then an open-loop load at a multiple of it.

    .venv/bin/python bench/overload.py --minutes 1            # smoke
    .venv/bin/python bench/overload.py  # the 10-minute measurement

The bare app (``ragserve serve --no-ray``: uvicorn in one child process) over
the tiny built-in index (or ``--data-dir``), extractive LLM, answers /query.

1. Capacity: closed loop, ``--clients`` clients each waiting for its answer,
   for ``--capacity-seconds``; capacity is the successful QPS.
2. Overload: open loop, Poisson arrivals at ``--factor`` x capacity for
   ``--minutes``; an arrival is sent at its time whether or not earlier ones
   were answered, so the server, not the client, decides what is admitted.
   The server admits ``serve.max_in_flight`` requests at once (``--max-in-flight``)
   and answers the rest 503 + Retry-After at once.

Latency is measured from each request's scheduled arrival, so time a request
spent waiting for a client connection counts. Reported: per status the count
and p50/p99 latency, other 5xx and transport errors (should be 0), the share of
rejections that carried Retry-After, and the RSS of the server's process tree
sampled every ``--rss-interval`` s: the mean of the first and of the last
window after warm-up, and their growth (should stay under 5%).

The client shares the machine's cores with the server; ``uptime`` is recorded
beside the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from _common import REPO, PeakRss, free_port, machine, write_result
from serve import QUESTIONS, tiny_index, wait_ready

sys.path.insert(0, str(REPO))  # tests.support.ready, for wait_ready

logger = logging.getLogger("bench.overload")


class RawClient:
    """HTTP/1.1 POSTs over plain asyncio streams, keep-alive, one request per connection.

    httpx costs about a core at 200 requests/s, and the load generator shares
    the machine's two cores with the server: with it, the client (not the
    server) was the bottleneck and requests waited in the client until the
    server's body timeout (408). This client writes prebuilt request bytes and
    reads the head and a Content-Length body; a new connection is opened when
    every open one is busy, as concurrent clients would.
    """

    def __init__(self, base: str, timeout_s: float = 30.0) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port, self.timeout_s = host, int(port), timeout_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.requests = [self._request(question) for question in QUESTIONS]
        self.connections_opened = 0
        self.stale_retried = 0

    def _request(self, question: str) -> bytes:
        body = json.dumps({"query": question}).encode()
        head = (
            f"POST /query HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, n: int) -> tuple[int, dict[str, str]]:
        """Send question ``n``; its status and (lower-cased) headers."""
        return await asyncio.wait_for(
            self._post(self.requests[n % len(self.requests)]), self.timeout_s
        )

    async def _post(self, request: bytes) -> tuple[int, dict[str, str]]:
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if getattr(exc, "partial", b""):
                    raise  # the server had started answering: a real failure
                # The server closed this idle keep-alive connection (uvicorn's
                # timeout_keep_alive) before the request reached it: nothing was
                # sent to the app, so it goes again, as any HTTP client does.
                self.stale_retried += 1
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connections_opened += 1
        return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, dict[str, str]]:
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            if "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            else:
                await reader.read()  # until the server closes
                headers["connection"] = "close"
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(status_line.split(" ", 2)[1]), headers

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


@contextmanager
def bare_server(
    data_dir: Path, collection: str, max_in_flight: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``ragserve serve --no-ray`` in a child process; yields its URL and process."""
    port = free_port()
    env = {
        **os.environ,
        "RAGSERVE_STORE__DATA_DIR": str(data_dir),
        "RAGSERVE_STORE__COLLECTION": collection,
        "RAGSERVE_EMBED__DEVICE": "cpu",
        "RAGSERVE_LLM__PROVIDER": "extractive",
        "RAGSERVE_SERVE__PORT": str(port),
        "RAGSERVE_SERVE__RATE_LIMIT_PER_MINUTE": "0",
        "RAGSERVE_SERVE__MAX_IN_FLIGHT": str(max_in_flight),
    }
    command = [str(Path(sys.executable).with_name("ragserve")), "serve", "--no-ray"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def capacity(base: str, clients: int, seconds: float) -> dict[str, Any]:
    """Closed loop: ``clients`` clients, each sends its next request once answered."""
    latencies: list[float] = []
    errors = 0
    client = RawClient(base, timeout_s=60)
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker(offset: int) -> None:
        nonlocal errors
        n = offset
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            status, _ = await client.post(n)
            n += clients
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    await asyncio.gather(*(worker(i) for i in range(clients)))
    wall = time.perf_counter() - started
    client.close()
    millis = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "ok": len(latencies),
        "errors": errors,
        "qps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(millis, 50)), 1),
        "p99_ms": round(float(np.percentile(millis, 99)), 1),
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    millis = np.array(values) * 1000
    return {
        "p50_ms": round(float(np.percentile(millis, 50)), 1),
        "p99_ms": round(float(np.percentile(millis, 99)), 1),
        "max_ms": round(float(millis.max()), 1),
    }


async def open_loop(
    base: str, rate: float, seconds: float, server_pid: int, rss_interval: float
) -> dict[str, Any]:
    """Poisson arrivals at ``rate``/s for ``seconds``; nothing waits for an answer."""
    by_status: dict[str, list[float]] = {}
    retry_after = {"with": 0, "without": 0}
    rss: list[tuple[float, float]] = []
    tree = PeakRss(server_pid)  # only its sampler is used, from this loop
    rng = random.Random(12)
    client = RawClient(base, timeout_s=30)

    async def one(n: int, scheduled: float) -> None:
        try:
            status, headers = await client.post(n)
            key = str(status)
            if status in (429, 503):
                retry_after["with" if "retry-after" in headers else "without"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            key = type(exc).__name__
        by_status.setdefault(key, []).append(time.perf_counter() - scheduled)

    async def sample_rss(stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            rss.append((time.perf_counter() - started, tree._sample()))
            await asyncio.sleep(rss_interval)

    started = time.perf_counter()
    stop_at = started + seconds
    sampler = asyncio.create_task(sample_rss(stop_at))
    tasks: set[asyncio.Task[None]] = set()
    next_at, n, late = started, 0, 0
    while next_at < stop_at:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            late += 1  # the client itself fell behind its schedule
        task = asyncio.create_task(one(n, next_at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        next_at += rng.expovariate(rate)
    sent_wall = time.perf_counter() - started
    await asyncio.gather(*tasks)
    await sampler
    client.close()
    return {
        "sent": n,
        "sent_over_50ms_late": late,
        "connections_opened": client.connections_opened,
        "stale_keepalive_resent": client.stale_retried,
        "offered_rps": round(n / sent_wall, 2),
        "by_status": by_status,
        "retry_after": retry_after,
        "rss": rss,
    }


def rss_growth(rss: list[tuple[float, float]], warmup_s: float, window_s: float) -> dict[str, Any]:
    """Mean RSS of the first and last ``window_s`` after ``warmup_s``, and the growth."""
    after = [(t, mb) for t, mb in rss if t >= warmup_s]
    end = after[-1][0]
    first = [mb for t, mb in after if t < warmup_s + window_s]
    last = [mb for t, mb in after if t > end - window_s]
    first_mb, last_mb = float(np.mean(first)), float(np.mean(last))
    return {
        "warmup_s": warmup_s,
        "window_s": window_s,
        "samples": len(rss),
        "first_window_mb": round(first_mb, 1),
        "last_window_mb": round(last_mb, 1),
        "growth_pct": round(100 * (last_mb - first_mb) / first_mb, 2),
        "max_mb": round(max(mb for _, mb in rss), 1),
    }


def summarize(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    by_status = run["by_status"]
    statuses = {key: {"count": len(v), **percentiles(v)} for key, v in sorted(by_status.items())}
    rejected = sum(len(by_status.get(code, [])) for code in ("429", "503"))
    other_errors = sum(len(v) for key, v in by_status.items() if key not in ("200", "429", "503"))
    ok = len(by_status.get("200", []))
    return {
        "sent": run["sent"],
        "sent_over_50ms_late": run["sent_over_50ms_late"],
        "connections_opened": run["connections_opened"],
        "stale_keepalive_resent": run["stale_keepalive_resent"],
        "offered_rps": run["offered_rps"],
        "served_qps": round(ok / seconds, 2),
        "ok": ok,
        "rejected_429_503": rejected,
        "rejected_with_retry_after": run["retry_after"]["with"],
        "rejected_without_retry_after": run["retry_after"]["without"],
        "other_errors": other_errors,
        "by_status": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, help="index built by `ragserve ingest` [tiny]")
    parser.add_argument("--collection", default="docs")
    parser.add_argument("--minutes", type=float, default=10.0, help="open-loop duration")
    parser.add_argument("--factor", type=float, default=2.0, help="offered load / capacity")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--capacity-seconds", type=float, default=30.0)
    parser.add_argument("--max-in-flight", type=int, default=8, help="serve.max_in_flight")
    parser.add_argument("--rss-interval", type=float, default=3.0)
    parser.add_argument("--output", default="overload", help="results/<name>.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    seconds = args.minutes * 60
    warmup_s, window_s = min(60.0, seconds / 6), min(60.0, seconds / 4)
    data_dir = (args.data_dir or tiny_index()).resolve()
    try:
        with bare_server(data_dir, args.collection, args.max_in_flight) as (base, process):
            asyncio.run(capacity(base, 2, 5))  # warm the embedder and the index
            cap = asyncio.run(capacity(base, args.clients, args.capacity_seconds))
            logger.info("capacity: %s", cap)
            rate = args.factor * cap["qps"]
            uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout
            run = asyncio.run(open_loop(base, rate, seconds, process.pid, args.rss_interval))
            uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    overload = summarize(run, seconds)
    memory = rss_growth(run["rss"], warmup_s, window_s)
    logger.info("overload: %s", {k: v for k, v in overload.items() if k != "by_status"})
    logger.info("rss: %s", memory)
    path = write_result(
        args.output,
        {
            "machine": machine(),
            "uptime_before": uptime_before.strip(),
            "uptime_after": uptime_after.strip(),
            "path": "ragserve serve --no-ray (uvicorn, one process)",
            "index": data_dir.name if args.data_dir else "tiny index from tests/support/index.py",
            "llm": "extractive",
            "max_in_flight": args.max_in_flight,
            "capacity_closed_loop": cap,
            "open_loop": {
                "minutes": args.minutes,
                "factor": args.factor,
                "target_rps": round(rate, 2),
                **overload,
            },
            "rss_server_tree": memory,
            "passed": {
                "no_other_5xx_or_transport_errors": overload["other_errors"] == 0,
                "every_rejection_has_retry_after": overload["rejected_without_retry_after"] == 0,
                "rss_growth_under_5pct": memory["growth_pct"] < 5.0,
            },
        },
    )
    print(path)


if __name__ == "__main__":
    main()
