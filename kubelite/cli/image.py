"""``kubelite image build|import|push|list``: images for nodes without a registry on the internet.

Build a tiny image from this machine's binaries, import an archive into a node's store (the store
of the agent with that ``--data-dir``), push an archive to the cluster's registry, list a store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from kubelite.cli.common import fail

if TYPE_CHECKING:
    from kubelite.agent.images import ImageStore

app = typer.Typer(name="image", help="Build, import, push and list container images.", no_args_is_help=True)

T = TypeVar("T")

DataDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="KUBELITE_DATA_DIR",
        help="The agent's data dir; its image store is <data-dir>/images.",
    ),
]
DEFAULT_DATA_DIR = Path("/var/lib/kubelite/agent")


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; an image or file error becomes one ``error:`` line and exit code 1."""
    from kubelite.images.errors import ImageError

    try:
        return fn()
    except ImageError as e:
        fail(str(e))
    except FileNotFoundError as e:
        fail(f'the path "{e.filename}" does not exist')
    except OSError as e:
        fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))


def _store(data_dir: Path) -> ImageStore:
    from kubelite.agent.images import ImageStore  # imported late: keeps `kubelite --help` fast

    return ImageStore(data_dir / "images")


@app.command("build")
def build(
    name: Annotated[str, typer.Argument(help="What to build: busybox, busybox-openssl (busybox plus an openssl client for in-cluster HTTPS).")],
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="The image name (default: NAME:latest).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write an OCI layout tar here (default: NAME.tar).")
    ] = None,
    do_import: Annotated[bool, typer.Option("--import", help="Import into the store of --data-dir.")] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Build a tiny image from this machine's binaries (busybox: from the busybox-static package)."""
    from kubelite.images.build import build_image

    built = _guard(lambda: build_image(name, tag))
    if output is None and not do_import:
        output = Path(f"{name}.tar")
    if output is not None:
        _guard(lambda: built.write(output))
        typer.echo(f"{built.ref.familiar} {built.manifest.digest} -> {output}")
    if do_import:
        target = output
        if target is None:
            target = data_dir / "images" / "tmp" / f"build-{name}.tar"
            target.parent.mkdir(parents=True, exist_ok=True)
            _guard(lambda: built.write(target))
        try:
            refs = _guard(lambda: _store(data_dir).import_archive(target))
        finally:
            if output is None:
                target.unlink(missing_ok=True)
        for ref in refs:
            typer.echo(f"imported {ref.familiar} {built.manifest.digest}")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="OCI layout (tar or directory) or docker-save tarballs.")],
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Import image archives into the node's image store."""
    store = _guard(lambda: _store(data_dir))
    for f in files:
        refs = _guard(lambda f=f: store.import_archive(f))  # type: ignore[misc]
        for ref in refs:
            image = store.get(ref)
            typer.echo(f"imported {ref.familiar} {image.digest if image else ''}".rstrip())


@app.command("push")
def push(
    file: Annotated[Path, typer.Argument(help="An OCI layout or docker-save archive.")],
    registry: Annotated[str, typer.Option("--registry", help="The registry, host:port (plain HTTP).")],
) -> None:
    """Push the images of an archive to a registry (docker.io names go to <registry>/library/...)."""
    from kubelite.images.registry import push_archive

    pushed = _guard(lambda: asyncio.run(push_archive(file, registry)))
    for p in pushed:
        typer.echo(f"pushed {p.ref} {p.digest}")


@app.command("list")
def list_(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """List the images of the node's store."""
    images = _guard(lambda: _store(data_dir).list())
    rows = [("IMAGE", "TAG", "IMAGE ID", "DIGEST", "SIZE")]
    for img in images:
        name = replace(img.ref, tag=None, digest=None).familiar
        rows.append((name, img.ref.tag or "<none>", img.id.removeprefix("sha256:")[:12], img.digest[:19], _size(img.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{n}B"
