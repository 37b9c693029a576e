"""Service proxy benchmark (needs root; everything happens in network namespaces it creates and removes).

    python bench/network_bench.py [--changes 50] [--services 1000] [--endpoints 10] [--requests 2000]

Figures:

* ``program_1000x10``: one ``iptables-restore --noflush`` of the rules for N Services x M endpoints
  (render and restore timed apart), into an empty nat table of a scratch namespace.
* ``endpoints_to_rules_p50/p99``: an Endpoints change (through a real API server on memory://) until
  the new endpoint's DNAT rule is in the nat table of every one of three nodes, each node being a
  :class:`ServiceProxy` with its own informers and its own network namespace.
* ``rps_cluster_ip`` vs ``rps_pod_ip``: HTTP requests/s (a new TCP connection each) from a client
  namespace to a busybox httpd in a server namespace, through the ClusterIP (DNAT + masquerade in the
  node namespace) and straight to the pod IP, in the same run, interleaved.

All addresses are in 10.239.0.0/16 inside the scratch namespaces; nothing reaches the host's routes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import record
from kubelite.agent.proxy import ProxyConfig, ServiceProxy, render_rules
from kubelite.client import ApiClient, Informer
from kubelite.controllers.base import ENDPOINTS, SERVICES

BENCH = "network"
CLUSTER_CIDR = "10.239.0.0/16"


def sh(*argv: str, input_: str | None = None) -> str:
    return subprocess.run(argv, capture_output=True, text=True, input=input_, check=True).stdout


def netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def services_and_endpoints(n: int, m: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    svcs, eps = [], {}
    for i in range(n):
        name = f"s{i}"
        svcs.append({"metadata": {"namespace": "bench", "name": name},
                     "spec": {"clusterIP": f"10.239.{200 + i // 250}.{i % 250 + 1}",
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        eps[f"bench/{name}"] = {"subsets": [{
            "addresses": [{"ip": f"10.239.{(i * m + j) // 250}.{(i * m + j) % 250 + 2}"} for j in range(m)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}
    return svcs, eps


def bench_programming(n: int, m: int) -> None:
    ns = netns(f"klb-prog-{uuid.uuid4().hex[:6]}")
    try:
        svcs, eps = services_and_endpoints(n, m)
        t0 = time.perf_counter()
        text = render_rules(svcs, eps, ProxyConfig(cluster_cidr=CLUSTER_CIDR))
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", ns, "iptables-restore", "--noflush", input_=text)
        restore_s = time.perf_counter() - t0
        rules = text.count("\n-A ")
        record(BENCH, f"render_{n}x{m}", render_s * 1000, "ms", rules=rules)
        record(BENCH, f"program_{n}x{m}", restore_s * 1000, "ms", rules=rules)
        print(f"{n} services x {m} endpoints = {rules} rules: render {render_s * 1000:.0f} ms, "
              f"iptables-restore {restore_s * 1000:.0f} ms")
    finally:
        sh("ip", "netns", "del", ns)


def wrappers(tmp: Path, ns: str) -> str:
    """``iptables``/``-save``/``-restore`` that run inside ``ns`` (ServiceProxy takes the base name)."""
    base = tmp / f"ipt-{ns}"
    for suffix in ("", "-save", "-restore"):
        path = Path(f"{base}{suffix}")
        path.write_text(f'#!/bin/sh\nexec ip netns exec {ns} iptables{suffix} "$@"\n')
        path.chmod(0o755)
    return str(base)


async def bench_propagation(changes: int) -> None:
    from kubelite.apiserver.config import ServerConfig
    from kubelite.apiserver.server import start_server

    with tempfile.TemporaryDirectory(prefix="klb-") as tmp_s:
        tmp = Path(tmp_s)
        port = 20000 + os.getpid() % 20000
        running = await start_server(ServerConfig(data_dir=tmp, datastore_endpoint="memory://", port=port))
        client = ApiClient(f"http://127.0.0.1:{port}")
        nodes = [netns(f"klb-n{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
        proxies: list[ServiceProxy] = []
        try:
            await client.create(_rt("namespaces"), {"metadata": {"name": "bench"}})
            svc = await client.create(SERVICES, {"metadata": {"name": "web", "namespace": "bench"}, "spec": {
                "ports": [{"name": "http", "port": 80}]}})
            await client.create(ENDPOINTS, {"metadata": {"name": "web", "namespace": "bench"}, "subsets": []})
            for ns in nodes:
                proxy = ServiceProxy(Informer(client, SERVICES), Informer(client, ENDPOINTS),
                                     ProxyConfig(cluster_cidr=CLUSTER_CIDR), iptables=wrappers(tmp, ns))
                for inf in (proxy.services, proxy.endpoints):
                    asyncio.get_running_loop().create_task(inf.run())
                proxy.start()
                proxies.append(proxy)
            latencies: list[float] = []
            for k in range(changes):
                ip = f"10.239.{k // 250}.{k % 250 + 2}"
                eps = await client.get(ENDPOINTS, "web", "bench")
                eps["subsets"] = [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": 8080}]}]
                t0 = time.perf_counter()
                await client.replace(ENDPOINTS, eps)
                pending = set(nodes)
                while pending:
                    for ns in list(pending):
                        out = await asyncio.to_thread(sh, "ip", "netns", "exec", ns, "iptables-save", "-t", "nat")
                        if f"--to-destination {ip}:8080" in out:
                            latencies.append(time.perf_counter() - t0)
                            pending.discard(ns)
            latencies.sort()
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            record(BENCH, "endpoints_to_rules_p50", p50, "ms", nodes=3, samples=len(latencies),
                   service=svc["spec"]["clusterIP"])
            record(BENCH, "endpoints_to_rules_p99", p99, "ms", nodes=3, samples=len(latencies))
            print(f"Endpoints change -> rules on every node (3 nodes, {len(latencies)} samples): "
                  f"p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        finally:
            for proxy in proxies:
                await proxy.stop(cleanup=True)
                for inf in (proxy.services, proxy.endpoints):
                    inf.stop()
            await client.close()
            await running.stop()
            for ns in nodes:
                sh("ip", "netns", "del", ns)


def _rt(plural: str) -> Any:
    from kubelite.api.registry import resource

    return resource("", plural)


CLIENT = """
import http.client, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
for _ in range(n):
    c = http.client.HTTPConnection(host, port, timeout=5)
    c.request("GET", "/")
    c.getresponse().read()
    c.close()
