"""NodeAffinity: ``spec.nodeSelector`` and required node affinity must match the node (Filter);
preferred node affinity terms add their weights (Score).

Required affinity is OR over ``nodeSelectorTerms``, AND within a term over ``matchExpressions``
(against labels) and ``matchFields`` (only ``metadata.name``, which is how DaemonSet pods pin
themselves to one node). A term with no requirements matches nothing, as upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubelite.scheduler.framework import MAX_NODE_SCORE, CycleState, FilterPlugin, ScorePlugin, Status
from kubelite.scheduler.snapshot import NodeInfo, PodInfo

__all__ = ["NodeAffinity", "NodeSelectorTerm", "match_requirement", "parse_term"]

_STATE_KEY = "NodeAffinity/required"
REASON = "node(s) didn't match Pod's node affinity/selector"


# (key, operator, values)
Requirement = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    expressions: tuple[Requirement, ...]
    fields: tuple[Requirement, ...]

    def matches(self, node: NodeInfo) -> bool:
        if not self.expressions and not self.fields:
            return False
        labels = node.labels
        for key, op, values in self.expressions:
            if not match_requirement(labels.get(key), op, values):
                return False
        for key, op, values in self.fields:
            value = node.name if key == "metadata.name" else None
            if not match_requirement(value, op, values):
                return False
        return True


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def match_requirement(value: str | None, op: str, values: Sequence[str]) -> bool:
    """One NodeSelectorRequirement against a label (or field) value; None when absent."""
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        have, want = _int(value), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False  # unknown operators match nothing (validation rejects them)


def _requirements(raw: Any) -> tuple[Requirement, ...]:
    return tuple(
        (str(r.get("key") or ""), str(r.get("operator") or ""), tuple(str(v) for v in r.get("values") or ()))
        for r in raw or []
    )


def parse_term(term: dict[str, Any]) -> NodeSelectorTerm:
    return NodeSelectorTerm(
        _requirements(term.get("matchExpressions")), _requirements(term.get("matchFields"))
    )


@dataclass(frozen=True, slots=True)
class _Required:
    selector: tuple[tuple[str, str], ...]  # nodeSelector pairs, all must match
    terms: tuple[NodeSelectorTerm, ...] | None  # None: no required affinity

    def matches(self, node: NodeInfo) -> bool:
        labels = node.labels
        for k, v in self.selector:
            if labels.get(k) != v:
                return False
        return self.terms is None or any(t.matches(node) for t in self.terms)


def _node_affinity(pod: PodInfo) -> dict[str, Any]:
    aff = (pod.pod.get("spec") or {}).get("affinity") or {}
    return aff.get("nodeAffinity") or {}


class NodeAffinity(FilterPlugin, ScorePlugin):
    name = "NodeAffinity"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status | None:
        selector = (pod.pod.get("spec") or {}).get("nodeSelector") or {}
        required = _node_affinity(pod).get("requiredDuringSchedulingIgnoredDuringExecution")
        if not selector and required is None:
            return Status.skip()
        terms = None
        if required is not None:
            terms = tuple(parse_term(t) for t in required.get("nodeSelectorTerms") or [])
        state[_STATE_KEY] = _Required(tuple((str(k), str(v)) for k, v in selector.items()), terms)
        return None

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status | None:
        req: _Required = state[_STATE_KEY]
        return None if req.matches(node) else Status.unschedulable(REASON, plugin=self.name)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status | None:
        preferred = _node_affinity(pod).get("preferredDuringSchedulingIgnoredDuringExecution") or []
        terms = [(int(p.get("weight") or 0), parse_term(p.get("preference") or {})) for p in preferred]
        terms = [(w, t) for w, t in terms if w]
        if not terms:
            return Status.skip()
        state["NodeAffinity/preferred"] = terms
        return None

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        terms: list[tuple[int, NodeSelectorTerm]] = state["NodeAffinity/preferred"]
        return sum(w for w, t in terms if t.matches(node))

    def normalize_score(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        best = max(scores, default=0)
        for i, s in enumerate(scores):
            scores[i] = 0 if best == 0 else MAX_NODE_SCORE * s // best
