"""The default ServiceAccount and kube-root-ca.crt publishers against a real in-process API server."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kubelite.client import ApiClient, ApiError
from kubelite.controllers.base import CONFIGMAPS, NAMESPACES, ControllerSettings
from kubelite.controllers.serviceaccount import ROOT_CA_CONFIGMAP, SERVICEACCOUNTS
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
CA = "-----BEGIN CERTIFICATE-----\nMIIBfakeButOpaqueToTheController\n-----END CERTIFICATE-----\n"


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    settings = ControllerSettings(extra={"ca_pem": CA})
    async with running_controllers(client, ["serviceaccount", "rootcacert"], settings):
        yield client


async def get(client: ApiClient, rt: Any, name: str, ns: str) -> Obj | None:
    try:
        return await client.get(rt, name, ns)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def published(client: ApiClient, ns: str) -> Obj | None:
    cm = await get(client, CONFIGMAPS, ROOT_CA_CONFIGMAP, ns)
    return cm if cm is not None and cm.get("data") == {"ca.crt": CA} else None


async def test_new_namespace_gets_default_serviceaccount_and_ca(api: ApiClient) -> None:
    # Namespaces that existed before the controllers started are covered too.
    for ns in ("default", "kube-system"):
        await eventually(functools.partial(get, api, SERVICEACCOUNTS, "default", ns), 10, f"default SA in {ns}")
        await eventually(functools.partial(published, api, ns), 10, f"root CA in {ns}")

    await api.create(NAMESPACES, {"metadata": {"name": "team-a"}})
    sa = await eventually(lambda: get(api, SERVICEACCOUNTS, "default", "team-a"), 10, "default SA in team-a")
    await eventually(lambda: published(api, "team-a"), 10, "root CA in team-a")

    # Deleted: both come back (the ServiceAccount as a new object); only the controllers do this.
    await api.delete(SERVICEACCOUNTS, "default", "team-a")
    await api.delete(CONFIGMAPS, ROOT_CA_CONFIGMAP, "team-a")

    async def new_sa() -> Obj | None:
        again = await get(api, SERVICEACCOUNTS, "default", "team-a")
        return again if again and again["metadata"]["uid"] != sa["metadata"]["uid"] else None

    await eventually(new_sa, 10, "default SA recreated")
    await eventually(lambda: published(api, "team-a"), 10, "root CA recreated")


async def test_edited_ca_configmap_is_restored(api: ApiClient) -> None:
    await api.create(NAMESPACES, {"metadata": {"name": "team-b"}})
    cm = await eventually(lambda: published(api, "team-b"), 10, "root CA in team-b")
    cm["data"] = {"ca.crt": "evil", "extra": "x"}
    await api.replace(CONFIGMAPS, cm)
    restored = await eventually(lambda: published(api, "team-b"), 10, "root CA restored")
    assert restored["data"] == {"ca.crt": CA}
    # Other ServiceAccounts are none of the controller's business: a custom one stays as it is.
    await api.create(SERVICEACCOUNTS, {"metadata": {"name": "robot", "namespace": "team-b"}})
    await api.delete(SERVICEACCOUNTS, "robot", "team-b")
    await eventually(lambda: get(api, SERVICEACCOUNTS, "default", "team-b"), 10, "default SA in team-b")
    assert await get(api, SERVICEACCOUNTS, "robot", "team-b") is None


async def test_terminating_namespace_is_left_alone(inproc_api: Any) -> None:
    client: ApiClient = inproc_api.client
    # A finalizer keeps it Terminating (as a slow namespace cleanup would).
    await client.create(NAMESPACES, {"metadata": {"name": "leaving", "finalizers": ["example.com/hold"]}})
    await client.delete(NAMESPACES, "leaving")
    assert (await client.get(NAMESPACES, "leaving"))["status"]["phase"] == "Terminating"
    async with running_controllers(client, ["serviceaccount", "rootcacert"], ControllerSettings(extra={"ca_pem": CA})):
        await client.create(NAMESPACES, {"metadata": {"name": "marker"}})
        await eventually(lambda: published(client, "marker"), 10, "root CA in marker")
        assert await get(client, SERVICEACCOUNTS, "default", "leaving") is None
        assert await get(client, CONFIGMAPS, ROOT_CA_CONFIGMAP, "leaving") is None
