"""Service definitions cached in each web node, invalidated across web nodes on change.

The consumption hot path reads definitions from here, never from the database after the
first request. Publish/patch/delete on any web node broadcasts `name/version` on the
`services` channel; every web node drops that entry (or everything on RESYNC).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from common.pb import compute_pb2 as pb
from webnode.coord.base import RESYNC, Coordinator
from webnode.store.services import Service, ServiceStore

CHANNEL = "services"
_RUNTIMES = {"Python": pb.PYTHON, "R": pb.R}


@dataclass(frozen=True)
class CachedService:
    service: Service
    definition: pb.ServiceDefinition


def to_definition(service: Service) -> pb.ServiceDefinition:
    """What compute nodes run. A service's own snapshot travels by id: the cluster puts its zip in
    a node's snapshot cache before loading the service there, and each shell restores it before initCode."""
    return pb.ServiceDefinition(
        key=service.key,
        runtime=_RUNTIMES.get(service.runtime, pb.RUNTIME_UNSPECIFIED),
        code=service.code,
        init_code=service.init_code,
        inputs=[pb.Parameter(name=p.name, type=p.type) for p in service.inputs],
        outputs=[pb.Parameter(name=p.name, type=p.type) for p in service.outputs],
        output_file_names=list(service.output_files),
        snapshot_id=(service.snapshot_id or "") if service.runtime in ("Python", "R") else "",
    )


class ServiceCache:
    def __init__(self, store: ServiceStore, coordinator: Coordinator) -> None:
        self.store = store
        self._coordinator = coordinator
        self._entries: dict[tuple[str, str], CachedService] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[CachedService]] = {}
        # Bumped on every invalidation: a read that raced with one must not cache what it read.
        self._generation = 0
        coordinator.subscribe(CHANNEL, self._on_message)

    def _on_message(self, message: str) -> None:
        self._generation += 1
        if message == RESYNC:
            self._entries.clear()
            self._loading.clear()
            return
        name, _, version = message.partition("/")
        self._entries.pop((name, version), None)
        self._loading.pop((name, version), None)  # later requests must not join a read begun before

    async def get(self, name: str, version: str) -> CachedService:
        key = (name, version)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        # One read of the store per key at a time, however many requests miss together.
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._load(name, version))
            loading.add_done_callback(lambda done: self._loading.pop(key) if self._loading.get(key) is done else None)
        return await asyncio.shield(loading)

    async def _load(self, name: str, version: str) -> CachedService:
        generation = self._generation
        service = await self.store.get(name, version)
        entry = CachedService(service, to_definition(service))
        if generation == self._generation:
            self._entries[(name, version)] = entry
        return entry

    async def changed(self, name: str, version: str) -> None:
        """Call after a publish, patch or delete is stored."""
        self._generation += 1
        self._entries.pop((name, version), None)
        self._loading.pop((name, version), None)
        await self._coordinator.publish(CHANNEL, f"{name}/{version}")
