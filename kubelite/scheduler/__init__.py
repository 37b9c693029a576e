"""The scheduler: a plugin framework (``framework``, ``plugins``) over an informer-fed in-memory
``snapshot``, driven by ``scheduler.Scheduler`` (the "scheduler" component of the controller manager)."""

from kubelite.scheduler.framework import CycleState, FitError, Framework, ScheduleResult, Status
from kubelite.scheduler.plugins import default_framework
from kubelite.scheduler.snapshot import NodeInfo, PodInfo, Snapshot, pod_info

__all__ = [
    "CycleState",
    "FitError",
    "Framework",
    "NodeInfo",
    "PodInfo",
    "ScheduleResult",
    "Snapshot",
    "Status",
    "default_framework",
    "pod_info",
]
