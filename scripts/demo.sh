#!/usr/bin/env bash
# The main job: bring up kubelite on this machine and run the demo on it.
# (Today: a single-node control plane on SQLite; provisioning grows this into a full cluster.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
DATA_DIR="${KUBELITE_DATA_DIR:-/var/lib/kubelite/server}"
PORT="${KUBELITE_PORT:-6443}"
export KUBECONFIG="$DATA_DIR/kubeconfig.yaml"
mkdir -p "$DATA_DIR"
if ! curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
    nohup kubelite server --data-dir "$DATA_DIR" --port "$PORT" >"$DATA_DIR/server.log" 2>&1 &
    echo $! >"$DATA_DIR/server.pid"
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
kubelite apply -f examples/
kubelite get all -A
kubelite get configmaps,services -n default
echo
echo "kubelite is running (pid $(cat "$DATA_DIR/server.pid" 2>/dev/null || echo '?'), log $DATA_DIR/server.log)."
echo "Use it with: export KUBECONFIG=$KUBECONFIG; .venv/bin/kubelite get pods -A  (or kubectl)"
echo "Stop it with: kill \$(cat $DATA_DIR/server.pid)"
