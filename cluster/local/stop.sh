#!/usr/bin/env bash
# Stop the local cluster that cluster/local/start.sh started on --port (default 6390).
# Unlike `ray stop`, this leaves every other Ray on the machine running.
set -euo pipefail
PORT=${RECSYS_RAY_PORT:-6390}
[[ "${1:-}" == "--port" ]] && PORT=$2
STATE=${RECSYS_CLUSTER_DIR:-/tmp/recsys-cluster-$PORT}
# Ray puts unix sockets under its temp dir: keep that path short (AF_UNIX paths are <= 107 bytes).
RAY_TMP=/tmp/rsr-$PORT
# Processes of this cluster name its GCS port or its temp dirs ($RAY_TMP, $RAY_TMP-wN) on their command line.
pids=$(pgrep -f -- "(127\.0\.0\.1:$PORT( |$|/)|gcs_server_port=$PORT|$RAY_TMP(-w[0-9]+)?( |$|/))" || true)
if [[ -z "$pids" ]]; then echo "no cluster on port $PORT"; exit 0; fi
# Their children too: the raylet's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) rename themselves
# and name neither, and outlive a killed raylet.
descendants() { local c; for c in $(pgrep -P "$1" || true); do echo "$c"; descendants "$c"; done; }
for p in $pids; do pids="$pids $(descendants "$p")"; done
pids=$(echo $pids | tr ' ' '\n' | sort -u | tr '\n' ' ')
kill $pids 2>/dev/null || true
for _ in $(seq 1 20); do
  alive=$(ps -o pid= -p $(echo $pids | tr ' ' ',') 2>/dev/null || true)
  [[ -z "$alive" ]] && break
  sleep 0.5
done
[[ -n "${alive:-}" ]] && kill -9 $alive 2>/dev/null || true
rm -f "$STATE/cluster.info"
echo "stopped cluster on port $PORT"
