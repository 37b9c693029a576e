"""The provisioning exception tree.

    ProvisionError            anything that stops a provisioning command; the message is one line to show
    ├── SpecError             the cluster spec is invalid; ``field`` names the offending key (dotted path)
    ├── ImageError            (image.py) the node image could not be built
    ├── ProviderError         a machine could not be created, started, listed or destroyed
    └── StepError             a deploy step failed on a machine; names the machine and the step
"""

from __future__ import annotations

__all__ = ["ProviderError", "ProvisionError", "SpecError", "StepError"]


class ProvisionError(Exception):
    """A provisioning failure whose message is already the line to show the user."""


class SpecError(ProvisionError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ProviderError(ProvisionError):
    pass


class StepError(ProvisionError):
    def __init__(self, step: str, machine: str, detail: str) -> None:
        super().__init__(f"step {step!r} failed on {machine}: {detail}")
        self.step = step
        self.machine = machine
