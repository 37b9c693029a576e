"""The cluster spec: bad input is refused with the field named, before anything is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kubelite.cli import app
from kubelite.provision.deployer import registry_addresses
from kubelite.provision.errors import SpecError
from kubelite.provision.spec import ClusterSpec, load_spec, parse_spec
from kubelite.provision.state import Machine

ROOT = Path(__file__).resolve().parents[3]


def _spec(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "demo", "provider": "nspawn", "masters": 1, "workers": 2}
    doc.update(overrides)
    return doc


def test_example_spec_is_valid() -> None:
    spec = load_spec(ROOT / "examples/clusters/local.yaml")
    assert (spec.name, spec.provider, spec.masters, spec.workers) == ("local", "nspawn", 1, 2)
    assert spec.ssh_key is None  # the cluster generates its own key


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"masters": 0}, "masters", "at least 1 master"),
        ({"masters": 2, "datastore": "etcd"}, "masters", "odd number"),
        ({"masters": 2}, "masters", "datastore: etcd"),
        ({"provider": "openstack"}, "provider", "unknown provider"),
        ({"network": {"nodes": "10.9.0.0/24", "pods": "10.9.0.0/16"}}, "network.pods", "overlaps network.nodes"),
        ({"network": {"services": "10.251.128.0/20"}}, "network.services", "overlaps network.pods"),
        ({"network": {"nodes": "10.9.0.1/24"}}, "network.nodes", "not a network"),
        ({"ssh": {"key": "/nonexistent/id_ed25519"}}, "ssh.key", "does not exist"),
        ({"runtime": "podman"}, "runtime", "unknown runtime"),
        ({"workers": -1}, "workers", "at least 0"),
        ({"resources": {"memory": "lots"}}, "resources.memory", "quantity"),
        ({"images": ["no-such-image"]}, "images[0]", "neither"),
        ({"nodes": 3}, "nodes", "unknown key"),
        ({"name": "Bad_Name"}, "name", "[a-z0-9-]"),
    ],
)
def test_bad_spec_names_the_field(overrides: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**overrides))
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert words in str(err.value)


def test_ssh_provider_needs_hosts_with_a_master_and_a_key(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    base = {"name": "ext", "provider": "ssh", "ssh": {"key": str(key)}}
    with pytest.raises(SpecError) as err:
        parse_spec(base)
    assert err.value.field == "hosts"
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "hosts": [{"name": "a", "address": "192.0.2.1", "role": "worker"}]})
    assert err.value.field == "hosts" and "at least 1 master" in str(err.value)
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "ssh": {}, "hosts": [{"name": "a", "address": "192.0.2.1", "role": "master"}]})
    assert err.value.field == "ssh.key"
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "hosts": [{"name": "a", "address": "192.0.2.1", "role": "boss"}]})
    assert err.value.field == "hosts[0].role"


def test_ssh_spec_round_trips_through_its_stored_form(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    spec = parse_spec({"name": "ext", "provider": "ssh", "ssh": {"key": str(key)}, "hosts": [
        {"name": "a", "address": "192.0.2.1", "role": "master"}, {"name": "b", "address": "192.0.2.2"}]})
    again = parse_spec(spec.to_dict())
    assert again == spec
    assert (again.masters, again.workers) == (1, 1)


def test_inventory_file_supplies_the_hosts(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("key")
    (tmp_path / "hosts.py").write_text(
        'masters = [("192.0.2.1", {"node_name": "m1"})]\nworkers = [("192.0.2.2", {"node_name": "w1"})]\n'
    )
    spec = parse_spec({"name": "ext", "provider": "ssh", "ssh": {"key": "id"}, "inventory": "hosts.py"}, tmp_path)
    assert [(h.name, h.address, h.role) for h in spec.hosts] == [
        ("m1", "192.0.2.1", "master"), ("w1", "192.0.2.2", "worker")]
    (tmp_path / "hosts.py").write_text('masters = ["192.0.2.1"]\n')
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "ext", "provider": "ssh", "ssh": {"key": "id"}, "inventory": "hosts.py"}, tmp_path)
    assert err.value.field == "inventory" and "node_name" in str(err.value)


def test_example_ssh_inventory_is_readable() -> None:
    hosts: dict[str, Any] = {}
    exec((ROOT / "inventory/example-ssh.py").read_text(), hosts)
    assert hosts["masters"] and all(isinstance(h, tuple) for h in hosts["masters"] + hosts["workers"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"masters": 0}, "masters"), ({"provider": "openstack"}, "provider"),
     ({"ssh": {"key": "/nonexistent/key"}}, "ssh.key"), ({"runtime": "podman"}, "runtime")],
)
def test_cli_refuses_before_creating_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               overrides: dict[str, Any], field: str) -> None:  # fmt: skip
    state = tmp_path / "state"
    monkeypatch.setenv("KUBELITE_STATE_DIR", str(state))
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(**overrides)))
    result = CliRunner().invoke(app, ["cluster", "up", str(spec_file)])
    assert result.exit_code == 1
    assert f"error: {field}: " in result.output
    assert not state.exists()  # no state dir, key, machine or network was made


def test_every_master_runs_a_registry_and_a_master_pulls_from_itself_first() -> None:
    machines = [Machine(f"m{i}", "master", f"10.9.0.{i + 2}") for i in range(3)] + [Machine("w0", "worker", "10.9.0.9")]
    every = ["10.9.0.2:5000", "10.9.0.3:5000", "10.9.0.4:5000"]
    assert registry_addresses(ClusterSpec(name="r", masters=3), machines) == every
    assert registry_addresses(ClusterSpec(name="r", masters=3), machines, machines[3]) == every
    assert registry_addresses(ClusterSpec(name="r", masters=3), machines, machines[2])[0] == "10.9.0.4:5000"
    assert sorted(registry_addresses(ClusterSpec(name="r", masters=3), machines, machines[2])) == every
    assert registry_addresses(ClusterSpec(name="r", masters=3, registry=False), machines) == []
