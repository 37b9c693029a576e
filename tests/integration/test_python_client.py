"""The official `kubernetes` Python client, unmodified, against a real `kubelite server`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def api(apiserver: ServerProcess) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def ns(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name


def _deployment(name: str, replicas: int = 2, image: str = "busybox:1.35") -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="web",
                            image=image,
                            command=["httpd", "-f"],
                            ports=[client.V1ContainerPort(container_port=80)],
                            env=[client.V1EnvVar(name="A", value="1")],
                        )
                    ]
                ),
            ),
        ),
    )


def test_configmap_crud(api: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"tier": "a"}), data={"k": "v"})
    created = v1.create_namespaced_config_map(ns, cm)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.namespace == ns

    got = v1.read_namespaced_config_map("cfg", ns)
    assert got.data == {"k": "v"}

    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other", labels={"tier": "b"})))
    listed = v1.list_namespaced_config_map(ns, label_selector="tier=a")
    assert [i.metadata.name for i in listed.items] == ["cfg"]
    assert [i.metadata.name for i in v1.list_namespaced_config_map(ns, label_selector="tier in (a,b)").items] == ["cfg", "other"]
    assert [i.metadata.name for i in v1.list_namespaced_config_map(ns, field_selector="metadata.name=other").items] == ["other"]

    got.data["k"] = "v2"
    replaced = v1.replace_namespaced_config_map("cfg", ns, got)
    assert replaced.data == {"k": "v2"}
    assert int(replaced.metadata.resource_version) > int(got.metadata.resource_version)

    patched = v1.patch_namespaced_config_map("cfg", ns, {"data": {"extra": "x"}})
    assert patched.data == {"k": "v2", "extra": "x"}
    patched = v1.patch_namespaced_config_map("cfg", ns, [{"op": "remove", "path": "/data/extra"}])
    assert patched.data == {"k": "v2"}

    v1.delete_namespaced_config_map("cfg", ns)
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("cfg", ns)
    assert e.value.status == 404


def test_pod_crud_and_status(api: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p1", labels={"app": "x"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1.35")]),
    )
    created = v1.create_namespaced_pod(ns, pod)
    assert created.spec.restart_policy == "Always"  # defaulted by the server
    assert created.status is None or created.status.phase in (None, "Pending")
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(ns, pod)
    assert e.value.status == 409

    patched = v1.patch_namespaced_pod("p1", ns, {"metadata": {"labels": {"extra": "y"}}})
    assert patched.metadata.labels == {"app": "x", "extra": "y"}

    # status is written only through /status
    body = v1.read_namespaced_pod("p1", ns)
    body.status = client.V1PodStatus(phase="Running")
    v1.replace_namespaced_pod("p1", ns, body)
    assert v1.read_namespaced_pod("p1", ns).status.phase != "Running"
    v1.patch_namespaced_pod_status("p1", ns, {"status": {"phase": "Running"}})
    assert v1.read_namespaced_pod("p1", ns).status.phase == "Running"

    assert [p.metadata.name for p in v1.list_namespaced_pod(ns, field_selector="status.phase=Running").items] == ["p1"]
    v1.delete_namespaced_pod("p1", ns)
    assert v1.list_namespaced_pod(ns).items == []


def test_deployment_crud(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment(ns, _deployment("web"))
    assert created.metadata.generation == 1
    assert created.spec.strategy.type == "RollingUpdate"

    dep = apps.read_namespaced_deployment("web", ns)
    dep.spec.replicas = 5
    replaced = apps.replace_namespaced_deployment("web", ns, dep)
    assert replaced.spec.replicas == 5
    assert replaced.metadata.generation == 2

    # a strategic merge patch updates one container by name and keeps the rest
    patched = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}}
    )
    c = patched.spec.template.spec.containers[0]
    assert (c.image, c.command, c.env[0].name) == ("busybox:1.36", ["httpd", "-f"], "A")
    assert patched.metadata.generation == 3

    # metadata-only changes do not bump generation
    labelled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 3

    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 5
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 1

    listed = apps.list_deployment_for_all_namespaces(label_selector="app=web")
    assert any(d.metadata.namespace == ns for d in listed.items)
    apps.delete_namespaced_deployment("web", ns)
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("web", ns)
    assert e.value.status == 404


def test_optimistic_concurrency(api: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="race"), data={"n": "0"}))
    a = v1.read_namespaced_config_map("race", ns)
    b = v1.read_namespaced_config_map("race", ns)
    assert a.metadata.resource_version == b.metadata.resource_version
    a.data["n"] = "a"
    b.data["n"] = "b"
    results: dict[str, Any] = {}

    def put(tag: str, body: client.V1ConfigMap) -> None:
        try:
            v1.replace_namespaced_config_map("race", ns, body)
            results[tag] = 200
        except ApiException as e:
            results[tag] = e.status

    threads = [threading.Thread(target=put, args=(t, body)) for t, body in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [200, 409]
    winner = next(k for k, v in results.items() if v == 200)
    assert v1.read_namespaced_config_map("race", ns).data["n"] == winner


def test_watch_in_order_and_resume(api: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api)
    start_rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"i": "0"}))
    for i in range(1, 4):
        v1.patch_namespaced_config_map("w", ns, {"data": {"i": str(i)}})
    v1.delete_namespaced_config_map("w", ns)

    w = watch.Watch()
    seen: list[tuple[str, str | None]] = []
    rvs: list[int] = []
    for event in w.stream(v1.list_namespaced_config_map, ns, resource_version=start_rv, timeout_seconds=5):
        obj = event["object"]
        seen.append((event["type"], (obj.data or {}).get("i")))
        rvs.append(int(obj.metadata.resource_version))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "0"), ("MODIFIED", "1"), ("MODIFIED", "2"), ("MODIFIED", "3"), ("DELETED", "3")]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)

    # resume from the middle: only the later events are replayed
    w2 = watch.Watch()
    resumed = []
    for event in w2.stream(v1.list_namespaced_config_map, ns, resource_version=str(rvs[2]), timeout_seconds=5):
        resumed.append(event["type"])
        if event["type"] == "DELETED":
            w2.stop()
    assert resumed == ["MODIFIED", "DELETED"]


def test_watch_without_resource_version_lists_then_streams(api: client.ApiClient, ns: str) -> None:
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="pre")))
    w = watch.Watch()
    events = []

    def later() -> None:
        v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="post")))

    timer = threading.Timer(0.5, later)
    timer.start()
    for event in w.stream(v1.list_namespaced_config_map, ns, timeout_seconds=10):
        if event["object"].metadata.name == "kube-root-ca.crt":  # published in every namespace
            continue
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 2:
            w.stop()
    timer.join()
    assert events == [("ADDED", "pre"), ("ADDED", "post")]


def test_not_found_namespace_and_errors_are_status(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("does-not-exist", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert e.value.status == 404
    assert '"kind":"Status"' in e.value.body.replace(" ", "")
