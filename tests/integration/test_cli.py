"""The ``kubelite`` console script, run as a user would, against a real ``kubelite server``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ServerProcess, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _kubelite_cmd() -> list[str]:
    # The installed console script tests the entry point too; fall back to the module.
    script = Path(sys.executable).parent / "kubelite"
    if script.exists():
        return [str(script)]
    found = shutil.which("kubelite")
    return [found] if found else [sys.executable, "-m", "kubelite"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    kubeconfig: Path

    def args(self, *args: str) -> list[str]:
        return [*_kubelite_cmd(), *args, "--kubeconfig", str(self.kubeconfig)]

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> Result:
        proc = subprocess.run(
            self.args(*args), input=stdin, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "COLUMNS": "80"},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        r = self(*args, stdin=stdin)
        assert r.code == 0, f"kubelite {' '.join(args)} failed ({r.code}):\n{r.err}"
        return r.out


@pytest.fixture(scope="module")
def cli(apiserver: ServerProcess) -> Cli:
    return Cli(apiserver.kubeconfig)


@pytest.fixture
def ns(cli: Cli) -> Iterator[str]:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    out = cli.ok("apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
    assert out.strip() == f"namespace/{name} created"
    yield name


def _table(out: str) -> list[list[str]]:
    """Rows split on runs of 2+ spaces (cells like 'ACCESS MODES' contain one)."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in out.strip().splitlines() if line.strip()]


def assert_one_line_error(r: Result, contains: str) -> None:
    assert r.code == 1, (r.code, r.out, r.err)
    assert "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: "), lines[0]
    assert contains in lines[0], lines[0]


# --- apply ---------------------------------------------------------------------------------------


def test_apply_creates_then_is_unchanged_then_configured(cli: Cli, ns: str) -> None:
    web = str(EXAMPLES / "web.yaml")
    out = cli.ok("apply", "-f", web, "-n", ns)
    assert out.splitlines() == ["configmap/web-content created", "deployment.apps/web created", "service/web created"]

    out = cli.ok("apply", "-f", web, "-n", ns)
    assert out.splitlines() == [
        "configmap/web-content unchanged", "deployment.apps/web unchanged", "service/web unchanged",
    ]

    svc_before = json.loads(cli.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    changed = (EXAMPLES / "web.yaml").read_text().replace("replicas: 3", "replicas: 2").replace(
        "port: 80\n", "port: 8081\n"
    )
    out = cli.ok("apply", "-f", "-", "-n", ns, stdin=changed)
    assert out.splitlines() == [
        "configmap/web-content unchanged", "deployment.apps/web configured", "service/web configured",
    ]
    deploy = json.loads(cli.ok("get", "deploy", "web", "-n", ns, "-o", "json"))
    assert deploy["spec"]["replicas"] == 2
    applied = json.loads(deploy["metadata"]["annotations"][LAST_APPLIED])
    assert applied["spec"]["replicas"] == 2
    assert applied["metadata"]["namespace"] == ns

    svc_after = json.loads(cli.ok("get", "svc", "web", "-n", ns, "-o", "json"))
    assert svc_after["spec"]["ports"][0]["port"] == 8081
    # Server-owned fields survive the update.
    assert svc_after["spec"]["clusterIP"] == svc_before["spec"]["clusterIP"]
    assert svc_after["metadata"]["uid"] == svc_before["metadata"]["uid"]
    assert svc_after["metadata"]["creationTimestamp"] == svc_before["metadata"]["creationTimestamp"]


def test_apply_removes_fields_dropped_from_the_manifest(cli: Cli, ns: str) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels: {a: '1', b: '2'}\ndata:\n  x: '1'\n"
    cli.ok("apply", "-f", "-", "-n", ns, stdin=cm)
    out = cli.ok("apply", "-f", "-", "-n", ns, stdin=cm.replace(", b: '2'", ""))
    assert out.strip() == "configmap/cfg configured"
    live = json.loads(cli.ok("get", "cm", "cfg", "-n", ns, "-o", "json"))
    assert live["metadata"]["labels"] == {"a": "1"}


def test_apply_directory_list_and_stdin(cli: Cli, ns: str, tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    (tmp_path / "a.json").write_text(json.dumps({
        "apiVersion": "v1", "kind": "List",
        "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a1"}},
                  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a2"}, "stringData": {"k": "v"}}],
    }))
    out = cli.ok("apply", "-f", str(tmp_path), "-n", ns)
    assert out.splitlines() == ["configmap/a1 created", "secret/a2 created", "configmap/b created"]


