"""The cluster's image registry: Debian's docker-registry (Distribution) on every master, port 5000.

Each master has its own store and `cluster up` pushes the preloaded images to each, so pods keep
pulling while any master is up (agents list every registry, their own master's first)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from deploy.templates import template


@deploy("Image registry")
def install_registry() -> None:
    # The package is baked into the image (disabled there, so only masters run it). Its stock
    # config asks for htpasswd auth; the cluster's registry is open on the private node network.
    config = files.template(
        name="Registry config /etc/docker/registry/config.yml",
        src=template("config/registry.yml.j2"), dest="/etc/docker/registry/config.yml", mode="644",
        address=f"{host.data.node_ip}:5000",
    )  # fmt: skip
    systemd.service(
        name="docker-registry enabled and running", service="docker-registry", running=True, enabled=True,
    )  # fmt: skip
    systemd.service(
        name="Restart docker-registry for its new config", service="docker-registry", restarted=True,
        _if=config.did_change,
    )  # fmt: skip
