"""Where the deploys find the checkout's Jinja templates, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def template(name: str) -> str:
    return str(TEMPLATES / name)