def test_apply_all_examples(cli: Cli, ns: str) -> None:
    out = cli.ok("apply", "-f", str(EXAMPLES), "-n", ns)
    assert "daemonset.apps/node-agent created" in out
    assert "statefulset.apps/db created" in out
    assert "service/db created" in out


# --- get -----------------------------------------------------------------------------------------


@pytest.fixture
def web(cli: Cli, ns: str) -> str:
    cli.ok("apply", "-f", str(EXAMPLES / "web.yaml"), "-n", ns)
    return ns


def test_get_tables(cli: Cli, web: str) -> None:
    rows = _table(cli.ok("get", "deployments", "-n", web))
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[1][0] == "web"
    assert rows[1][1].endswith("/3")

    rows = _table(cli.ok("get", "deploy", "-n", web, "-o", "wide"))
    assert rows[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[1][-3:] == ["httpd", "busybox:latest", "app=web"]

    rows = _table(cli.ok("get", "svc", "web", "-n", web))
    assert rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert rows[1][:2] == ["web", "ClusterIP"]
    assert rows[1][4] == "80/TCP"

    rows = _table(cli.ok("get", "cm", "-n", web, "-l", "app=web"))
    assert [r[0] for r in rows[1:]] == ["web-content"]
    assert rows[1][1] == "1"


def test_get_several_kinds_and_all_namespaces(cli: Cli, web: str) -> None:
    out = cli.ok("get", "deploy,svc", "-n", web)
    names = [r[0] for r in _table(out) if r[0] != "NAME"]
    assert names == ["deployment.apps/web", "service/web"]

    rows = _table(cli.ok("get", "deploy", "-A"))
    assert rows[0][:2] == ["NAMESPACE", "NAME"]
    assert [web, "web"] in [r[:2] for r in rows[1:]]

    assert cli.ok("get", "deploy/web", "svc/web", "-n", web, "-o", "name").splitlines() == [
        "deployment.apps/web", "service/web",
    ]


def test_get_yaml_and_json(cli: Cli, web: str) -> None:
    listed = yaml.safe_load(cli.ok("get", "cm", "-n", web, "-o", "yaml"))
    assert listed["kind"] == "List"
    assert listed["apiVersion"] == "v1"
    # Every namespace also holds the cluster CA as kube-root-ca.crt, as in Kubernetes.
    assert [i["metadata"]["name"] for i in listed["items"]] == ["kube-root-ca.crt", "web-content"]
    assert listed["items"][1]["kind"] == "ConfigMap"
    assert listed["items"][1]["data"]["index.html"] == "<h1>hello from kubelite</h1>\n"

    one = json.loads(cli.ok("get", "deploy", "web", "-n", web, "-o", "json"))
    assert (one["kind"], one["apiVersion"], one["metadata"]["name"]) == ("Deployment", "apps/v1", "web")
    assert isinstance(one["metadata"]["resourceVersion"], str)


def test_get_nothing(cli: Cli, ns: str) -> None:
    r = cli("get", "pods", "-n", ns)
    assert r.code == 0
    assert r.out == ""
    assert r.err.strip() == f"No resources found in {ns} namespace."


def test_get_watch_prints_events_until_interrupted(cli: Cli, ns: str) -> None:
    proc = subprocess.Popen(
        cli.args("get", "cm", "-n", ns, "-w"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1.0)  # let it list and start watching
        cli.ok("apply", "-f", "-", "-n", ns, stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\n")
        assert proc.stdout is not None
        deadline = time.monotonic() + 15
        seen = ""
        while "watched" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "watched" in seen, seen
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err


# --- describe and delete -------------------------------------------------------------------------


def test_describe(cli: Cli, web: str) -> None:
    out = cli.ok("describe", "deployment", "web", "-n", web)
    assert out.splitlines()[0].split() == ["Name:", "web"]
    for expected in ("Namespace:", "Replicas:", "3 desired", "StrategyType:", "Pod Template:",
                     "busybox:latest", "Events:"):
        assert expected in out, expected
    assert LAST_APPLIED not in out

    svc = json.loads(cli.ok("get", "svc", "web", "-n", web, "-o", "json"))
    out = cli.ok("describe", "svc/web", "-n", web)
    assert any(line.split() == ["IP:", svc["spec"]["clusterIP"]] for line in out.splitlines()), out
    assert "Port:" in out
    assert "Endpoints:" in out


def test_describe_shows_the_objects_events(cli: Cli, web: str) -> None:
    uid = json.loads(cli.ok("get", "deploy", "web", "-n", web, "-o", "json"))["metadata"]["uid"]
    event: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "web", "namespace": web,
                           "uid": uid},
        "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-abc to 3", "type": "Normal",
        "source": {"component": "deployment-controller"},
    }
    other = {**event, "metadata": {"name": "other.1"},
             "involvedObject": {**event["involvedObject"], "name": "other", "uid": "x"}, "message": "not web's"}
    cli.ok("apply", "-f", "-", "-n", web, stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [event, other]}))

    out = cli.ok("describe", "deploy", "web", "-n", web)
    events = out[out.index("Events:"):].splitlines()
    assert events[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    # Any events a controller records would be listed too; ours must be among them.
    ours = [line for line in events[3:] if line.endswith("Scaled up replica set web-abc to 3")]
    assert ours and ours[0].split()[:2] == ["Normal", "ScalingReplicaSet"], events
    assert "not web's" not in out

    rows = _table(cli.ok("get", "events", "-n", web))
    assert rows[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ["Normal", "ScalingReplicaSet", "deployment/web", "Scaled up replica set web-abc to 3"] in [
        r[1:] for r in rows[1:]
    ]


def test_options_before_the_command(cli: Cli, web: str) -> None:
    rows = _table(cli.ok("-n", web, "get", "deploy"))
    assert rows[1][0] == "web"


def test_delete_waits_until_gone(cli: Cli, web: str) -> None:
    out = cli.ok("delete", "deploy", "web", "-n", web)
    assert out.strip() == 'deployment.apps "web" deleted'
    assert_one_line_error(cli("get", "deploy", "web", "-n", web), 'deployments.apps "web" not found')

    out = cli.ok("delete", "-f", str(EXAMPLES / "web.yaml"), "-n", web, "--ignore-not-found")
    assert out.splitlines() == ['configmap "web-content" deleted', 'service "web" deleted']


def test_delete_all_and_selector(cli: Cli, ns: str) -> None:
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        cli.ok("apply", "-f", "-", "-n", ns,
               stdin=f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{tier: {tier}}}}}\n")
    assert cli.ok("delete", "cm", "-l", "tier=x", "-n", ns).splitlines() == [
        'configmap "a" deleted', 'configmap "b" deleted',
    ]
    # (kube-root-ca.crt is in every namespace, as in Kubernetes)
    assert cli.ok("delete", "cm", "--all", "-n", ns).splitlines() == [
        'configmap "c" deleted', 'configmap "kube-root-ca.crt" deleted',
    ]


