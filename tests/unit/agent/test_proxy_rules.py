"""The Service proxy's rules, generated from Services and Endpoints (pure: no iptables involved)."""

from __future__ import annotations

import re
from typing import Any

from kubelite.agent.proxy import (
    ProxyConfig,
    is_proxy_chain,
    our_rules,
    render_rules,
    service_chain,
)

Obj = dict[str, Any]
CONFIG = ProxyConfig(cluster_cidr="10.244.0.0/16", local_pod_cidr="10.244.1.0/24")


def svc(name: str, ip: str | None = "10.43.0.10", **spec: Any) -> Obj:
    ports = spec.pop("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return {"metadata": {"namespace": "default", "name": name}, "spec": {"clusterIP": ip, "ports": ports, **spec}}


def eps(name: str, ready: list[str], not_ready: list[str] | None = None, port: int = 8080, port_name: str = "http") -> Obj:
    subset: Obj = {"addresses": [{"ip": ip} for ip in ready], "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {"metadata": {"namespace": "default", "name": name}, "subsets": [subset]}


def rules_of(text: str, chain: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]


def dnat_targets(text: str) -> list[str]:
    return re.findall(r"--to-destination (\S+)", text)


def test_cluster_ip_balances_over_ready_endpoints_only() -> None:
    text = render_rules([svc("web")], {"default/web": eps("web", ["10.244.2.5", "10.244.3.6", "10.244.1.7"],
                                                          not_ready=["10.244.2.9"])}, CONFIG)
    chain = service_chain("default", "web", "http", "TCP")
    entry = rules_of(text, "KUBELITE-SERVICES")[0]
    assert "-d 10.43.0.10/32 -p tcp -m tcp --dport 80" in entry and entry.endswith(f"-j {chain}")
    assert sorted(dnat_targets(text)) == ["10.244.1.7:8080", "10.244.2.5:8080", "10.244.3.6:8080"]
    jumps = [r for r in rules_of(text, chain) if "KUBELITE-SEP-" in r]
    # i-th of n: probability 1/(n-i); the last one takes the rest.
    assert "--probability 0.33333333349" in jumps[0]
    assert "--probability 0.50000000000" in jumps[1]
    assert "statistic" not in jumps[2]


def test_service_without_ready_endpoints_and_headless_get_no_rules() -> None:
    text = render_rules(
        [svc("idle"), svc("headless", ip="None"), svc("ext", type="ExternalName")],
        {"default/idle": eps("idle", [], not_ready=["10.244.2.9"]), "default/headless": eps("headless", ["10.244.2.1"])},
        CONFIG,
    )
    assert dnat_targets(text) == []
    assert not any("KUBELITE-SVC-" in line for line in text.splitlines())


def test_port_names_route_to_their_own_target_ports() -> None:
    s = svc("multi", ports=[{"name": "a", "port": 80, "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP"}])
    e = {"metadata": {"namespace": "default", "name": "multi"}, "subsets": [
        {"addresses": [{"ip": "10.244.2.5"}], "ports": [{"name": "a", "port": 8080, "protocol": "TCP"},
                                                       {"name": "b", "port": 9090, "protocol": "TCP"}]}]}
    text = render_rules([s], {"default/multi": e}, CONFIG)
    for name, target in (("a", "10.244.2.5:8080"), ("b", "10.244.2.5:9090")):
        seps = [r.split("-j ")[-1] for r in rules_of(text, service_chain("default", "multi", name, "TCP"))
                if "KUBELITE-SEP-" in r.split("-j ")[-1]]
        assert len(seps) == 1
        assert dnat_targets("\n".join(rules_of(text, seps[0]))) == [target]


def test_session_affinity_checks_recent_before_random() -> None:
    text = render_rules([svc("sticky", sessionAffinity="ClientIP",
                             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})],
                        {"default/sticky": eps("sticky", ["10.244.2.5", "10.244.3.6"])}, CONFIG)
    rules = [r for r in rules_of(text, service_chain("default", "sticky", "http", "TCP")) if "KUBELITE-SEP-" in r]
    assert [("--rcheck --seconds 60" in r) for r in rules] == [True, True, False, False]
    assert text.count("--set --name KUBELITE-SEP-") == 2  # each endpoint remembers its clients


def test_node_port_marks_for_masquerade_and_comes_after_cluster_ips() -> None:
    text = render_rules([svc("np", type="NodePort", ports=[{"name": "http", "port": 80, "protocol": "TCP",
                                                             "nodePort": 30080}])],
                        {"default/np": eps("np", ["10.244.2.5"])}, CONFIG)
    nodeports = rules_of(text, "KUBELITE-NODEPORTS")
    assert [r.split("-j ")[-1] for r in nodeports] == ["KUBELITE-MARK-MASQ", service_chain("default", "np", "http", "TCP")]
    assert all("--dport 30080" in r for r in nodeports)
    services = rules_of(text, "KUBELITE-SERVICES")
    assert services[-1].endswith("-m addrtype --dst-type LOCAL -j KUBELITE-NODEPORTS")


def test_local_endpoints_are_masqueraded_for_local_clients_only() -> None:
    text = render_rules([svc("web")], {"default/web": eps("web", ["10.244.1.7", "10.244.2.5"])}, CONFIG)
    local_sep = next(c for c in re.findall(r"^:(KUBELITE-SEP-\S+)", text, re.M)
                     if "10.244.1.7:8080" in "\n".join(rules_of(text, c)))
    assert any("-s 10.244.1.0/24 -j KUBELITE-MARK-MASQ" in r for r in rules_of(text, local_sep))
    assert text.count("-s 10.244.1.0/24 -j KUBELITE-MARK-MASQ") == 1  # not for the remote endpoint


def test_stale_chains_are_deleted_and_foreign_ones_left_alone() -> None:
    old = render_rules([svc("gone")], {"default/gone": eps("gone", ["10.244.2.5"])}, CONFIG)
    old_chains = re.findall(r"^:(\S+)", old, re.M)
    text = render_rules([], {}, CONFIG, existing_chains=[*old_chains, "KUBELITE-EGRESS", "DOCKER"])
    deleted = re.findall(r"^-X (\S+)", text, re.M)
    assert sorted(deleted) == sorted(c for c in old_chains if "-SVC-" in c or "-SEP-" in c)
    assert "KUBELITE-EGRESS" not in text and "DOCKER" not in text
    assert not is_proxy_chain("KUBELITE-EGRESS")


def test_our_rules_reads_only_our_lines_from_iptables_save() -> None:
    saved = "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":KUBELITE-SERVICES - [0:0]", ":KUBELITE-EGRESS - [0:0]", ":OTHER - [0:0]",
        "-A PREROUTING -j KUBELITE-SERVICES", "-A OTHER -j RETURN", "-A KUBELITE-EGRESS -j MASQUERADE",
        "-A KUBELITE-SERVICES -j RETURN", "COMMIT",
    ])
    chains, rules = our_rules(saved)
    assert chains == {"KUBELITE-SERVICES"}
    assert rules == ["-A KUBELITE-SERVICES -j RETURN"]
