"""Container environment: envFrom/env/valueFrom resolution and Kubernetes' $(VAR) expansion."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelite.agent.env import EnvError, PodContext, build_env, expand, resolve_command

Obj = dict[str, Any]


class DictSource:
    """ConfigMaps and Secrets held in dicts: the ObjectSource protocol without an API server."""

    def __init__(self, configmaps: dict[str, Obj] | None = None, secrets: dict[str, Obj] | None = None) -> None:
        self.configmaps, self.secrets = configmaps or {}, secrets or {}

    async def configmap(self, namespace: str, name: str) -> Obj | None:
        return self.configmaps.get(f"{namespace}/{name}")

    async def secret(self, namespace: str, name: str) -> Obj | None:
        return self.secrets.get(f"{namespace}/{name}")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


POD: Obj = {
    "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"},
                 "annotations": {"team": "core"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "sa",
             "containers": [{"name": "c", "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}}}]},
}
CTX = PodContext(pod_ip="10.0.0.5", host_ip="192.168.1.2")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("$(A)", {"A": "x"}, "x"),
        ("pre-$(A)-post", {"A": "x"}, "pre-x-post"),
        ("$(MISSING)", {}, "$(MISSING)"),
        ("$$(A)", {"A": "x"}, "$(A)"),
        ("$$", {}, "$"),
        ("a$b", {}, "a$b"),
        ("$(A", {"A": "x"}, "$(A"),
        ("$()", {}, "$()"),
        ("$(A)$(B)", {"A": "1", "B": "2"}, "12"),
        ("end$", {}, "end$"),
    ],
)
def test_expand(text: str, env: dict[str, str], expected: str) -> None:
    assert expand(text, env.get) == expected


async def test_env_sources_order_and_overrides() -> None:
    source = DictSource(
        configmaps={"ns/cfg": {"data": {"MODE": "fast", "LEVEL": "3", "bad key": "skipped"}}},
        secrets={"ns/creds": {"data": {"PASSWORD": b64("s3cret")}}},
    )
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [
            {"name": "LEVEL", "value": "9"},  # env overrides envFrom
            {"name": "URL", "value": "http://$(HOST):$(PORT)/$(MODE)"},  # PORT defined later: stays literal
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PORT", "value": "80"},
            {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "PASSWORD"}}},
        ],
    }
    env = await build_env(POD, container, source, CTX)
    assert env == {
        "MODE": "fast", "LEVEL": "9", "DB_PASSWORD": "s3cret",
        "URL": "http://$(HOST):$(PORT)/fast", "HOST": "10.0.0.5", "PORT": "80", "KEY": "fast", "PW": "s3cret",
    }
    assert list(env)[:3] == ["MODE", "LEVEL", "DB_PASSWORD"]


async def test_field_and_resource_refs() -> None:
    def ref(path: str) -> Obj:
        return {"name": path.replace(".", "_").replace("[", "").replace("]", "").replace("'", ""),
                "valueFrom": {"fieldRef": {"fieldPath": path}}}

    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
             "metadata.annotations['team']", "spec.nodeName", "spec.serviceAccountName", "status.podIP",
             "status.hostIP"]
    container: Obj = {"name": "c", "env": [
        *[ref(p) for p in paths],
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]}
    env = await build_env(POD, container, DictSource(), CTX)
    assert [env[r["name"]] for r in container["env"][: len(paths)]] == [
        "web", "ns", "u-1", "web", "core", "n1", "sa", "10.0.0.5", "192.168.1.2"]
    assert (env["CPU"], env["CPU_M"], env["MEM_MI"]) == ("2", "1500", "64")  # cores round up


async def test_missing_sources() -> None:
    source = DictSource(configmaps={"ns/cfg": {"data": {"A": "1"}}})
    optional = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B", "optional": True}}},
                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}]}
    assert await build_env(POD, optional, source, CTX) == {}
    missing_key = {"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B"}}}]}
    with pytest.raises(EnvError, match="couldn't find key B in ConfigMap ns/cfg"):
        await build_env(POD, missing_key, source, CTX)
    missing_obj = {"name": "c", "envFrom": [{"secretRef": {"name": "creds"}}]}
    with pytest.raises(EnvError, match='secret "creds" not found'):
        await build_env(POD, missing_obj, source, CTX)


def test_command_and_args_expansion() -> None:
    c = {"command": ["sh", "-c", "echo $(MSG) $$(MSG)"], "args": ["$(UNDEFINED)", "$(N)"]}
    assert resolve_command(c, {"MSG": "hi", "N": "3"}) == (["sh", "-c", "echo hi $(MSG)"], ["$(UNDEFINED)", "3"])
