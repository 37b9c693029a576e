"""Cluster DNS, served by the agent on every node from its Service and Endpoints caches.

Answers (A records, as Kubernetes' DNS spec says):

* ``<svc>.<ns>.svc.<domain>`` -> the Service's ClusterIP; for a headless Service (``clusterIP: None``)
  the ready pod IPs from its Endpoints;
* ``<hostname>.<svc>.<ns>.svc.<domain>`` -> the pod whose Endpoints address has that hostname
  (StatefulSet pods: ``hostname`` = pod name, ``subdomain`` = the governing Service);
* anything else under the cluster domain: NXDOMAIN. Names outside it also get NXDOMAIN: there is no
  upstream forwarding, because nodes here are offline (a real deployment would forward to the
  node's resolver).

The wire format is dnslib's, not ours. It listens on UDP and TCP (the resolver retries over TCP
when an answer is truncated) on the node's DNS address, by default the bridge's gateway IP,
which every pod reaches through its default route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any, cast

from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord

from kubelite.client import Informer

__all__ = ["ClusterDns", "DnsResolver"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
TTL = 5  # seconds: short, so a scaled or recreated Service is seen quickly


class DnsResolver:
    """Name -> addresses from the Service and Endpoints informers (pure lookups, no I/O)."""

    def __init__(self, services: Informer, endpoints: Informer, domain: str = "cluster.local") -> None:
        self.services = services
        self.endpoints = endpoints
        self.domain = domain.strip(".").lower()

    def lookup(self, qname: str) -> list[str] | None:
        """The A records of ``qname``; None when the name does not exist (NXDOMAIN)."""
        name = qname.rstrip(".").lower()
        suffix = f".svc.{self.domain}"
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) == 2:
            svc_name, ns = labels
            host = None
        elif len(labels) == 3:
            host, svc_name, ns = labels
        else:
            return None
        svc = self.services.get(ns, svc_name)
        if svc is None:
            return None
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        eps = self.endpoints.get(ns, svc_name) or {}
        addresses = [a for s in eps.get("subsets") or [] for a in s.get("addresses") or [] if a.get("ip")]
        if host is None:
            if cluster_ip and cluster_ip != "None":
                return [str(cluster_ip)]
            return sorted({str(a["ip"]) for a in addresses})
        found = sorted({str(a["ip"]) for a in addresses if str(a.get("hostname", "")).lower() == host})
        return found or None

    def answer(self, data: bytes) -> bytes | None:
        """The reply packet to a query packet (None for garbage that is not worth answering)."""
        try:
            request = DNSRecord.parse(data)
        except (DNSError, struct.error, IndexError, ValueError):
            return None
        reply = request.reply()
        if request.header.opcode != 0 or not request.questions:
            reply.header.rcode = RCODE.NOTIMP
            return bytes(reply.pack())
        q = request.questions[0]
        ips = self.lookup(str(q.qname))
        if ips is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif q.qtype in (QTYPE.A, QTYPE.ANY):
            for ip in ips:
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        # An existing name asked for another type (AAAA): NOERROR with no answer (NODATA).
        return bytes(reply.pack())


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: DnsResolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.resolver.answer(data)
        if out is not None and self.transport is not None:
            if len(out) > 512:  # classic UDP limit: tell the client to ask again over TCP
                record = DNSRecord.parse(out)
                record.rr = []
                record.header.tc = 1
                out = bytes(record.pack())
            self.transport.sendto(out, addr)


class ClusterDns:
    """The UDP + TCP listeners on ``address:port``."""

    def __init__(self, resolver: DnsResolver, address: str, port: int = 53) -> None:
        self.resolver = resolver
        self.address = address
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self.resolver), local_addr=(self.address, self.port)
        )
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, self.address, self.port)
        log.info("cluster DNS on %s:%d (udp+tcp), domain %s", self.address, self.port, self.resolver.domain)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out = self.resolver.answer(await reader.readexactly(size))
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None
