#!/usr/bin/env bash
# Serve on a two-node Ray cluster made of two `ray start` processes on this
# machine: the same `ragserve serve` command as on a laptop, with RAY_ADDRESS
# pointing at the head, two replicas (each with a private copy of the embedded
# index) and at most one replica per node. Prints the replica actors with their
# node ids, then which replica and node answered each of $REQUESTS /search
# requests (the x-ragserve-replica / x-ragserve-node response headers), and a
# last line of JSON; exits 1 unless both nodes hold a replica and both answered.
#
# Usage: scripts/two_node_serve.sh [DATA_DIR]
#   DATA_DIR holds an index (default .ragserve/two-node); without one the
#   sample corpus is ingested into it first, on the cluster.
# Environment: RAY_HEAD_PORT (6391), RAY_CLIENT_PORT (10391), SERVE_PORT (8391),
#   REQUESTS (24), RAY_TMP_DIR (a fresh mktemp -d), READY_TIMEOUT_S (240).
#
# Both "nodes" share this machine's disk, so the replicas copy one index
# directory. On real machines give every node the index at the same path, or
# serve from a Qdrant server (--qdrant-url) every replica shares.
#
# Cleanup stops only this demo's processes: the server it started, and the Ray
# processes found by the demo's temp dir (`ray stop` would kill every Ray here).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
DATA_DIR=${1:-.ragserve/two-node}
PORT=${RAY_HEAD_PORT:-6391}
CLIENT_PORT=${RAY_CLIENT_PORT:-10391}
HTTP_PORT=${SERVE_PORT:-8391}
REQUESTS=${REQUESTS:-24}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-240}
export RAY_AUTH_MODE=token
"$BIN/ray" get-auth-token --generate >/dev/null 2>&1 || true
RAY_TMP=${RAY_TMP_DIR:-$(mktemp -d -t ragserve-two-serve-XXXX)}
mkdir -p "$RAY_TMP"
SERVER_PID=
CORPUS=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  pkill -f "$RAY_TMP" >/dev/null 2>&1 || true
  sleep 2
  if [ -n "$SERVER_PID" ]; then kill -9 "$SERVER_PID" 2>/dev/null || true; fi
  pkill -9 -f "$RAY_TMP" >/dev/null 2>&1 || true
  if [ -n "$CORPUS" ]; then rm -rf "$CORPUS"; fi
}
trap cleanup EXIT

"$BIN/ray" start --head --port="$PORT" --ray-client-server-port="$CLIENT_PORT" --num-cpus=1 \
  --temp-dir="$RAY_TMP" --include-dashboard=false --disable-usage-stats >/dev/null
"$BIN/ray" start --address="127.0.0.1:$PORT" --num-cpus=1 --disable-usage-stats >/dev/null
export RAY_ADDRESS="127.0.0.1:$PORT"

if ! ls "$DATA_DIR"/collections/docs >/dev/null 2>&1; then
  CORPUS=$(mktemp -d)
  tar -xzf examples/ray-serve-docs-2023.tar.gz -C "$CORPUS"
  "$BIN/ragserve" ingest "$CORPUS" --data-dir "$DATA_DIR" --recreate \
    --base-url https://docs.ray.io/en/master/ --json >/dev/null
fi

# One replica per node: without it Serve's spread is a preference, not a rule.
RAGSERVE_SERVE__MAX_REPLICAS_PER_NODE=1 "$BIN/ragserve" serve --replicas 2 --llm extractive \
  --host 127.0.0.1 --port "$HTTP_PORT" --data-dir "$DATA_DIR" >"$RAY_TMP/serve.log" 2>&1 &
SERVER_PID=$!

"$BIN/python" - "$HTTP_PORT" "$REQUESTS" "$READY_TIMEOUT_S" "$SERVER_PID" <<'PY'
import json
import os
import sys
import time

import httpx
import ray
from ray._private.state import actors as gcs_actors

port, requests, timeout_s, server_pid = (int(arg) for arg in sys.argv[1:5])
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + timeout_s
while True:
    try:
        if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    try:
        os.kill(server_pid, 0)
    except OSError:
        sys.exit("ragserve serve exited before it was ready; see serve.log in the Ray temp dir")
    if time.monotonic() > deadline:
        sys.exit(f"not ready after {timeout_s} s")
    time.sleep(1)

ray.init(log_to_driver=False)
nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
# The GCS's actor table (ray.util.state.list_actors needs the dashboard, off here).
replicas = [
    {"actor": a.get("Name"), "node": a["Address"]["NodeID"], "pid": a.get("Pid")}
    for a in gcs_actors().values()
    if a.get("State") == "ALIVE" and a.get("ActorClassName", "").startswith("ServeReplica:ragserve:")
]
print(f"cluster: {len(nodes)} nodes")
for replica in replicas:
    print(f"replica {replica['actor']} on node {replica['node']}")

answers = []
with httpx.Client(base_url=base, timeout=60) as client:
    for n in range(requests):
        # A fresh connection each time: the proxy picks a replica per request.
        response = client.post(
            "/search",
            json={"query": "How do I scale a deployment?", "k": 3},
            headers={"connection": "close"},
        )
        answers.append(
            {
                "status": response.status_code,
                "replica": response.headers.get("x-ragserve-replica"),
                "node": response.headers.get("x-ragserve-node"),
                "sources": len(response.json().get("sources", [])) if response.is_success else 0,
            }
        )
by_node: dict[str, int] = {}
for answer in answers:
    by_node[str(answer["node"])] = by_node.get(str(answer["node"]), 0) + 1
    print(f"answered {answer['status']} by {answer['replica']} on {answer['node']}")
summary = {
    "nodes": len(nodes),
    "replica_nodes": sorted({r["node"] for r in replicas}),
    "replicas": replicas,
    "requests": len(answers),
    "ok": sum(1 for a in answers if a["status"] == 200 and a["sources"] > 0),
    "answered_by_node": by_node,
    "answered_by_replica": sorted({str(a["replica"]) for a in answers}),
}
print(json.dumps(summary))
spread = len(summary["replica_nodes"]) == 2 and len(by_node) == 2
sys.exit(0 if spread and summary["ok"] == len(answers) else 1)
PY
