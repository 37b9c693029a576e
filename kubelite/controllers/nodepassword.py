"""Node passwords go with their Node: deleting a Node frees its name for a new machine.

At a node's first bootstrap the API server stores its password's hash in the Secret
``kube-system/<node>.node-password.kubelite`` (``auth/bootstrap.py``); a later bootstrap under that
name with another password is refused. k3s deletes that Secret when the Node is deleted; here the
Secret is made a dependent of its Node (an ownerReference to the Node's UID, written once the Node
is registered), so the garbage collector deletes it with the Node, whoever deletes the Node
(``kubectl delete node``, ``kubelite cluster remove-node``). A Secret whose Node has not registered
yet is left alone: the bootstrap stores it just before the agent creates its Node.

Keyed by node name; reads only the informers' caches and writes one merge patch per Node.
"""

from __future__ import annotations

import logging
from typing import Any

from kubelite.auth.bootstrap import NODE_PASSWORD_SECRET_TYPE, NODE_PASSWORD_SUFFIX
from kubelite.client import ApiError
from kubelite.controllers.base import NODES, SECRETS, Controller

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NAMESPACE = "kube-system"


def _node_of(secret: Obj) -> list[str]:
    """The node a node-password Secret belongs to, as a work key."""
    m = secret.get("metadata") or {}
    name = str(m.get("name") or "")
    if m.get("namespace") != NAMESPACE or secret.get("type") != NODE_PASSWORD_SECRET_TYPE:
        return []
    return [name.removesuffix(NODE_PASSWORD_SUFFIX)] if name.endswith(NODE_PASSWORD_SUFFIX) else []


def owner_reference(node: Obj) -> Obj:
    m = node["metadata"]
    return {"apiVersion": "v1", "kind": "Node", "name": m["name"], "uid": m["uid"]}


class NodePasswordController(Controller):
    name = "nodepassword"
    primary = NODES

    def setup(self) -> None:
        self.nodes = self.watch_primary()
        self.secrets = self.watch_mapped(SECRETS, _node_of)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(None, key)
        if node is None or (node.get("metadata") or {}).get("deletionTimestamp"):
            return  # gone or going: the garbage collector deletes an owned Secret
        secret = self.secrets.get(NAMESPACE, key + NODE_PASSWORD_SUFFIX)
        if secret is None or secret.get("type") != NODE_PASSWORD_SECRET_TYPE:
            return
        want = [owner_reference(node)]
        if (secret.get("metadata") or {}).get("ownerReferences") == want:
            return
        # A reference to an earlier Node of that name is replaced, not added to: this Node owns it now.
        # The cached resourceVersion makes it a compare-and-swap: a concurrent change gives 409 and a retry.
        patch = {
            "metadata": {"ownerReferences": want, "resourceVersion": secret["metadata"]["resourceVersion"]}
        }
        try:
            await self.client.patch(SECRETS, secret["metadata"]["name"], patch, namespace=NAMESPACE,
                                    patch_type="merge")  # fmt: skip
        except ApiError as e:
            if e.code == 404:
                return  # deleted meanwhile (the Node went and came back): the next bootstrap stores a new one
            raise
        log.info("node-password Secret of %s now owned by its Node (uid %s)", key, node["metadata"]["uid"])