print(n / (time.perf_counter() - t0))
"""


def bench_throughput(requests: int) -> None:
    sfx = uuid.uuid4().hex[:5]
    node, server, cli = netns(f"klb-node-{sfx}"), netns(f"klb-srv-{sfx}"), netns(f"klb-cli-{sfx}")
    cluster_ip, pod_ip, client_ip, gw = "10.239.250.10", "10.239.1.2", "10.239.1.3", "10.239.1.1"
    httpd: subprocess.Popen[bytes] | None = None
    try:
        sh("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", node, "addr", "add", f"{gw}/24", "dev", "br0")
        sh("ip", "-n", node, "link", "set", "br0", "up")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for ns, ip, veth in ((server, pod_ip, "vs"), (cli, client_ip, "vc")):
            sh("ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", node, "link", "set", veth, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        svc = {"metadata": {"namespace": "bench", "name": "web"},
               "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
        eps = {"bench/web": {"subsets": [{"addresses": [{"ip": pod_ip}],
                                          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]}}
        text = render_rules([svc], eps, ProxyConfig(cluster_cidr=CLUSTER_CIDR, local_pod_cidr="10.239.1.0/24"))
        sh("ip", "netns", "exec", node, "iptables-restore", "--noflush", input_=text)
        sh("ip", "netns", "exec", node, "iptables", "-t", "nat", "-I", "PREROUTING", "-j", "KUBELITE-SERVICES")
        sh("ip", "netns", "exec", node, "iptables", "-t", "nat", "-I", "POSTROUTING", "-j", "KUBELITE-POSTROUTING")
        with tempfile.TemporaryDirectory() as www:
            Path(www, "index.html").write_text("ok\n")
            httpd = subprocess.Popen(["ip", "netns", "exec", server, "busybox", "httpd", "-f", "-p", "8080", "-h", www])
            time.sleep(0.3)
            rates: dict[str, list[float]] = {"cluster_ip": [], "pod_ip": []}
            for _ in range(3):  # interleaved rounds, so both see the same machine load
                for what, host, port in (("cluster_ip", cluster_ip, "80"), ("pod_ip", pod_ip, "8080")):
                    out = sh("ip", "netns", "exec", cli, sys.executable, "-c", CLIENT, host, port,
                             str(requests // 3))
                    rates[what].append(float(out))
        for what, values in rates.items():
            record(BENCH, f"rps_{what}", statistics.median(values), "req/s", requests=requests)
        ratio = statistics.median(rates["cluster_ip"]) / statistics.median(rates["pod_ip"])
        record(BENCH, "rps_cluster_ip_over_pod_ip", ratio, "ratio")
        print(f"requests/s (new connection each): ClusterIP {statistics.median(rates['cluster_ip']):.0f}, "
              f"pod IP {statistics.median(rates['pod_ip']):.0f} (ratio {ratio:.2f})")
    finally:
        if httpd is not None:
            httpd.kill()
            httpd.wait()
        for ns in (cli, server, node):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("network_bench needs root (network namespaces, iptables)")
    bench_programming(args.services, args.endpoints)
    asyncio.run(bench_propagation(args.changes))
    bench_throughput(args.requests)


if __name__ == "__main__":
    main()
