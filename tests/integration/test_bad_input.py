"""Bad input gets a 4xx Kubernetes Status, never a 500, and never changes the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess
from tests.fuzz_strategies import CM, DEPLOY, json_values, manifest_like, paths


@pytest.fixture(scope="module")
def http(apiserver: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apiserver.url, timeout=10) as c:
        yield c


def revision(http: httpx.Client) -> str:
    """The store's current revision, as every LIST reports it."""
    rv: str = http.get("/api/v1/namespaces").json()["metadata"]["resourceVersion"]
    return rv


def assert_status(resp: httpx.Response, code: int, *needles: str) -> dict[str, Any]:
    assert resp.status_code == code, resp.text
    body: dict[str, Any] = resp.json()
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == code
    for needle in needles:
        assert needle in body["message"], body["message"]
    return body


def deployment(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    }
    spec.update(spec_overrides)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": spec}


CASES: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    ("malformed json", "POST", CM, {}, b'{"metadata": {', 400, "not valid JSON"),
    ("malformed yaml", "POST", CM, {"Content-Type": "application/yaml"}, b"metadata: [unclosed", 400, "not valid YAML"),
    ("unknown resource", "POST", "/api/v1/namespaces/default/widgets", {}, b'{"metadata":{"name":"w"}}', 404, "could not find"),
    ("kind mismatch", "POST", CM, {}, json.dumps({"kind": "Widget", "apiVersion": "v1", "metadata": {"name": "w"}}).encode(), 400, "Widget"),
    ("wrong apiVersion", "POST", DEPLOY, {}, json.dumps({**deployment(), "apiVersion": "apps/v2"}).encode(), 400, "apps/v2"),
    ("missing name", "POST", CM, {}, b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}', 422, "metadata.name"),
    ("invalid label", "POST", CM, {}, json.dumps({"metadata": {"name": "ok", "labels": {"bad key!": "v"}}}).encode(), 422, "metadata.labels"),
    ("name too long", "POST", CM, {}, json.dumps({"metadata": {"name": "a" * 300}}).encode(), 422, "metadata.name"),
    ("negative replicas", "POST", DEPLOY, {}, json.dumps(deployment(replicas=-1)).encode(), 422, "spec.replicas"),
    ("path traversal name", "POST", CM, {}, json.dumps({"metadata": {"name": "../../etc/passwd"}}).encode(), 422, "metadata.name"),
    ("traversal in url", "GET", CM + "/..%2F..%2Fsecret", {}, b"", 400, "invalid name"),
    ("not an object", "POST", CM, {}, b"[1, 2, 3]", 400, "JSON object"),
    ("unsupported content type", "POST", CM, {"Content-Type": "application/vnd.kubernetes.protobuf"}, b"\x00k8s", 415, "application/json"),
    ("bad patch type", "PATCH", CM + "/x", {"Content-Type": "text/plain"}, b"{}", 415, "merge-patch"),
    ("bad label selector", "GET", CM + "?labelSelector=a%20in%20(", {}, b"", 400, "selector"),
    ("bad field selector", "GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", {}, b"", 400, "field label not supported"),
    ("bad limit", "GET", CM + "?limit=abc", {}, b"", 400, "limit"),
    ("bad resourceVersion watch", "GET", CM + "?watch=true&resourceVersion=xyz", {}, b"", 400, "resourceVersion"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "code", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_status(
    http: httpx.Client, method: str, path: str, headers: dict[str, str], body: bytes, code: int, needle: str
) -> None:
    before = revision(http)
    resp = http.request(method, path, content=body or None, headers=headers)
    assert_status(resp, code, needle)
    assert revision(http) == before, "a rejected request changed the store"


def test_huge_body_is_refused(http: httpx.Client) -> None:
    before = revision(http)
    big = json.dumps({"metadata": {"name": "big"}, "data": {"x": "y" * (4 * 1024 * 1024)}}).encode()
    assert_status(http.post(CM, content=big), 413, "larger than")
    assert revision(http) == before


def test_stale_update_conflicts(http: httpx.Client) -> None:
    created = http.post(CM, json={"metadata": {"name": "stale"}, "data": {"a": "1"}}).json()
    first = dict(created, data={"a": "2"})
    assert http.put(f"{CM}/stale", json=first).status_code == 200
    before = revision(http)
    stale = dict(created, data={"a": "3"})
    assert_status(http.put(f"{CM}/stale", json=stale), 409, "has been modified")
    assert revision(http) == before


def test_garbage_continue_token(http: httpx.Client) -> None:
    assert_status(http.get(CM, params={"continue": "bm90LWpzb24"}), 400, "continue")


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=paths,
    body=st.one_of(manifest_like, json_values),
    ctype=st.sampled_from(["application/json", "application/merge-patch+json", "application/json-patch+json",
                           "application/strategic-merge-patch+json", "application/yaml", None]),
)  # fmt: skip
def test_fuzz_never_500(http: httpx.Client, method: str, path: str, body: Any, ctype: str | None) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    resp = http.request(method, path, content=json.dumps(body).encode(), headers=headers)
    assert resp.status_code < 500, f"{method} {path} {body!r} -> {resp.status_code} {resp.text}"
    if resp.status_code >= 400:
        assert resp.json()["kind"] == "Status"
