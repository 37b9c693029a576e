"""``kubelite apply -f``: create what is missing, update what exists (client-side apply).

Update is a three-way merge done on the client, then a PUT with the live resourceVersion:
start from the live object (so server-owned fields such as status, spec.clusterIP, spec.nodeName and
metadata.uid survive), drop the fields the previous apply set and this manifest no longer has
(read from the ``last-applied-configuration`` annotation, as kubectl does), and lay the manifest
over it. If the result equals the live object nothing is sent ("unchanged"). A 409 (someone wrote
in between) restarts from a fresh GET.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
import yaml

from kubelite.api.registry import ResourceType, by_kind, kinds_named
from kubelite.cli.common import (
    CliError,
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Session,
    connection_options,
    error_line,
    format_error,
    kind_ref,
    open_session,
    run,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# Fields only the server sets; a manifest copied from `get -o yaml` must not send them back.
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink")
_CONFLICT_RETRIES = 5

app = typer.Typer()


@dataclass
class Manifest:
    source: str  # the file path, or "<stdin>"
    index: int  # 1-based document number within the source
    obj: dict[str, Any]
    item: int | None = None  # 1-based position inside a `kind: List` document

    @property
    def where(self) -> str:
        where = f"{self.source} (document {self.index}"
        return where + (f", item {self.item})" if self.item is not None else ")")

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name") or "")


# ---------------------------------------------------------------------------------------------
# loading


def _expand_paths(path: str, recursive: bool) -> list[Path]:
    p = Path(path)
    if not p.exists():
        raise CliError(f'the path "{path}" does not exist')
    if p.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
        if not files:
            raise CliError(f'no manifests (*.yaml, *.yml, *.json) found in "{path}"')
        return files
    return [p]


def parse_documents(text: str, source: str) -> list[Manifest]:
    """Every object in a (multi-document) YAML or JSON text; empty documents skipped, Lists expanded."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise CliError(f"{source}: invalid YAML{at}: {problem}") from None
    out: list[Manifest] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise CliError(f"{source} (document {index}): expected a mapping, got {type(doc).__name__}")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            for item_no, item in enumerate(doc.get("items") or [], start=1):
                if not isinstance(item, dict):
                    raise CliError(f"{source} (document {index}, item {item_no}): expected a mapping")
                out.append(Manifest(source, index, item, item_no))
            continue
        out.append(Manifest(source, index, doc))
    for m in out:
        if not m.obj.get("apiVersion"):
            raise CliError(f"{m.where}: apiVersion not set")
        if not m.obj.get("kind"):
            raise CliError(f"{m.where}: kind not set")
        if not m.name:
            raise CliError(f"{m.where}: metadata.name not set")
    return out


def load_manifests(
    filenames: list[str], stdin: TextIO | None = None, recursive: bool = False
) -> list[Manifest]:
    """The objects named by ``-f`` arguments: files, directories (sorted), or '-' for stdin."""
    if not filenames:
        raise CliError("must specify one of -f and -k")
    out: list[Manifest] = []
    for name in filenames:
        if name == "-":
            out += parse_documents((stdin or sys.stdin).read(), "<stdin>")
            continue
        for path in _expand_paths(name, recursive):
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise CliError(f"{path}: not a text file") from None
            except OSError as exc:
                raise CliError(f"{path}: {exc.strerror or exc}") from None
            out += parse_documents(text, str(path))
    if not out:
        raise CliError("no objects passed to apply")
    return out


def resource_type_for(m: Manifest) -> ResourceType:
    api_version, kind = str(m.obj["apiVersion"]), str(m.obj["kind"])
    rt = by_kind(api_version, kind)
    if rt is not None:
        return rt
    served = kinds_named(kind)
    hint = f' (did you mean apiVersion "{served[0].api_version}"?)' if served else ""
    raise CliError(f'{m.where}: no matches for kind "{kind}" in version "{api_version}"{hint}')


# ---------------------------------------------------------------------------------------------
# the merge


def clean_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    return out


def last_applied_value(manifest: dict[str, Any]) -> str:
    """The annotation's value as kubectl writes it: compact JSON, sorted keys, without itself, newline."""
    doc = copy.deepcopy(manifest)
    annotations = doc.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


def with_last_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    value = last_applied_value(manifest)
    out.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = value
    return out


def _pair_items(target: list[Any], patch: list[Any]) -> list[tuple[Any, Any]] | None:
    """Match list items of ``patch`` to items of ``target`` so maps inside lists merge too.

    Items pair by ``name`` when every item has one (containers, env, volumes, ports usually),
    else by position when the lengths agree; otherwise None and the list is replaced whole.
    This keeps fields the server defaulted inside list items (ports[].protocol, containers[].
    imagePullPolicy) so that applying the same manifest twice really is "unchanged".
    """
    if not all(isinstance(x, dict) for x in (*target, *patch)):
        return None
    if all("name" in x for x in (*target, *patch)):
        by_name = {x["name"]: x for x in target}
        return [(by_name.get(p["name"]), p) for p in patch]
    if len(target) == len(patch):
        return list(zip(target, patch, strict=True))
    return None


