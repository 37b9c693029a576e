#!/usr/bin/env bash
# Extracts Debian's kubectl (package kubernetes-client, 1.20) into .cache/kubectl/ for the kubectl
# compatibility tests, without installing it: the package conflicts with an /usr/bin/kubectl that
# many machines already have. Prints the path of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/kubectl
bin="$dest/kubectl-1.20"
if [ ! -x "$bin" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # apt-get download needs the package lists; refresh them only when the package is unknown.
    apt-cache show kubernetes-client >/dev/null 2>&1 || apt-get update -qq
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root kubernetes-client >/dev/null)
    dpkg -x "$work"/kubernetes-client_*.deb "$work/root"
    mkdir -p "$dest"
    install -m 0755 "$work/root/usr/bin/kubectl" "$bin"
fi
"$bin" version --client >/dev/null 2>&1 || { echo "fetch-kubectl: $bin does not run" >&2; exit 1; }
echo "$PWD/$bin"
