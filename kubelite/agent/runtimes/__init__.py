"""Runtime backends by name: ``--runtime NAME`` -> a :class:`~kubelite.agent.runtime.Runtime`.

A backend registers a factory here ("module:Class", imported on demand so a missing optional
dependency of one backend never breaks another). A known name without a factory is one that is
planned but not written yet: asking for it is an error, never a silent fallback to another.
"""

from __future__ import annotations

import importlib

from kubelite.agent.runtime import Runtime, RuntimeOptions

__all__ = ["RUNTIMES", "UnknownRuntimeError", "check_runtime", "create_runtime"]

# name -> "module:Class" (the class is called with a RuntimeOptions), or None when not available yet.
RUNTIMES: dict[str, str | None] = {
    "fake": "kubelite.agent.runtimes.fake:FakeRuntime",
    "runc": "kubelite.agent.runtimes.runc:RuncRuntime",
    "docker": "kubelite.agent.runtimes.docker:DockerRuntime",
}


class UnknownRuntimeError(ValueError):
    """The runtime name is unknown or not available; the message is the one line to print."""


def check_runtime(name: str) -> str:
    """The "module:Class" of runtime ``name``; UnknownRuntimeError if it is unknown or not available."""
    if name not in RUNTIMES:
        raise UnknownRuntimeError(f"unknown runtime {name!r} (expected one of: {', '.join(RUNTIMES)})")
    target = RUNTIMES[name]
    if target is None:
        raise UnknownRuntimeError(f"runtime {name!r} is not available yet")
    return target


def create_runtime(name: str, options: RuntimeOptions) -> Runtime:
    target = check_runtime(name)
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    runtime: Runtime = cls(options)
    return runtime