def _drop_removed(target: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> None:
    """Remove from ``target`` what the previous apply (``old``) set and ``new`` no longer sets."""
    for key, old_value in old.items():
        if key not in new:
            target.pop(key, None)
            continue
        new_value, cur = new[key], target.get(key)
        if isinstance(old_value, dict) and isinstance(new_value, dict) and isinstance(cur, dict):
            _drop_removed(cur, old_value, new_value)
        elif isinstance(old_value, list) and isinstance(new_value, list) and isinstance(cur, list):
            new_to_cur = _pair_items(cur, new_value)
            old_to_new = _pair_items(new_value, old_value)
            if new_to_cur is None or old_to_new is None:
                continue
            old_for = {id(n): o for n, o in old_to_new if n is not None}
            for cur_item, new_item in new_to_cur:
                old_item = old_for.get(id(new_item))
                if cur_item is not None and old_item is not None:
                    _drop_removed(cur_item, old_item, new_item)


def _merge_value(current: Any, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(current, dict):
        merged = copy.deepcopy(current)
        _overlay(merged, value)
        return merged
    if isinstance(value, list) and isinstance(current, list):
        pairs = _pair_items(current, value)
        if pairs is not None:
            return [_merge_value(cur, item) if cur is not None else copy.deepcopy(item) for cur, item in pairs]
    return copy.deepcopy(value)


def _overlay(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Lay ``patch`` over ``target``: maps merge, list items merge when they pair up, null deletes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_value(target.get(key), value)


def merge_for_apply(live: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The object to PUT: live, minus fields dropped since the last apply, plus the manifest."""
    desired = copy.deepcopy(live)
    # Compare against what this apply records (it carries metadata.annotations, as the last one did).
    new = with_last_applied(manifest)
    old_raw = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if old_raw:
        try:
            old = json.loads(old_raw)
        except ValueError:
            old = None
        if isinstance(old, dict):
            _drop_removed(desired, old, new)
    _overlay(desired, new)
    # The live resourceVersion makes the PUT a compare-and-swap.
    desired.setdefault("metadata", {})["resourceVersion"] = (live.get("metadata") or {}).get(
        "resourceVersion"
    )
    return desired


# ---------------------------------------------------------------------------------------------
# the command


async def apply_one(session: Session, rt: ResourceType, m: Manifest) -> str:
    """Create or update one object; returns 'created', 'configured' or 'unchanged'."""
    from kubelite.client import ApiError

    manifest = clean_manifest(m.obj)
    if rt.has_status:
        # The server ignores status on a main-resource write; keeping it would never read "unchanged".
        manifest.pop("status", None)
    meta = manifest["metadata"]
    if rt.namespaced:
        ns = meta.get("namespace")
        if ns and session.explicit_namespace and ns != session.namespace:
            raise CliError(
                f'{m.where}: the namespace from the provided object "{ns}" does not match the '
                f'namespace "{session.namespace}". You must pass \'--namespace={ns}\' to perform this operation.'
            )
        meta["namespace"] = ns or session.namespace
    else:
        meta.pop("namespace", None)
    namespace = meta.get("namespace")

    for _attempt in range(_CONFLICT_RETRIES):
        try:
            live = await session.client.get(rt, m.name, namespace=namespace)
        except ApiError as exc:
            if exc.code != 404:
                raise
            try:
                await session.client.create(rt, with_last_applied(manifest), namespace=namespace)
            except ApiError as create_exc:
                if create_exc.code == 409:  # created by someone else meanwhile: update it instead
                    continue
                raise
            return "created"
        desired = merge_for_apply(live, manifest)
        if desired == live:
            return "unchanged"
        try:
            await session.client.replace(rt, desired)
        except ApiError as exc:
            if exc.code == 409:  # stale resourceVersion: merge again onto a fresh copy
                continue
            raise
        return "configured"
    raise CliError(f"{m.where}: gave up after {_CONFLICT_RETRIES} conflicting updates of {m.name}")


@app.command("apply")
def apply(
    ctx: typer.Context,
    filename: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="File, directory or '-' (stdin) with manifests; repeatable."),
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-R", help="Recurse into directories.")] = False,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Create or update resources from manifests (like kubectl apply)."""
    opts = connection_options(ctx, kubeconfig, context, namespace)

    async def body() -> int:
        # Read and check every document before touching the cluster, so a typo applies nothing.
        manifests = load_manifests(filename, recursive=recursive)
        typed = [(resource_type_for(m), m) for m in manifests]
        from kubelite.client import ApiError

        failed = 0
        async with open_session(opts) as session:
            for rt, m in typed:
                try:
                    result = await apply_one(session, rt, m)
                except ApiError as exc:
                    # Like kubectl: report the object the server refused and go on with the others.
                    error_line(f"{m.where}: {format_error(exc)}")
                    failed += 1
                    continue
                typer.echo(f"{kind_ref(rt)}/{m.name} {result}")
        return 1 if failed else 0

    run(body)
