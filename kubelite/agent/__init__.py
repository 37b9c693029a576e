"""The node agent (kubelet's role): Node registration and heartbeat, pod sync, runtime backends.

Modules: ``runtime`` (the CRI-like seam every backend implements), ``runtimes`` (backends by
name), ``node`` (Node object, Lease, fencing), ``pods`` (pod sync and status), ``agent`` (one
``Agent``, and ``HollowNodes`` for many fake nodes in one process).
"""

from kubelite.agent.agent import Agent, HollowNodes
from kubelite.agent.node import NodeConfig, parse_labels, parse_taints
from kubelite.agent.runtime import Runtime, RuntimeOptions
from kubelite.agent.runtimes import UnknownRuntimeError, create_runtime

__all__ = [
    "Agent",
    "HollowNodes",
    "NodeConfig",
    "Runtime",
    "RuntimeOptions",
    "UnknownRuntimeError",
    "create_runtime",
    "parse_labels",
    "parse_taints",
]