# --- errors: one line on stderr, exit 1 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["get", "widgets"], None, 'the server doesn\'t have a resource type "widgets"'),
        (["get", "deploy", "missing"], None, 'deployments.apps "missing" not found'),
        (["describe", "pod", "missing"], None, 'pods "missing" not found'),
        (["delete", "cm", "missing"], None, 'configmaps "missing" not found'),
        (["apply", "-f", "/no/such/file.yaml"], None, 'the path "/no/such/file.yaml" does not exist'),
        (["apply", "-f", "-"], "kind: [oops\n", "<stdin>: invalid YAML at line"),
        (["apply", "-f", "-"], "apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n",
         '<stdin> (document 1): no matches for kind "Deployment" in version "v1"'),
        (["apply", "-f", "-"], "apiVersion: v1\nkind: Gadget\nmetadata: {name: x}\n",
         'no matches for kind "Gadget"'),
        (["get", "pods", "-o", "table"], None, 'unable to match a printer suitable for the output format "table"'),
    ],
)
def test_errors_are_one_line(cli: Cli, ns: str, args: list[str], stdin: str | None, message: str) -> None:
    assert_one_line_error(cli(*args, "-n", ns, stdin=stdin), message)


def test_namespace_mismatch_is_refused(cli: Cli, ns: str) -> None:
    r = cli("apply", "-f", "-", "-n", ns, stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: other}\n")
    assert_one_line_error(r, 'the namespace from the provided object "other" does not match')


def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    r = Cli(kubeconfig)("get", "pods")
    assert_one_line_error(r, f"cannot connect to http://127.0.0.1:{port}: connection refused")


def test_missing_kubeconfig(tmp_path: Path) -> None:
    assert_one_line_error(Cli(tmp_path / "nope")("get", "pods"), "does not exist")


def test_version(cli: Cli) -> None:
    out = cli.ok("version")
    assert out.splitlines()[0].startswith("Client Version: ")
    assert out.splitlines()[1].startswith("Server Version: v1.")
