"""Discovery documents: /api, /apis, /api/v1, /apis/{group}/{version} (what kubectl reads first)."""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import GROUP_VERSIONS, RESOURCES, ResourceType

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "binding": ["create"],
    "log": ["get"],
    "exec": ["create"],  # POST only: no SPDY/WebSocket upgrade (kubelite.apiserver.proxy)
    "token": ["create"],  # TokenRequest (kubelite.auth.serviceaccount)
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, version in GROUP_VERSIONS:
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _entry(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for rt in served:
        resources.append(_entry(rt))
        for sub in rt.subresources:
            item: dict[str, Any] = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": _SUBRESOURCE_VERBS[sub],
            }
            if sub == "scale":
                item.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            elif sub == "binding":
                item["kind"] = "Binding"
            elif sub == "log":
                item["kind"] = "Pod"
            elif sub == "token":
                item.update({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"})
            resources.append(item)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
