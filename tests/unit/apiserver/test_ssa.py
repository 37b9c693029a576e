"""Server-side apply and managedFields: the field-set algebra, then the API over HTTP."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api.registry import resource
from kubelite.apiserver import errors, ssa
from kubelite.client import ApiClient, ApiError

DEPLOYMENTS = resource("apps", "deployments")
CONFIGMAPS = resource("", "configmaps")


def deployment(image: str = "busybox:1", env: dict[str, str] | None = None, ports: tuple[int, ...] = (80,),
               replicas: int | None = 2) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"app": "x"}}, "spec": spec}


C = 'k:{"name":"c"}'
CONTAINER = ("f:spec", "f:template", "f:spec", "f:containers", C)


def entry(obj: dict[str, Any], manager: str, operation: str) -> set[ssa.Path]:
    for e in obj["metadata"].get("managedFields") or []:
        if e["manager"] == manager and e["operation"] == operation:
            return ssa.decode_fields(e["fieldsV1"])
    return set()


# ---- field sets --------------------------------------------------------------------------------


def test_field_set_uses_merge_keys_maps_and_skips_system_fields() -> None:
    obj = deployment(env={"A": "1"})
    obj["metadata"].update({"uid": "u", "resourceVersion": "3", "finalizers": ["a/b"]})
    obj["status"] = {"replicas": 1}
    paths = set(ssa.field_values(DEPLOYMENTS, obj))
    assert (*CONTAINER, ".") in paths
    assert (*CONTAINER, "f:image") in paths
    assert (*CONTAINER, "f:env", 'k:{"name":"A"}', "f:value") in paths
    assert (*CONTAINER, "f:ports", 'k:{"containerPort":80}', ".") in paths
    assert ("f:metadata", "f:labels", ".") in paths and ("f:metadata", "f:labels", "f:app") in paths
    assert ("f:metadata", "f:finalizers", 'v:"a/b"') in paths
    assert not any(p[:2] in (("f:metadata", "f:uid"), ("f:metadata", "f:resourceVersion")) for p in paths)
    assert not any(p[0] == "f:status" for p in paths)  # the status subresource owns status
    assert set(ssa.field_values(DEPLOYMENTS, obj, "status")) == {("f:status", "f:replicas")}


def test_fields_v1_round_trip_matches_kubernetes_shape() -> None:
    paths = set(ssa.field_values(DEPLOYMENTS, deployment()))
    encoded = ssa.encode_fields(paths)
    assert encoded["f:spec"]["f:template"]["f:spec"]["f:containers"][C]["."] == {}
    assert encoded["f:spec"]["f:replicas"] == {}
    assert ssa.decode_fields(encoded) == paths


# ---- apply ---------------------------------------------------------------------------------------


def test_apply_creates_with_an_apply_entry() -> None:
    obj = ssa.apply(DEPLOYMENTS, None, deployment(), "mgr", force=False)
    (e,) = obj["metadata"]["managedFields"]
    assert (e["manager"], e["operation"], e["apiVersion"], e["fieldsType"]) == ("mgr", "Apply", "apps/v1", "FieldsV1")
    assert (*CONTAINER, "f:image") in ssa.decode_fields(e["fieldsV1"])


def test_reapply_removes_what_the_manager_no_longer_applies() -> None:
    live = ssa.apply(DEPLOYMENTS, None, deployment(env={"A": "1", "B": "2"}, ports=(80, 81)), "mgr", False)
    new = ssa.apply(DEPLOYMENTS, live, deployment(image="busybox:2", env={"A": "1"}, ports=(80,)), "mgr", False)
    (container,) = new["spec"]["template"]["spec"]["containers"]
    assert container == {"name": "c", "image": "busybox:2", "env": [{"name": "A", "value": "1"}],
                         "ports": [{"containerPort": 80}]}
    dropped = ssa.apply(DEPLOYMENTS, new, deployment(ports=()), "mgr", False)
    assert "ports" not in dropped["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in dropped["spec"]["template"]["spec"]["containers"][0]


def test_fields_owned_by_another_manager_stay() -> None:
    live = ssa.apply(DEPLOYMENTS, None, deployment(env={"A": "1"}), "a", False)
    both = ssa.apply(DEPLOYMENTS, live, deployment(env={"A": "1", "B": "2"}), "b", False)
    # "a" stops applying env A; "b" still applies it (same value: co-owned), so it stays.
    after = ssa.apply(DEPLOYMENTS, both, deployment(env=None), "a", False)
    env = after["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["A", "B"]


def test_conflict_with_other_manager_unless_forced() -> None:
    live = ssa.apply(DEPLOYMENTS, None, deployment(), "a", False)
    with pytest.raises(errors.StatusError) as err:
        ssa.apply(DEPLOYMENTS, live, deployment(image="other", replicas=5), "b", False)
    assert err.value.code == 409
    causes = {(c["field"], c["message"]) for c in err.value.details["causes"]}  # type: ignore[index]
    assert causes == {
        ('.spec.template.spec.containers[name="c"].image', 'conflict with "a" using apps/v1'),
        (".spec.replicas", 'conflict with "a" using apps/v1'),
    }
    forced = ssa.apply(DEPLOYMENTS, live, deployment(image="other", replicas=5), "b", True)
    assert forced["spec"]["replicas"] == 5
    assert ("f:spec", "f:replicas") in entry(forced, "b", "Apply")
    assert ("f:spec", "f:replicas") not in entry(forced, "a", "Apply")
    # Same values: no conflict, both own the field.
    shared = ssa.apply(DEPLOYMENTS, live, deployment(), "b", False)
    assert ("f:spec", "f:replicas") in entry(shared, "a", "Apply") & entry(shared, "b", "Apply")


# ---- updates ------------------------------------------------------------------------------------


def test_update_takes_changed_fields_from_other_managers() -> None:
    live = ssa.apply(DEPLOYMENTS, None, deployment(), "applier", False)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 7
    ssa.record_update(DEPLOYMENTS, live, new, "kubectl")
    assert entry(new, "kubectl", "Update") == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in entry(new, "applier", "Apply")
    # Now re-applying the old replicas conflicts with the updater.
    with pytest.raises(errors.StatusError) as err:
        ssa.apply(DEPLOYMENTS, new, deployment(), "applier", False)
    assert "kubectl" in err.value.message


def test_update_managed_fields_reset_and_validation() -> None:
    live = ssa.apply(DEPLOYMENTS, None, deployment(), "applier", False)
    cleared = copy.deepcopy(live)
    cleared["metadata"]["managedFields"] = []
    ssa.record_update(DEPLOYMENTS, live, cleared, "kubectl")
    assert "managedFields" not in cleared["metadata"]
    bad = copy.deepcopy(live)
    bad["metadata"]["managedFields"] = [{"manager": "me", "operation": "Steal"}]
    with pytest.raises(errors.StatusError) as err:
        ssa.record_update(DEPLOYMENTS, live, bad, "kubectl")
    assert err.value.code == 422


# ---- over HTTP -----------------------------------------------------------------------------------


async def test_http_server_side_apply(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    created = await client.patch(DEPLOYMENTS, "x", deployment(), "default", "apply", field_manager="a")
    assert created["metadata"]["managedFields"][0]["manager"] == "a"
    raw = await client.request("GET", "/apis/apps/v1/namespaces/default/deployments/x")
    assert raw["metadata"]["uid"] == created["metadata"]["uid"]

    with pytest.raises(ApiError) as err:
        await client.patch(DEPLOYMENTS, "x", deployment(replicas=4), "default", "apply", field_manager="b")
    assert err.value.code == 409 and ".spec.replicas" in str(err.value)
    forced = await client.patch(DEPLOYMENTS, "x", deployment(replicas=4), "default", "apply",
                                field_manager="b", force=True)
    assert forced["spec"]["replicas"] == 4

    # A merge patch records an Update entry for its manager (here: the fieldManager parameter).
    patched = await client.request(
        "PATCH", "/apis/apps/v1/namespaces/default/deployments/x", {"fieldManager": "editor"},
        json={"metadata": {"labels": {"tier": "web"}}}, headers={"Content-Type": "application/merge-patch+json"},
    )
    assert entry(patched, "editor", "Update") == {("f:metadata", "f:labels", "f:tier")}

    with pytest.raises(ApiError) as err:  # apply needs a field manager
        await client.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/x", json=deployment(),
                             headers={"Content-Type": "application/apply-patch+yaml"})
    assert err.value.code == 422


async def test_http_create_and_update_record_managers(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    cm = await client.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"a": "1"}}, "default")
    # No fieldManager: the User-Agent's program name ("kubelite/<version>").
    assert entry(cm, "kubelite", "Update") == {("f:data", "."), ("f:data", "f:a")}
    cm["data"]["b"] = "2"
    del cm["metadata"]["managedFields"]  # a body without them keeps the stored ones
    updated = await client.replace(CONFIGMAPS, cm)
    assert entry(updated, "kubelite", "Update") == {("f:data", "."), ("f:data", "f:a"), ("f:data", "f:b")}
