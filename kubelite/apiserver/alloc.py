"""ClusterIP and NodePort allocation, safe under concurrency and across several API servers.

Each allocated value is a reservation key created with create-if-absent in the same store as the
objects, so two requests (or two servers on one etcd) can never get the same address: the
store's compare-and-swap is the lock. A random start spreads concurrent allocators apart.
"""

from __future__ import annotations

import ipaddress
import random

from kubelite.storage import KeyExistsError, KeyNotFoundError, Store


class RangeFullError(Exception):
    pass


class AlreadyAllocatedError(Exception):
    pass


class OutOfRangeError(ValueError):
    pass


class _Allocator:
    prefix: str

    def __init__(self, store: Store, size: int) -> None:
        self.store = store
        self.size = size

    def _value(self, offset: int) -> str:
        raise NotImplementedError

    def _offset(self, value: str) -> int:
        raise NotImplementedError

    async def allocate(self, owner: str) -> str:
        start = random.randrange(self.size)
        for i in range(self.size):
            value = self._value((start + i) % self.size)
            try:
                await self.store.create(self.prefix + value, owner.encode())
                return value
            except KeyExistsError:
                continue
        raise RangeFullError(f"range is full ({self.size} values)")

    async def claim(self, value: str, owner: str) -> None:
        """Reserve a specific value the user asked for."""
        self._offset(value)  # raises OutOfRangeError
        try:
            await self.store.create(self.prefix + value, owner.encode())
        except KeyExistsError:
            kv = await self.store.get(self.prefix + value)
            if kv is not None and kv.value.decode() == owner:
                return
            raise AlreadyAllocatedError(f"provided {value} is already allocated") from None

    async def release(self, value: str) -> None:
        try:
            await self.store.delete(self.prefix + value)
        except KeyNotFoundError:
            pass


class ServiceIPAllocator(_Allocator):
    prefix = "/registry/ranges/serviceips/"

    def __init__(self, store: Store, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        # Skip the network address and the first host: .1 is the `kubernetes` Service's, by convention.
        self.first = 2
        size = self.network.num_addresses - self.first - (1 if self.network.version == 4 else 0)
        if size <= 0:
            raise ValueError(f"service CIDR {cidr} is too small")
        super().__init__(store, size)

    @property
    def kubernetes_ip(self) -> str:
        return str(self.network.network_address + 1)

    def contains(self, value: str) -> bool:
        try:
            return ipaddress.ip_address(value) in self.network
        except ValueError:
            return False

    def _value(self, offset: int) -> str:
        return str(self.network.network_address + self.first + offset)

    def _offset(self, value: str) -> int:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise OutOfRangeError(f"{value!r} is not a valid IP address") from None
        if ip not in self.network or ip in (self.network.network_address, self.network.broadcast_address):
            raise OutOfRangeError(f"{value} is not in the valid range {self.network}")
        return int(ip) - int(self.network.network_address) - self.first


class NodePortAllocator(_Allocator):
    prefix = "/registry/ranges/nodeports/"

    def __init__(self, store: Store, low: int, high: int) -> None:
        self.low, self.high = low, high
        super().__init__(store, high - low + 1)

    def _value(self, offset: int) -> str:
        return str(self.low + offset)

    def _offset(self, value: str) -> int:
        port = int(value)
        if not self.low <= port <= self.high:
            raise OutOfRangeError(f"{port} is not in the valid range {self.low}-{self.high}")
        return port - self.low
