"""Manifest loading and the client-side apply merge (no server involved)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kubelite.cli.apply import (
    LAST_APPLIED,
    Manifest,
    load_manifests,
    merge_for_apply,
    parse_documents,
    resource_type_for,
    with_last_applied,
)
from kubelite.cli.common import CliError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  k: v
"""


def test_multi_document_skips_empty_documents() -> None:
    text = "---\n" + CM.format(name="a") + "---\n# only a comment\n---\n" + CM.format(name="b") + "---\n"
    ms = parse_documents(text, "x.yaml")
    assert [m.name for m in ms] == ["a", "b"]
    assert [m.index for m in ms] == [1, 3]  # numbering counts the skipped (comment-only) document


def test_list_is_expanded() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}},
    ]}
    ms = parse_documents(json.dumps(doc), "list.json")
    assert [(m.obj["kind"], m.name, m.item) for m in ms] == [("ConfigMap", "a", 1), ("Secret", "b", 2)]
    assert ms[1].where == "list.json (document 1, item 2)"


def test_directory_is_read_sorted_and_filtered(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(CM.format(name="b"))
    (tmp_path / "a.yaml").write_text(CM.format(name="a"))
    (tmp_path / "c.json").write_text(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}))
    (tmp_path / "README.md").write_text("not a manifest: {{")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.yaml").write_text(CM.format(name="d"))
    assert [m.name for m in load_manifests([str(tmp_path)])] == ["a", "b", "c"]
    assert [m.name for m in load_manifests([str(tmp_path)], recursive=True)] == ["a", "b", "c", "d"]


def test_stdin_and_repeated_f(tmp_path: Path) -> None:
    f = tmp_path / "one.yaml"
    f.write_text(CM.format(name="from-file"))
    ms = load_manifests([str(f), "-"], stdin=io.StringIO(CM.format(name="from-stdin")))
    assert [(m.name, m.source) for m in ms] == [("from-file", str(f)), ("from-stdin", "<stdin>")]


def test_missing_file() -> None:
    with pytest.raises(CliError, match=r'the path "/nonexistent/x.yaml" does not exist'):
        load_manifests(["/nonexistent/x.yaml"])


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n")
    with pytest.raises(CliError) as err:
        load_manifests([str(f)])
    message = str(err.value)
    assert message.startswith(f"{f}: invalid YAML at line")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("kind: ConfigMap\nmetadata: {name: a}\n", "apiVersion not set"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "kind not set"),
        ("apiVersion: v1\nkind: ConfigMap\n", "metadata.name not set"),
    ],
)
def test_incomplete_documents(text: str, expected: str) -> None:
    with pytest.raises(CliError, match=expected):
        parse_documents("---\n" + CM.format(name="ok") + "---\n" + text, "f.yaml")


def test_empty_input_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("---\n---\n")
    with pytest.raises(CliError, match="no objects passed to apply"):
        load_manifests([str(f)])


def test_kind_resolution_and_wrong_api_version() -> None:
    ok = Manifest("f.yaml", 1, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})
    assert resource_type_for(ok).plural == "deployments"
    wrong = Manifest("f.yaml", 2, {"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "x"}})
    with pytest.raises(CliError, match=r'f.yaml \(document 2\): no matches for kind "Deployment" in version "v1" '
                                       r'\(did you mean apiVersion "apps/v1"\?\)'):
        resource_type_for(wrong)
    unknown = Manifest("f.yaml", 3, {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}})
    with pytest.raises(CliError, match=r'f.yaml \(document 3\): no matches for kind "Widget"'):
        resource_type_for(unknown)


def test_examples_parse_and_resolve() -> None:
    ms = load_manifests([str(EXAMPLES)])
    kinds = sorted((m.obj["kind"], m.name) for m in ms)
    assert ("Deployment", "web") in kinds
    assert ("StatefulSet", "db") in kinds
    assert ("DaemonSet", "node-agent") in kinds
    for m in ms:
        resource_type_for(m)
        if m.obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            containers = m.obj["spec"]["template"]["spec"]["containers"]
            assert all(c["image"] == "busybox:latest" for c in containers)


# --- the merge -------------------------------------------------------------------------------


def _svc_manifest(**extra: object) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}], **extra}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def _live_from(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a server would hold after creating ``manifest``: server fields and defaults added."""
    live = json.loads(json.dumps(with_last_applied(manifest)))
    live["metadata"].update(uid="u-1", resourceVersion="7", creationTimestamp="2024-01-01T00:00:00Z")
    live["spec"]["clusterIP"] = "10.43.0.10"
    live["spec"]["clusterIPs"] = ["10.43.0.10"]
    live["spec"]["type"] = "ClusterIP"
    for p in live["spec"]["ports"]:
        p.setdefault("protocol", "TCP")  # a server default inside a list item
    live["status"] = {"loadBalancer": {}}
    return live


def test_same_manifest_is_unchanged_despite_server_defaults() -> None:
    manifest = _svc_manifest()
    live = _live_from(manifest)
    assert merge_for_apply(live, manifest) == live


def test_change_keeps_server_owned_fields_and_resource_version() -> None:
    live = _live_from(_svc_manifest())
    new = _svc_manifest(ports=[{"name": "http", "port": 8080}])
    merged = merge_for_apply(live, new)
    assert merged != live
    assert merged["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert merged["spec"]["clusterIP"] == "10.43.0.10"
    assert merged["spec"]["clusterIPs"] == ["10.43.0.10"]
    assert merged["metadata"]["uid"] == "u-1"
    assert merged["metadata"]["resourceVersion"] == "7"
    assert merged["status"] == {"loadBalancer": {}}
    assert json.loads(merged["metadata"]["annotations"][LAST_APPLIED])["spec"]["ports"][0]["port"] == 8080


def test_fields_removed_from_the_manifest_are_removed() -> None:
    live = _live_from(_svc_manifest(sessionAffinity="ClientIP"))
    live["metadata"]["labels"] = {"added-by": "someone-else"}  # not ours: must survive
    merged = merge_for_apply(live, _svc_manifest())
    assert "sessionAffinity" not in merged["spec"]
    assert merged["metadata"]["labels"] == {"added-by": "someone-else"}


def test_last_applied_is_kubectl_shaped() -> None:
    obj = with_last_applied({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "data": {"b": "1"}})
    value = obj["metadata"]["annotations"][LAST_APPLIED]
    assert value == '{"apiVersion":"v1","data":{"b":"1"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"a"}}\n'
