"""`kubelite certs check|rotate`: inspect and re-issue the cluster's certificates.

The certificates live under ``<data-dir>/tls`` (``ServerConfig.tls_path``). ``kubelite server``
reads them once, at start (renewing any leaf that expires within 30 days), so after ``rotate``
the server must be restarted to serve and use the new ones. The CA and the ServiceAccount signing
key are never rotated: that would invalidate every credential issued so far.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from kubelite.cli.common import fail, stdout_is_tty

app = typer.Typer(name="certs", help="Check or rotate the cluster certificates (under <data-dir>/tls).")

DataDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="KUBELITE_DATA_DIR", help="The server's data directory (certificates in tls/)."
    ),
]
DEFAULT_DATA_DIR = Path("/var/lib/kubelite/server")


def _tls_dir(data_dir: Path) -> Path:
    tls = data_dir / "tls"
    if not (tls / "ca.crt").is_file():
        fail(f"no cluster PKI in {tls} (kubelite server creates it at first start)")
    return tls


def _sans(cert: x509.Certificate) -> str:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    return ",".join(str(n.value) for n in ext)


@app.command("check")
def check(data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """List every certificate with its subject, SANs and expiry."""
    # Imported here, not at module level: every `kubelite` process imports this module.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    tls = _tls_dir(data_dir)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("FILE", "SUBJECT", "NOT AFTER", "DAYS LEFT", "SANS"):
        table.add_column(column, no_wrap=True, overflow="ignore")
    now = datetime.now(UTC)
    for path in sorted(tls.rglob("*.crt")):
        name = str(path.relative_to(tls))
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError as e:
            table.add_row(name, Text(f"unreadable: {e}", style="red"))
            continue
        left = (cert.not_valid_after_utc - now).days
        style = "red" if left < 0 else "yellow" if left < 30 else ""
        # Text() so a '[' in a subject is never read as rich markup.
        table.add_row(
            name,
            Text(cert.subject.rfc4514_string()),
            cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"),
            Text(str(left), style=style),
            Text(_sans(cert)),  # last: the widest column
        )
    tty = stdout_is_tty()
    buf = io.StringIO()
    # Never wrapped or truncated: a pipe (grep) gets whole lines, as with `kubelite get`.
    Console(file=buf, width=100_000, force_terminal=tty, no_color=not tty, highlight=False).print(table)
    typer.echo("\n".join(line.rstrip() for line in buf.getvalue().splitlines()))


@app.command("rotate")
def rotate(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    tls_san: Annotated[
        list[str] | None,
        typer.Option("--tls-san", help="An extra name or IP for the serving certificate (repeatable)."),
    ] = None,
) -> None:
    """Re-issue every leaf certificate (new keys) from the existing CA."""
    from kubelite.auth.pki import rotate as rotate_pki

    tls = _tls_dir(data_dir)
    try:
        done = rotate_pki(tls, tls_san or [])
    except (OSError, ValueError) as e:
        fail(f"rotation failed: {e}")
    for name in done:
        typer.echo(f"re-issued {tls / name}")
    typer.echo("restart kubelite server (and etcd, if it uses these) to load the new certificates")
