"""Label and field selector parsing and matching, checked against Kubernetes' documented semantics."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.selectors import (
    SUPPORTED_FIELDS,
    SelectorError,
    label_selector_from_dict,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "version": "3", "example.com/team": "a"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # != matches objects without the key
        ("app in (web,db)", True),
        ("app in (db, cache)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=frontend", True),
        ("app=web,tier=backend", False),
        ("app=web, env in (prod,staging), !canary", True),
        ("example.com/team=a", True),
        ("version>2", True),
        ("version<3", False),
        ("app>2", False),  # non-integer label never matches Gt/Lt
        ("empty=", False),
    ],
)
def test_label_selector_matches(selector: str, expected: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is expected


def test_empty_value_selects_empty_label() -> None:
    sel = parse_label_selector("flag=")
    assert sel.matches({"flag": ""})
    assert not sel.matches({"flag": "x"})
    assert not sel.matches({})


def test_none_labels_behave_as_empty() -> None:
    assert parse_label_selector("").matches(None)
    assert parse_label_selector("!a").matches(None)
    assert not parse_label_selector("a").matches(None)


@pytest.mark.parametrize(
    "selector",
    [
        "app=web=x",
        "app in web",
        "app in (web",
        "app in (a b)",
        "=web",
        "app web",
        "app=web,",
        ",app",
        "!",
        "app notin",
        "-bad=x",
        "app=-bad",
        "Upper.Case/x=y",
        "a" * 64,
        "app=" + "v" * 64,
        "version>x",
        "app=(x)",
    ],
)
def test_label_selector_rejects_invalid(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(selector)


def test_error_message_names_selector_and_problem() -> None:
    with pytest.raises(SelectorError, match=r"app in \(web.*expected"):
        parse_label_selector("app in (web")
    with pytest.raises(SelectorError, match="invalid label key"):
        parse_label_selector("-x")


def test_str_is_canonical_and_round_trips() -> None:
    sel = parse_label_selector("tier notin (b,a), app==web, !canary, env, x!=y, v>1")
    text = str(sel)
    assert text == "app=web,!canary,env,tier notin (a,b),v>1,x!=y"
    assert parse_label_selector(text) == sel


def test_empty_property() -> None:
    assert parse_label_selector("").empty
    assert parse_label_selector("   ").empty
    assert not parse_label_selector("a").empty


def test_from_dict_match_labels_and_expressions() -> None:
    sel = label_selector_from_dict(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({**LABELS, "canary": "1"})
    assert not sel.matches({**LABELS, "env": "dev"})
    assert not sel.matches({"app": "web", "env": "prod"})  # no tier
    assert str(sel) == "app=web,!canary,env in (prod,staging),tier,zone notin (b)"


def test_from_dict_empty_matches_all_and_none_matches_nothing() -> None:
    assert label_selector_from_dict({}).matches({"a": "b"})
    assert label_selector_from_dict({}).empty
    nothing = label_selector_from_dict(None)
    assert not nothing.matches({})
    assert not nothing.matches({"a": "b"})
    assert not nothing.empty


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "must be specified"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "may not be specified"),
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, "not a valid"),
        ({"matchExpressions": [{"operator": "Exists"}]}, "key is required"),
        ({"matchLabels": {"a": 1}}, "must be strings"),
        ({"matchLabels": {"bad key": "x"}}, "invalid label key"),
        ({"matchLabels": ["a"]}, "matchLabels"),
        ({"matchExpressions": {"key": "a"}}, "must be a list"),
    ],
)
def test_from_dict_rejects_invalid(sel: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        label_selector_from_dict(sel)


POD = {
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("metadata.name=web-1", True),
        ("metadata.name==web-1", True),
        ("metadata.name!=web-1", False),
        ("metadata.name=web-1,metadata.namespace=default", True),
        ("metadata.name=web-1,metadata.namespace=kube-system", False),
        ("spec.nodeName=node-a", True),
        ("spec.nodeName=", False),
        ("spec.nodeName!=", True),  # "scheduled pods": the kubelet/scheduler idiom
        ("status.phase!=Succeeded,status.phase!=Failed", True),
        ("status.podIP=", True),  # missing resolves to ""
    ],
)
def test_field_selector_matches(selector: str, expected: bool) -> None:
    assert parse_field_selector(selector).matches(POD) is expected


def test_field_selector_unscheduled_pod() -> None:
    pending = {"metadata": {"name": "p"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=").matches(pending)
    assert not parse_field_selector("spec.nodeName!=").matches(pending)


def test_event_fields_use_kubernetes_field_labels() -> None:
    event = {
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
        "reason": "Scheduled",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "reportingController": "kubelite-scheduler",
    }
    assert parse_field_selector(
        "involvedObject.uid=u-1,involvedObject.name=web-1,involvedObject.namespace=default"
    ).matches(event)
    assert parse_field_selector("source=default-scheduler,type=Normal,reason=Scheduled").matches(event)
    assert parse_field_selector("reportingComponent=kubelite-scheduler").matches(event)
    assert not parse_field_selector("involvedObject.kind=Node").matches(event)


def test_node_unschedulable_defaults_to_false() -> None:
    assert parse_field_selector("spec.unschedulable=false").matches({"spec": {}})
    assert parse_field_selector("spec.unschedulable=true").matches({"spec": {"unschedulable": True}})
    assert not parse_field_selector("spec.unschedulable=false").matches({"spec": {"unschedulable": True}})


def test_field_selector_escaped_values() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d,metadata.namespace=x")
    assert [tuple(r) for r in sel.requirements] == [("metadata.name", "=", "a,b=c\\d"), ("metadata.namespace", "=", "x")]
    assert sel.matches({"metadata": {"name": "a,b=c\\d", "namespace": "x"}})
    assert parse_field_selector(str(sel)) == sel


def test_field_selector_requirements_unpack() -> None:
    sel = parse_field_selector("spec.nodeName!=n1,status.phase==Running")
    assert [(f, op, v) for f, op, v in sel.requirements] == [
        ("spec.nodeName", "!=", "n1"),
        ("status.phase", "=", "Running"),
    ]
    assert sel.value_for("status.phase") == "Running"
    assert sel.value_for("spec.nodeName") is None  # != does not pin a value


@pytest.mark.parametrize("selector", ["metadata.name", "=x", "a=b,", "a=b,,c=d", "a=b=c", r"a=b\x", "a=b,c"])
def test_field_selector_rejects_invalid(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(selector)


def test_validate_against_supported_fields() -> None:
    parse_field_selector("spec.nodeName=n,metadata.name=x").validate("pods")
    parse_field_selector("metadata.namespace=default").validate("configmaps")
    parse_field_selector("type=kubernetes.io/tls").validate("secrets")
    with pytest.raises(SelectorError, match=r'field label not supported: "spec\.nodeName"'):
        parse_field_selector("spec.nodeName=n").validate("deployments")
    with pytest.raises(SelectorError, match="not supported"):
        parse_field_selector("status.phase=Running").validate("nodes")


def test_every_supported_table_has_common_fields() -> None:
    for plural, fields in SUPPORTED_FIELDS.items():
        assert {"metadata.name", "metadata.namespace"} <= fields, plural
