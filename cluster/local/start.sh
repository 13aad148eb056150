#!/usr/bin/env bash
# Start a multi-node Ray cluster on this machine: one head plus N worker nodes, each a separate
# raylet with its own CPUs and ports — what tests and demos use to exercise multi-node code paths.
#
#   cluster/local/start.sh [--workers N] [--head-cpus C] [--worker-cpus C] [--port P] [--dashboard-port D]
#
# Then: recsys submit doctor --config configs/doctor/tiny.yaml --address http://127.0.0.1:8265
# Stop it with cluster/local/stop.sh (same --port): only this cluster's processes are stopped.
set -euo pipefail

WORKERS=1; HEAD_CPUS=1; WORKER_CPUS=1
OBJ_MEM=${RECSYS_OBJECT_STORE_BYTES:-1000000000}  # per node; Ray would take 30% of RAM each
PORT=${RECSYS_RAY_PORT:-6390}; DASHBOARD_PORT=${RECSYS_DASHBOARD_PORT:-8265}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --head-cpus) HEAD_CPUS=$2; shift 2 ;;
    --worker-cpus) WORKER_CPUS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --dashboard-port) DASHBOARD_PORT=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# The job entrypoint runs `python -m jobs.<job>`: the cluster must see the project's virtualenv.
if [[ -x "$ROOT/.venv/bin/ray" ]]; then export PATH="$ROOT/.venv/bin:$PATH"; fi
command -v ray >/dev/null || { echo "ray not found: run 'make install' first" >&2; exit 1; }
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
# Ray >= 2.59 turns token auth on for a local head when ~/.ray/auth_token exists, but worker nodes and
# clients only send the token when RAY_AUTH_MODE=token. Make the choice explicit and the same for
# every node: loopback-only test clusters default to disabled; export RAY_AUTH_MODE=token (and use
# the same variable for `recsys submit`) to require the token.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
# Workers inherit this: Ray Train's placement-group cleaner queries the State API without an address,
# and autodetection fails when several Rays run on one machine (stopped Tune trials then keep their CPUs).
export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT
export RECSYS_DATA_ROOT=${RECSYS_DATA_ROOT:-$(cd "$ROOT/.." && pwd)/shared/data}
export RECSYS_RUNS_ROOT=${RECSYS_RUNS_ROOT:-$ROOT/runs}

STATE=${RECSYS_CLUSTER_DIR:-/tmp/recsys-cluster-$PORT}
# Ray puts unix sockets under its temp dir: keep that path short (AF_UNIX paths are <= 107 bytes).
RAY_TMP=/tmp/rsr-$PORT
mkdir -p "$STATE"
# Every node gets its own block of ports so several raylets (and other clusters) coexist.
node_ports() {  # $1 = node index (0 = head)
  # worker ports: a 1,000-port block in 20000-59999 (above Ray's default 10002-19999), by node and port
  local base=$((PORT + 100 + 20 * $1)) wbase=$((20000 + 1000 * (($1 + (PORT % 10) * 5) % 40)))
  echo "--node-manager-port=$base --object-manager-port=$((base + 1)) \
    --dashboard-agent-grpc-port=$((base + 2)) --dashboard-agent-listen-port=$((base + 3)) \
    --metrics-export-port=$((base + 4)) --runtime-env-agent-port=$((base + 5)) \
    --min-worker-port=$wbase --max-worker-port=$((wbase + 999))"
}

# shellcheck disable=SC2046
ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="$HEAD_CPUS" --num-gpus=0 \
  --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" --include-dashboard=true \
  --ray-client-server-port=$((PORT + 1)) --temp-dir="$RAY_TMP" --disable-usage-stats \
  --resources='{"recsys_head": 1}' --object-store-memory="$OBJ_MEM" $(node_ports 0) > "$STATE/head.log" 2>&1 \
  || { cat "$STATE/head.log" >&2; exit 1; }

for i in $(seq 1 "$WORKERS"); do
  # Each node gets its own temp dir, as separate machines would: nodes sharing one would share the
  # unpacked runtime_env working dir, and one node's agent can delete it under the other's job.
  # shellcheck disable=SC2046
  ray start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus="$WORKER_CPUS" --num-gpus=0 \
    --temp-dir="$RAY_TMP-w$i" \
    --resources="{\"recsys_worker_$i\": 1}" --disable-usage-stats --object-store-memory="$OBJ_MEM" $(node_ports "$i") > "$STATE/worker-$i.log" 2>&1 \
    || { cat "$STATE/worker-$i.log" >&2; exit 1; }
done

# Wait until every node has registered.
python - "$PORT" "$((WORKERS + 1))" <<'PY'
import sys, time, ray
port, want = sys.argv[1], int(sys.argv[2])
ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
deadline = time.time() + 60
while sum(n["Alive"] for n in ray.nodes()) < want:
    if time.time() > deadline:
        sys.exit(f"only {sum(n['Alive'] for n in ray.nodes())}/{want} nodes joined within 60 s")
    time.sleep(0.5)
print(f"cluster up: {want} nodes, resources {ray.cluster_resources()}")
PY
echo "$PORT $DASHBOARD_PORT $WORKERS" > "$STATE/cluster.info"
echo "dashboard / job submission address: http://127.0.0.1:$DASHBOARD_PORT"
echo "ray address: 127.0.0.1:$PORT   (stop: cluster/local/stop.sh --port $PORT)"
