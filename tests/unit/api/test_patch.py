"""RFC 7386 merge patch (including the RFC's appendix examples) and RFC 6902 JSON patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.patch import PatchError, json_patch, merge_patch

# RFC 7386 Appendix A, verbatim.
RFC7386_CASES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386_CASES)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_does_not_modify_inputs_or_share_structure() -> None:
    target = {"spec": {"replicas": 1, "template": {"labels": {"a": "b"}}}, "keep": [1]}
    patch = {"spec": {"replicas": 3, "new": {"x": [1]}}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = merge_patch(target, patch)
    assert result == {"spec": {"replicas": 3, "template": {"labels": {"a": "b"}}, "new": {"x": [1]}}, "keep": [1]}
    assert target == target_before and patch == patch_before
    result["spec"]["template"]["labels"]["a"] = "changed"
    result["spec"]["new"]["x"].append(2)
    result["keep"].append(2)
    assert target == target_before and patch == patch_before


def test_merge_patch_scale_like_kubectl() -> None:
    deploy = {"metadata": {"name": "d", "labels": {"app": "x"}}, "spec": {"replicas": 1}}
    assert merge_patch(deploy, {"spec": {"replicas": 3}, "metadata": {"labels": {"app": None}}}) == {
        "metadata": {"name": "d", "labels": {}},
        "spec": {"replicas": 3},
    }


def test_json_patch_operations() -> None:
    doc = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    before = copy.deepcopy(doc)
    result = json_patch(
        doc,
        [
            {"op": "test", "path": "/spec/containers/0/name", "value": "c"},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "x:2"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "d"}},
            {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
            {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        ],
    )
    assert result == {
        "metadata": {"labels": {"c": "2"}, "annotations": {"b": "2"}},
        "spec": {"containers": [{"name": "c", "image": "x:2"}, {"name": "d"}]},
    }
    assert doc == before


def test_json_patch_escaped_pointer() -> None:
    doc = {"metadata": {"annotations": {"example.com/a~b": "x"}}}
    assert json_patch(doc, [{"op": "remove", "path": "/metadata/annotations/example.com~1a~0b"}]) == {
        "metadata": {"annotations": {}}
    }


def test_json_patch_empty_is_identity() -> None:
    assert json_patch({"a": 1}, []) == {"a": 1}


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ({"op": "add"}, "must be a list"),
        (["add"], "must be an object"),
        ([{"path": "/a"}], "no 'op'"),
        ([{"op": "add", "value": 1}], "no 'path'"),
        ([{"op": "add", "path": "/a"}], "'value'"),
        ([{"op": "frobnicate", "path": "/a"}], "Unknown operation"),
        ([{"op": "test", "path": "/a", "value": 2}], "test operation failed"),
        ([{"op": "remove", "path": "/missing"}], "cannot be applied"),
        ([{"op": "replace", "path": "/x/y", "value": 1}], "cannot be applied"),
        ([{"op": "add", "path": "a", "value": 1}], "cannot be applied"),
        ([{"op": "add", "path": "/l/5", "value": 1}], "cannot be applied"),
        ([{"op": "move", "from": "/nope", "path": "/b"}], "cannot be applied"),
    ],
)
def test_json_patch_errors(ops: Any, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        json_patch({"a": 1, "l": []}, ops)


def test_failed_json_patch_leaves_target_untouched() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 9}])
    assert doc == {"a": 1}
