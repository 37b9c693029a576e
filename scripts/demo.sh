#!/usr/bin/env bash
# The main job: provision the embedded default cluster (1 master + 2 workers as systemd-nspawn
# machines on this machine, installed with pyinfra) and run the demo on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

kubelite cluster up examples/clusters/local.yaml
KUBECONFIG="$(kubelite cluster kubeconfig local --path)"
export KUBECONFIG

# The demo: a Deployment behind a Service with a ConfigMap, a DaemonSet, a StatefulSet with volumes.
kubelite apply -f examples/web.yaml -f examples/daemonset.yaml -f examples/statefulset.yaml
for _ in $(seq 120); do
    kubelite get pods -o json | .venv/bin/python -c '
import json, sys
pods = json.load(sys.stdin)["items"]
ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]
sys.exit(0 if pods and len(ready) == len(pods) else 1)' && break
    sleep 1
done
kubelite get nodes -o wide
kubelite get pods -o wide
kubelite get deployments,daemonsets,statefulsets,services,configmaps
echo
echo "The cluster keeps running. Use it with: export KUBECONFIG=$KUBECONFIG (kubelite or kubectl);"
echo "status: kubelite cluster status local; tear it down: kubelite cluster down local"
