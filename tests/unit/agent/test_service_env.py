"""Service environment variables (kubelet's getServiceEnvVarMap): how a pod finds the API and its Services."""

from __future__ import annotations

from typing import Any

from kubelite.agent.env import PodContext, build_env, service_env

Obj = dict[str, Any]


def svc(ns: str, name: str, ip: str, *ports: tuple[str, int, str]) -> Obj:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}}


def pod(ns: str = "apps", links: bool | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": "c"}]}
    if links is not None:
        spec["enableServiceLinks"] = links
    return {"metadata": {"namespace": ns, "name": "p"}, "spec": spec}


MASTER = svc("default", "kubernetes", "10.43.0.1", ("https", 443, "TCP"))
WEB = svc("apps", "web-front", "10.43.0.9", ("http", 80, "TCP"), ("dns", 53, "UDP"))
OTHER_NS = svc("elsewhere", "db", "10.43.0.7", ("", 5432, "TCP"))
HEADLESS = svc("apps", "peers", "None", ("", 7000, "TCP"))


def test_master_service_and_own_namespace_with_docker_link_names() -> None:
    env = service_env(pod(), [MASTER, WEB, OTHER_NS, HEADLESS])
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.43.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": "tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.43.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": "10.43.0.1",
        "WEB_FRONT_SERVICE_HOST": "10.43.0.9",
        "WEB_FRONT_SERVICE_PORT": "80",
        "WEB_FRONT_SERVICE_PORT_HTTP": "80",
        "WEB_FRONT_SERVICE_PORT_DNS": "53",
        "WEB_FRONT_PORT": "tcp://10.43.0.9:80",
        "WEB_FRONT_PORT_80_TCP": "tcp://10.43.0.9:80",
        "WEB_FRONT_PORT_80_TCP_PROTO": "tcp",
        "WEB_FRONT_PORT_80_TCP_PORT": "80",
        "WEB_FRONT_PORT_80_TCP_ADDR": "10.43.0.9",
        "WEB_FRONT_PORT_53_UDP": "udp://10.43.0.9:53",
        "WEB_FRONT_PORT_53_UDP_PROTO": "udp",
        "WEB_FRONT_PORT_53_UDP_PORT": "53",
        "WEB_FRONT_PORT_53_UDP_ADDR": "10.43.0.9",
    }


def test_links_off_keeps_only_the_master_service() -> None:
    env = service_env(pod(links=False), [MASTER, WEB])
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1" and not any(k.startswith("WEB_FRONT") for k in env)


def test_a_namespace_kubernetes_service_wins_over_the_master_one() -> None:
    local = svc("apps", "kubernetes", "10.43.0.50", ("https", 8443, "TCP"))
    for order in ([MASTER, local], [local, MASTER]):
        assert service_env(pod(), order)["KUBERNETES_SERVICE_HOST"] == "10.43.0.50"


async def test_env_overrides_services_and_may_refer_to_them() -> None:
    class NoObjects:
        async def configmap(self, namespace: str, name: str) -> Obj | None:
            return None

        async def secret(self, namespace: str, name: str) -> Obj | None:
            return None

    container = {"name": "c", "env": [{"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
                                      {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"}]}
    env = await build_env(pod(), container, NoObjects(), PodContext(), service_env(pod(), [MASTER]))
    assert env["API"] == "https://10.43.0.1:443"  # expanded before the container's own value was defined
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"  # the container's env wins
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1" and list(env)[:2] == ["API", "KUBERNETES_SERVICE_PORT"]
