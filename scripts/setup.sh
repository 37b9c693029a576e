#!/usr/bin/env bash
# Installs what kubelite and its tests need on a fresh Debian machine (as root): apt packages, then .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Debian packages: the runtimes, stores and tools the node agent, the tests and the benches drive for real.
APT_PACKAGES=(
    python3 python3-venv curl ca-certificates git
    iproute2 iptables kmod procps       # pod sandboxes, bridges, routes, service rules
    runc busybox-static openssl         # the default container runtime, the built-in test images (busybox, busybox-openssl)
    docker.io containerd                # the Docker runtime and the Swarm peer in the benches
    etcd-server etcd-client             # the etcd datastore and its HA tests
    docker-registry                     # the cluster's image registry (OCI distribution API)
    systemd-container mmdebstrap openssh-client  # nspawn machines, their image, SSH to them
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
    dnsmasq-base e2fsprogs              # libvirt VMs (the tests start libvirtd themselves)
    libvirt-dev pkg-config gcc          # to build libvirt-python
    vagrant vagrant-libvirt             # the vagrant provider (boxes are built locally)
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
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,provision,bench]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import kubelite, aiohttp, kubernetes' >/dev/null
scripts/fetch-kubectl.sh >/dev/null  # kubectl 1.20 for the kubectl compatibility tests
