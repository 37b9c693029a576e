"""What provisioning asks the cluster's API: is the server up, are the nodes Ready, drain a node."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

from kubelite.auth.bootstrap import node_password_secret_name
from kubelite.client import ApiClient, ApiError, load_kubeconfig
from kubelite.controllers.base import LEASES, NODES, PODS, SECRETS
from kubelite.provision.errors import ProvisionError

NODE_LEASE_NAMESPACE = "kube-node-lease"

__all__ = ["NotReadyError", "delete_node", "drain", "list_nodes", "node_ready", "wait_api", "wait_ready"]


class NotReadyError(ProvisionError):
    def __init__(self, missing: list[str], timeout: float) -> None:
        super().__init__(f"nodes not Ready (with a live agent) within {timeout:.0f} s: {', '.join(missing)}")
        self.missing = missing


def wait_api(url: str, timeout: float, context: ssl.SSLContext | None = None) -> None:
    """Until ``url``/readyz answers 200 (the server may be restarting after a deploy); an https
    server must present a certificate ``context`` trusts."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    raise ProvisionError(f"API server {url} not ready within {timeout:.0f} s ({last})")


def node_ready(node: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions") or []
    )


async def list_nodes(kubeconfig: Path) -> list[dict[str, Any]]:
    async with ApiClient(load_kubeconfig(str(kubeconfig)), timeout=10) as client:
        items: list[dict[str, Any]] = (await client.list(NODES)).get("items") or []
        return items


async def wait_ready(kubeconfig: Path, names: list[str], timeout: float) -> None:
    """Until every node in ``names`` is Ready *and* its agent is alive now.

    A Ready condition outlives its agent by the node monitor's grace period, so an agent that
    crashed after a restart would still look Ready: each node's Lease must also be seen renewed
    while we watch (the agent renews it every couple of seconds).
    """
    deadline = time.monotonic() + timeout
    missing: list[str] = list(names)
    first_renew: dict[str, str] = {}
    live: set[str] = set()
    async with ApiClient(load_kubeconfig(str(kubeconfig)), timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                ready = {n["metadata"]["name"] for n in (await client.list(NODES)).get("items") or [] if node_ready(n)}
                for lease in (await client.list(LEASES, NODE_LEASE_NAMESPACE)).get("items") or []:
                    name, renew = lease["metadata"]["name"], str(lease.get("spec", {}).get("renewTime", ""))
                    if first_renew.setdefault(name, renew) != renew:
                        live.add(name)
                missing = [n for n in names if n not in ready or n not in live]
                if not missing:
                    return
            except (OSError, ApiError):
                pass
            await asyncio.sleep(0.5)
    raise NotReadyError(missing, timeout)


def _owned_by_daemonset(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in pod["metadata"].get("ownerReferences") or [])


async def drain(kubeconfig: Path, node: str, timeout: float) -> int:
    """Cordon ``node`` and delete its pods (DaemonSet pods stay, as with ``kubectl drain
    --ignore-daemonsets``); returns how many were evicted once they are gone."""
    async with ApiClient(load_kubeconfig(str(kubeconfig)), timeout=10) as client:
        try:
            await client.patch(NODES, node, {"spec": {"unschedulable": True}})
        except ApiError as e:
            if e.code == 404:
                return 0
            raise
        pods = [p for p in (await client.list(PODS)).get("items") or []
                if p.get("spec", {}).get("nodeName") == node and not _owned_by_daemonset(p)]  # fmt: skip
        for p in pods:
            try:
                await client.delete(PODS, p["metadata"]["name"], p["metadata"]["namespace"])
            except ApiError as e:
                if e.code != 404:
                    raise
        deadline = time.monotonic() + timeout
        wanted = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        while wanted and time.monotonic() < deadline:
            now = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in (await client.list(PODS)).get("items") or []
                   if p.get("spec", {}).get("nodeName") == node}  # fmt: skip
            wanted &= now
            if wanted:
                await asyncio.sleep(0.5)
        if wanted:
            raise ProvisionError(f"drain {node}: pods still there after {timeout:.0f} s: "
                                 + ", ".join(f"{ns}/{n}" for ns, n in sorted(wanted)))  # fmt: skip
        return len(pods)


async def delete_node(kubeconfig: Path, node: str) -> None:
    """Delete the Node and its node-password Secret: a new machine may join under the name at once
    (the garbage collector would delete the Secret too, a moment later)."""
    async with ApiClient(load_kubeconfig(str(kubeconfig)), timeout=10) as client:
        for rt, name, namespace in (
            (NODES, node, None),
            (SECRETS, node_password_secret_name(node), "kube-system"),
        ):
            try:
                await client.delete(rt, name, namespace)
            except ApiError as e:
                if e.code != 404:
                    raise
