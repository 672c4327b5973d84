"""A Ray Serve replica killed under load: errors seen by clients, and time to recover.

    .venv/bin/python bench/replica_kill.py                      # Ingress replica, single layout
    .venv/bin/python bench/replica_kill.py --topology split --kill Retriever

Ray Serve on this machine (``run_serve``, two replicas per deployment, each
with its own copy of the tiny built-in index, extractive LLM) answers /query
under an open-loop Poisson load of ``--rate`` requests/s for ``--seconds``. At
``--kill-at`` one replica process of the ``--kill`` deployment (found in this
Ray's actor table) gets SIGKILL: no graceful
shutdown, as when a node's OOM killer or a crash takes it.

Reported: requests sent, answered 200, and every other outcome (status or
transport error) with its time after the kill; the error rate over the run;
``recovery_s``, the time from the kill until a replacement replica process
exists, Serve reports the deployment's replicas all RUNNING again and (for the
Ingress, whose replica names every answer) the replacement has answered.
Targets (issue #12): error rate <= 0.1 %, recovery <= 15 s.
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
import time
from pathlib import Path
from typing import Any

from _common import free_port, machine, write_result
from overload import RawClient
from serve import deploy_ray, tiny_index

logger = logging.getLogger("bench.replica_kill")


def replica_pids(deployment: str) -> list[int]:
    """PIDs of the live replicas of ``deployment`` in app ``ragserve`` of *this* Ray.

    Read from the GCS actor table (``ray._private.state.actors``: a private
    API, as in tests/e2e/test_serve_two_nodes.py, because ``list_actors``
    needs the dashboard, which is off), so another Ray on the machine is
    never touched.
    """
    from ray._private import state

    prefix = f"SERVE_REPLICA::ragserve#{deployment}#"
    return sorted(
        int(actor["Pid"])
        for actor in state.actors().values()
        if actor["State"] == "ALIVE" and str(actor["Name"]).startswith(prefix) and actor["Pid"]
    )


def running_replicas(deployment: str) -> int:
    from ray import serve

    status = serve.status().applications["ragserve"].deployments[deployment]
    return int(status.replica_states.get("RUNNING", 0))


async def run(base: str, args: argparse.Namespace) -> dict[str, Any]:
    client = RawClient(base, timeout_s=30)
    outcomes: list[tuple[float, str, str]] = []  # (sent at, outcome, replica)
    rng = random.Random(7)
    started = time.perf_counter()
    killed: dict[str, Any] = {}

    async def one(n: int) -> None:
        sent = time.perf_counter() - started
        try:
            status, headers = await client.post(n)
            outcome, replica = str(status), headers.get("x-ragserve-replica", "")
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            outcome, replica = type(exc).__name__, ""
        outcomes.append((sent, outcome, replica))

    async def kill_and_watch() -> None:
        await asyncio.sleep(args.kill_at)
        before = {replica for _, outcome, replica in outcomes if outcome == "200"}
        pids = replica_pids(args.kill)
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        at = time.perf_counter() - started
        killed.update(pid=victim, at_s=round(at, 3), replicas_before=len(pids))
        logger.info("killed %s replica pid %d at %.1fs", args.kill, victim, at)
        deadline = at + args.seconds
        while time.perf_counter() - started < deadline:
            await asyncio.sleep(0.25)
            replicas = await asyncio.to_thread(running_replicas, args.kill)
            replacement = set(replica_pids(args.kill)) - set(pids)
            new = {
                replica
                for sent, outcome, replica in outcomes
                if outcome == "200" and sent > at and replica not in before
            }
            # Serve reports RUNNING for a moment after the kill, before it notices:
            # recovered means a replacement process exists, runs and (Ingress) answers.
            if replacement and replicas >= len(pids) and (new or args.kill != "Ingress"):
                killed["recovery_s"] = round(time.perf_counter() - started - at, 2)
                killed["new_replica_answered"] = bool(new)
                return

    watcher = asyncio.create_task(kill_and_watch())
    tasks: set[asyncio.Task[None]] = set()
    next_at, n = started, 0
    while next_at < started + args.seconds:
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        next_at += rng.expovariate(args.rate)
    await asyncio.gather(*tasks)
    await watcher
    client.close()
    return summarize(outcomes, killed)


def summarize(outcomes: list[tuple[float, str, str]], killed: dict[str, Any]) -> dict[str, Any]:
    at = killed.get("at_s", 0.0)
    failures = [(round(sent - at, 3), outcome) for sent, outcome, _ in outcomes if outcome != "200"]
    ok = sum(1 for _, outcome, _ in outcomes if outcome == "200")
    return {
        "sent": len(outcomes),
        "ok": ok,
        "errors": len(failures),
        "error_rate_pct": round(100 * len(failures) / max(1, len(outcomes)), 3),
        "errors_s_after_kill": failures,
        "replicas_answering": len({replica for _, o, replica in outcomes if o == "200"}),
        "kill": killed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--topology", choices=["single", "split"], default="single")
    parser.add_argument("--kill", default=None, help="deployment [Ingress; split: Retriever]")
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s (open loop)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kill-at", type=float, default=15.0)
    parser.add_argument("--output", default=None, help="results/<name>.json")
    parser.add_argument("--to", type=Path, help="write the JSON here instead (tests)")
    args = parser.parse_args()
    args.kill = args.kill or ("Ingress" if args.topology == "single" else "Retriever")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import ray
    from ray import serve

    data_dir = tiny_index()
    try:
        base = deploy_ray(data_dir, "docs", free_port(), 2, args.topology)
        asyncio.run(_warm(base))
        result = asyncio.run(run(base, args))
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    logger.info("result: %s", result)
    recovery = result["kill"].get("recovery_s")
    payload = {
        "machine": machine(),
        "path": f"ragserve on Ray Serve, {args.topology} layout, 2 replicas per deployment",
        "index": "tiny index from tests/support/index.py (a copy per replica)",
        "llm": "extractive",
        "load": {"rate_rps": args.rate, "seconds": args.seconds, "arrivals": "Poisson"},
        "killed_deployment": args.kill,
        **result,
        "passed": {
            "error_rate_at_most_0.1pct": result["error_rate_pct"] <= 0.1,
            "recovered_within_15s": recovery is not None and recovery <= 15.0,
        },
    }
    if args.to:
        args.to.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(args.to)
    else:
        print(
            write_result(
                args.output or f"replica-kill-{args.topology}-{args.kill.lower()}", payload
            )
        )


async def _warm(base: str) -> None:
    client = RawClient(base, timeout_s=60)
    for n in range(20):
        await client.post(n)
    client.close()


if __name__ == "__main__":
    main()
