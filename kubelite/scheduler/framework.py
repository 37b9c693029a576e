"""The scheduling framework: a pod goes through PreFilter -> Filter -> PreScore -> Score -> NormalizeScore.

As in kube-scheduler's framework, plugins are small and each does one thing:

* ``pre_filter(state, pod)`` runs once per pod and may stash parsed data in the ``CycleState``;
  returning ``Status.skip()`` means "this pod has nothing for my Filter to check" (no host ports,
  no node selector), so the framework leaves that Filter out for this pod;
* ``filter(state, pod, node)`` returns ``None`` when the node fits, or an Unschedulable ``Status``
  whose reasons end up in the "0/3 nodes are available: ..." message;
* ``pre_score`` / ``score`` / ``normalize_score`` rank the feasible nodes: raw scores are mapped to
  0..100 and summed with the plugin's weight; the best total wins, ties broken at random.

``None`` is success everywhere (Go's nil ``*Status``): the hot path allocates nothing. Like
kube-scheduler's ``percentageOfNodesToScore``, large clusters only look for a share of feasible
nodes per pod, starting where the previous pod stopped, which keeps placement spread and per-pod
cost bounded.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kubelite.scheduler.snapshot import NodeInfo, PodInfo, Snapshot

__all__ = [
    "MAX_NODE_SCORE",
    "Code",
    "CycleState",
    "FilterPlugin",
    "FitError",
    "Framework",
    "Plugin",
    "PreFilterPlugin",
    "ScheduleResult",
    "ScorePlugin",
    "Status",
    "num_feasible_nodes_to_find",
]

MAX_NODE_SCORE = 100
# kube-scheduler's defaults: always consider at least 100 nodes; above that an adaptive share.
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5


class Code(enum.Enum):
    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"
    # No node can ever fit, whatever else changes (e.g. a pod asking for an unknown scheduler feature).
    UNRESOLVABLE = "UnschedulableAndUnresolvable"
    SKIP = "Skip"
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class Status:
    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @classmethod
    def unschedulable(cls, *reasons: str, plugin: str = "") -> Status:
        return cls(Code.UNSCHEDULABLE, reasons, plugin)

    @classmethod
    def skip(cls) -> Status:
        return _SKIP

    @property
    def is_skip(self) -> bool:
        return self.code is Code.SKIP

    def message(self) -> str:
        return ", ".join(self.reasons)


_SKIP = Status(Code.SKIP)


class CycleState(dict[str, Any]):
    """Per-pod scratch space shared by a pod's PreFilter, Filter and Score calls."""


class Plugin:
    name: ClassVar[str]


class PreFilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        return None


class FilterPlugin(PreFilterPlugin):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        raise NotImplementedError


class ScorePlugin(Plugin):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        raise NotImplementedError

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Map raw scores onto 0..MAX_NODE_SCORE in place (default: they already are)."""


@dataclass
class FitError:
    """No node fits: how many were looked at and why each was rejected."""

    num_nodes: int
    reasons: Counter[str] = field(default_factory=Counter)
    unresolvable: bool = False

    def message(self) -> str:
        if self.num_nodes == 0:
            return "no nodes available to schedule pods"
        # kube-scheduler sorts "<count> <reason>" strings, so the same situation reads the same way.
        parts = sorted(f"{n} {reason}" for reason, n in self.reasons.items())
        return f"0/{self.num_nodes} nodes are available: {', '.join(parts)}."


@dataclass
class ScheduleResult:
    node: str | None
    error: FitError | None = None
    feasible: int = 0
    evaluated: int = 0


def num_feasible_nodes_to_find(num_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes to find before scoring (kube-scheduler's numFeasibleNodesToFind)."""
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_nodes
    if percentage <= 0:
        percentage = max(50 - num_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(num_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


class Framework:
    """Runs the plugins over a snapshot; one instance per scheduler, used for one pod at a time."""

    def __init__(
        self,
        filters: Sequence[FilterPlugin],
        scorers: Sequence[tuple[ScorePlugin, int]],
        percentage_of_nodes_to_score: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.percentage = percentage_of_nodes_to_score
        self.rng = rng or random.Random()
        self._next_start = 0

    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[list[FilterPlugin], Status | None]:
        """The filters that apply to this pod, or an Unschedulable status valid for every node."""
        active: list[FilterPlugin] = []
        for p in self.filters:
            st = p.pre_filter(state, pod)
            if st is None:
                active.append(p)
            elif not st.is_skip:
                return [], st
        return active, None

    def run_filters(
        self, state: CycleState, pod: PodInfo, node: NodeInfo, filters: Sequence[FilterPlugin] | None = None
    ) -> Status | None:
        for p in self.filters if filters is None else filters:
            st = p.filter(state, pod, node)
            if st is not None:
                return st
        return None

    def schedule(self, pod: PodInfo, snapshot: Snapshot) -> ScheduleResult:
        nodes = snapshot.node_list()
        n = len(nodes)
        if n == 0:
            return ScheduleResult(None, FitError(0))
        state = CycleState()
        filters, pre_status = self.run_pre_filter(state, pod)
        if pre_status is not None:
            err = FitError(n, Counter({r: n for r in pre_status.reasons}))
            err.unresolvable = pre_status.code is Code.UNRESOLVABLE
            return ScheduleResult(None, err)

        want = num_feasible_nodes_to_find(n, self.percentage)
        feasible: list[NodeInfo] = []
        reasons: Counter[str] = Counter()
        start = self._next_start % n
        processed = 0
        for i in range(n):
            node = nodes[(start + i) % n]
            processed += 1
            for p in filters:
                st = p.filter(state, pod, node)
                if st is not None:
                    reasons.update(st.reasons)
                    break
            else:
                feasible.append(node)
                if len(feasible) >= want:
                    break
        self._next_start = (start + processed) % n
        if not feasible:
            return ScheduleResult(None, FitError(n, reasons), 0, processed)
        if len(feasible) == 1:
            return ScheduleResult(feasible[0].name, None, 1, processed)
        totals = self.prioritize(state, pod, feasible)
        return ScheduleResult(self._select(feasible, totals), None, len(feasible), processed)

    def prioritize(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """Weighted sum of every score plugin's normalised score, per node (same order as ``nodes``)."""
        totals = [0] * len(nodes)
        for plugin, weight in self.scorers:
            st = plugin.pre_score(state, pod, nodes)
            if st is not None:
                if st.is_skip:
                    continue
                raise RuntimeError(f"{plugin.name} pre_score failed: {st.message()}")
            score = plugin.score
            scores = [score(state, pod, node) for node in nodes]
            plugin.normalize_score(state, pod, scores)
            for i, s in enumerate(scores):
                totals[i] += s * weight
        return totals

    def _select(self, nodes: Sequence[NodeInfo], totals: list[int]) -> str:
        # Reservoir sampling among the top scores, so equal nodes share the load.
        best, best_i, ties = -1, 0, 0
        for i, t in enumerate(totals):
            if t > best:
                best, best_i, ties = t, i, 1
            elif t == best:
                ties += 1
                if self.rng.randrange(ties) == 0:
                    best_i = i
        return nodes[best_i].name
