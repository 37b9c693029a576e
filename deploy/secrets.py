"""Files that carry a secret to a node: rendered here, uploaded 0600 root:root, never shown.

pyinfra records every argument of an operation and prints them in its JSON plan, so a secret must
never be an argument (nor part of a shell command: ``ps`` and pyinfra's log would show it). The
template is rendered in this process and handed over as a StringIO, which pyinfra shows only as a
hash. The secrets themselves are read from the cluster's 0600 state files on the controlling machine.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import state
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from kubelite.provision.templates import render


def read_secret(path: str) -> str:
    return Path(path).read_text().strip()


def push_private(name: str, src: Path, dest: str) -> OperationMeta:
    """A local file holding key material as ``dest``, 0600 root:root (pyinfra shows only the path)."""
    state.config.DIFF = False  # `pyinfra --diff` would log the old and new content of the file
    return files.put(name=name, src=str(src), dest=dest, mode="600", user="root", group="root")


def private_file(name: str, template: str, dest: str, **context: Any) -> OperationMeta:
    """``template`` rendered with ``context`` (which may hold secrets) as ``dest``, mode 0600 root:root."""
    # `pyinfra --diff` logs the old and new content of every uploaded file: never for these.
    state.config.DIFF = False
    return files.put(
        name=name, src=StringIO(render(template, **context)), dest=dest, mode="600", user="root", group="root",
    )  # fmt: skip
