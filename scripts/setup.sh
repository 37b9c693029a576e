#!/usr/bin/env bash
# Installs what kubelite and its tests need on a fresh Debian machine (as root): apt packages, then .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Debian packages: the runtimes, stores and tools the node agent, the tests and the benches drive for real.
APT_PACKAGES=(
    python3 python3-venv curl ca-certificates git
    iproute2 iptables kmod procps       # pod sandboxes, bridges, routes, service rules
    runc busybox-static                 # the default container runtime and the built-in test image
    docker.io                           # the Docker runtime and the Swarm peer in the benches
    etcd-server etcd-client             # the etcd datastore and its HA tests
    docker-registry                     # the cluster's image registry (OCI distribution API)
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import kubelite, aiohttp, kubernetes' >/dev/null
