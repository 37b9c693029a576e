"""Jinja templates of the checkout's ``templates/`` directory (units, config files, kubeconfig, nspawn files)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["checkout_dir", "render", "template_path"]


def checkout_dir() -> Path:
    """The checkout holding ``deploy/``, ``templates/`` and ``inventory/`` next to the kubelite package."""
    return Path(__file__).resolve().parents[2]


def template_path(name: str) -> Path:
    return checkout_dir() / "templates" / name


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(checkout_dir() / "templates")),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, never an empty string
        keep_trailing_newline=True,
    )


def render(name: str, **context: Any) -> str:
    return _env().get_template(name).render(**context)
