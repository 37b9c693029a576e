"""What the runtimes that run real images (``runc``, ``docker``) share.

* the node's image store behind the CRI image calls (:class:`StoreBackedImages`);
* the pod-spec rules both apply the same way: the process args (:func:`resolve_args`), a
  ContainerConfig for callers that pass none (:func:`config_from_spec`), the capability set
  (:func:`container_capabilities`), and the pod's ``/etc/hosts`` and ``/etc/resolv.conf``
  (:func:`write_pod_dns_files`);
* reading the small JSON state files each keeps under its data dir (:func:`read_json_object`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from kubelite.agent import cgroups
from kubelite.agent.images import Image, ImageStore
from kubelite.agent.netns import PodNetworkInfo
from kubelite.agent.runtime import ContainerConfig, ImagePullError, Mount, RuntimeFailure, RuntimeOptions

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "ImageSource",
    "StoreBackedImages",
    "config_from_spec",
    "container_capabilities",
    "hosts_file",
    "pod_hostname",
    "read_json_object",
    "resolv_conf",
    "resolve_args",
    "write_pod_dns_files",
]

Obj = dict[str, Any]

# Docker's default capability set (what Kubernetes pods get unless securityContext says otherwise).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
ALL_CAPABILITIES = (
    *DEFAULT_CAPABILITIES, "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE",
    "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


# --- images -------------------------------------------------------------------------------------


class ImageSource(Protocol):
    async def ensure(self, ref: str, pull_policy: str, registries: Sequence[str] = ()) -> Image:
        """The image ``ref``, pulled/imported first unless present (``Never``: only if present)."""
        ...


S = TypeVar("S", bound=ImageSource)


class StoreBackedImages(Generic[S]):
    """``image_present``/``pull_image`` over the node's image store (``<data dir>/images``).

    The store is opened lazily (a runtime built only to re-adopt containers never touches it), and
    its errors become the CRI's ImagePullError, keeping their ``reason`` (ErrImageNeverPull, …).
    """

    options: RuntimeOptions
    _images: S | None

    def _images_root(self) -> Path:
        raise NotImplementedError

    def _image_source(self) -> S:
        if self._images is None:
            self._images = ImageStore(self._images_root())  # type: ignore[assignment]
        assert self._images is not None
        return self._images

    async def _image(self, ref: str, policy: str) -> Image:
        try:
            return await self._image_source().ensure(ref, policy, self.options.registries)
        except RuntimeFailure:
            raise
        except Exception as e:  # the store's own errors become the CRI's
            raise ImagePullError(f"image {ref!r}: {e}") from e

    async def image_present(self, ref: str) -> bool:
        try:
            await self._image(ref, "Never")
        except ImagePullError:
            return False
        return True

    async def pull_image(self, ref: str) -> str:
        return (await self._image(ref, "Always")).id


# --- the container's process --------------------------------------------------------------------


def resolve_args(config: ContainerConfig, image_config: Mapping[str, Any]) -> list[str]:
    """Kubernetes' rule: ``command`` replaces the image Entrypoint (and drops its Cmd); ``args``
    replace the Cmd."""
    if config.command:
        return [*config.command, *config.args]
    return [*(image_config.get("Entrypoint") or []), *(config.args or image_config.get("Cmd") or [])]


def config_from_spec(container: Obj, env: Mapping[str, str], mounts: Sequence[Mount]) -> ContainerConfig:
    """A ContainerConfig from the raw spec container, for callers that pass none."""
    sc = container.get("securityContext") or {}
    res = cgroups.resource_values(container)
    return ContainerConfig(
        name=str(container.get("name", "")), image=str(container.get("image", "")),
        command=list(container.get("command") or []), args=list(container.get("args") or []),
        env=dict(env), mounts=list(mounts), working_dir=str(container.get("workingDir") or ""),
        cpu_request_millis=res["cpu_request_millis"], cpu_limit_millis=res["cpu_limit_millis"],
        memory_request_bytes=res["memory_request_bytes"], memory_limit_bytes=res["memory_limit_bytes"],
        run_as_user=sc.get("runAsUser"), run_as_group=sc.get("runAsGroup"),
        privileged=bool(sc.get("privileged")), read_only_root_filesystem=bool(sc.get("readOnlyRootFilesystem")),
    )


def container_capabilities(container: Obj, privileged: bool) -> list[str]:
    """The container's capability set, sorted: every one when privileged, else the default set with
    ``securityContext.capabilities`` ``add``/``drop`` applied (names with or without ``CAP_``; ``ALL``
    in ``add`` grants every one, in ``drop`` keeps only what ``add`` names)."""
    if privileged:
        return list(ALL_CAPABILITIES)
    sc = container.get("securityContext") or {}
    caps = (sc.get("capabilities") or {}) if isinstance(sc.get("capabilities"), dict) else {}
    norm = [("CAP_" + c.upper().removeprefix("CAP_")) for c in caps.get("add") or []]
    drop = {("CAP_" + c.upper().removeprefix("CAP_")) for c in caps.get("drop") or []}
    chosen = list(ALL_CAPABILITIES) if "CAP_ALL" in norm else [*DEFAULT_CAPABILITIES, *norm]
    if "CAP_ALL" in drop:
        chosen = [c for c in norm if c != "CAP_ALL"]
    return sorted({c for c in chosen if c not in drop and c != "CAP_ALL"})


# --- the pod's /etc files -----------------------------------------------------------------------


def pod_hostname(pod: Obj) -> str:
    """The pod's hostname: ``spec.hostname``, else its name, cut to a DNS label's 63 characters."""
    spec = pod.get("spec") or {}
    return str(spec.get("hostname") or (pod.get("metadata") or {}).get("name") or "pod")[:63]


def hosts_file(pod_ip: str, hostname: str) -> str:
    """The pod's ``/etc/hosts``: loopback names, and the pod's hostname on its IP."""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{hostname}\n"


def resolv_conf(spec: Obj, namespace: str = "", cluster_dns: str | None = None,
                cluster_domain: str | None = None) -> str:
    """The pod's ``/etc/resolv.conf``. dnsPolicy None: only dnsConfig; ClusterFirst (the default) with
    cluster DNS on: the cluster DNS and its search path; otherwise the host's resolver; dnsConfig is
    added in every case."""
    cfg = spec.get("dnsConfig") or {}
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if cluster_dns and cluster_domain and policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers.append(cluster_dns)
        searches += [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        options.append("ndots:5")
    elif policy != "None":
        with contextlib.suppress(OSError):
            for line in Path("/etc/resolv.conf").read_text().splitlines():
                fields = line.split()
                if not fields:
                    continue
                if fields[0] == "nameserver" and len(fields) > 1:
                    servers.append(fields[1])
                elif fields[0] == "search":
                    searches.extend(fields[1:])
                elif fields[0] == "options":
                    options.extend(fields[1:])
    servers += [str(s) for s in cfg.get("nameservers") or []]
    searches += [str(s) for s in cfg.get("searches") or []]
    for o in cfg.get("options") or []:
        options.append(f"{o['name']}:{o['value']}" if o.get("value") is not None else str(o.get("name")))
    lines = [f"nameserver {s}" for s in dict.fromkeys(servers)]
    if searches:
        lines.append("search " + " ".join(dict.fromkeys(searches)))
    if options:
        lines.append("options " + " ".join(dict.fromkeys(options)))
    return "\n".join(lines) + "\n"


def write_pod_dns_files(
    directory: Path, spec: Obj, namespace: str, hostname: str, net: PodNetworkInfo, options: RuntimeOptions
) -> None:
    """Write the sandbox's ``hosts`` and ``resolv.conf`` into ``directory`` (bind-mounted into every
    container of the pod). With a cluster domain set, the cluster DNS defaults to the node bridge's
    address (where the agent serves DNS)."""
    (directory / "hosts").write_text(hosts_file(net.ip, hostname))
    cluster_dns = (options.cluster_dns or net.gateway) if options.cluster_domain else None
    (directory / "resolv.conf").write_text(resolv_conf(spec, namespace, cluster_dns, options.cluster_domain))


# --- state files --------------------------------------------------------------------------------


def read_json_object(path: Path) -> Obj | None:
    """The JSON object stored in ``path``; None when it is missing, unreadable, not JSON or not an
    object (a state file half-written by a crash reads as absent)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
