#!/usr/bin/env bash
# Ingest the sample corpus on a two-node Ray cluster made of two `ray start`
# processes on this machine: the same `ragserve ingest` command as on a laptop,
# with RAY_ADDRESS pointing at the head. Prints the cluster size and the ingest
# summary. Usage: scripts/two_node_ingest.sh [DATA_DIR]
#
# Cleanup stops only this demo's Ray processes (found by their temp dir):
# `ray stop` would also kill every other Ray on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.venv/bin
DATA_DIR=${1:-.ragserve/two-node}
PORT=${RAY_HEAD_PORT:-6390}
# Ray 2.5x enables token auth: every process of the demo uses the same local token.
export RAY_AUTH_MODE=token
"$BIN/ray" get-auth-token --generate >/dev/null 2>&1 || true
CORPUS=$(mktemp -d)
RAY_TMP=$(mktemp -d -t ragserve-two-node-XXXX)
cleanup() {
  pkill -f "$RAY_TMP" >/dev/null 2>&1 || true
  sleep 2
  pkill -9 -f "$RAY_TMP" >/dev/null 2>&1 || true
  rm -rf "$CORPUS"
}
trap cleanup EXIT

tar -xzf examples/ray-serve-docs-2023.tar.gz -C "$CORPUS"
"$BIN/ray" start --head --port="$PORT" --num-cpus=1 --temp-dir="$RAY_TMP" \
  --include-dashboard=false --disable-usage-stats >/dev/null
"$BIN/ray" start --address="127.0.0.1:$PORT" --num-cpus=1 --disable-usage-stats >/dev/null
RAY_ADDRESS="127.0.0.1:$PORT" "$BIN/python" - <<'PY'
import ray
ray.init(log_to_driver=False)
nodes = [n for n in ray.nodes() if n["Alive"]]
print(f"cluster: {len(nodes)} nodes, {ray.cluster_resources().get('CPU')} CPUs")
PY
RAY_ADDRESS="127.0.0.1:$PORT" "$BIN/ragserve" ingest "$CORPUS" --data-dir "$DATA_DIR" --recreate \
  --base-url https://docs.ray.io/en/master/ --json
