"""Build and run a compute node: the gRPC server, its shell pools and the health service."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from common.pb import compute_pb2_grpc as pb_grpc
from common.pb import pools_pb2_grpc, realtime_pb2_grpc, sessions_pb2_grpc
from computenode.cgroups import Cgroups
from computenode.dedicated_pools import DedicatedPools
from computenode.interceptors import ErrorInterceptor, SecretInterceptor
from computenode.limits import ShellLimits, check_shell_interpreter, seal_data_dir, shell_limits
from computenode.pools import PoolConfig, ShellPool
from computenode.pools_servicer import PoolsServicer
from computenode.realtime import RealtimeModels
from computenode.realtime_servicer import RealtimeServicer
from computenode.runtimes import r_unavailable_reason
from computenode.servicer import ComputeServicer
from computenode.services import ServiceRegistry
from computenode.sessions import SessionRegistry
from computenode.sessions_servicer import SessionsServicer
from computenode.settings import ComputeNodeSettings
from computenode.shells.process import PYTHON, R, ShellSpec

logger = logging.getLogger(__name__)
SERVICE_NAME = "o16n.compute.v1.Compute"


@dataclass
class ComputeNode:
    server: grpc.aio.Server
    port: int
    pools: dict[str, ShellPool]
    health: health_aio.HealthServicer
    realtime: RealtimeModels | None = None
    dedicated: DedicatedPools | None = None

    cgroups: Cgroups | None = None

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.realtime is not None:
            await self.realtime.close()
        await asyncio.gather(*(pool.close() for pool in self.pools.values()), return_exceptions=True)
        if self.dedicated is not None:
            await self.dedicated.close()
        if self.cgroups is not None:
            self.cgroups.close()


def _pool_config(settings: ComputeNodeSettings, runtime: str, limits: ShellLimits) -> PoolConfig:
    return PoolConfig(
        initial_size=getattr(settings, f"{runtime}_pool_initial_size"),
        max_size=getattr(settings, f"{runtime}_pool_max_size"),
        acquire_timeout=settings.shell_acquire_timeout,
        queue_limit=settings.shell_queue_limit,
        max_uses=settings.shell_max_uses,
        start_timeout=settings.shell_start_timeout,
        memory_ceiling=settings.shell_memory_ceiling_mb << 20,
        limits=limits,
    )


def _realtime_models(
    settings: ComputeNodeSettings, shells_root: Path, python: ShellSpec, limits: ShellLimits
) -> RealtimeModels:
    """Realtime models; pickled ones are scored in their own small Python pool, started on demand."""
    config = dataclasses.replace(
        _pool_config(settings, "python", limits), initial_size=0, max_size=settings.realtime_pickle_pool_max_size
    )
    pickle_pool = ShellPool(python, config, shells_root)  # the Python shells' limits apply
    return RealtimeModels(
        root=(settings.data_dir / "realtime").resolve(),
        pickle_pool=pickle_pool,
        execution_timeout=settings.execution_timeout,
        batch_max_size=settings.realtime_batch_max_size,
        batch_max_wait=settings.realtime_batch_max_wait,
        threads=settings.realtime_threads,
    )


def _server_credentials(settings: ComputeNodeSettings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if not settings.compute_tls_cert:
        return None
    pair = (Path(settings.compute_tls_key).read_bytes(), Path(settings.compute_tls_cert).read_bytes())
    client_ca = Path(settings.compute_tls_client_ca).read_bytes() if settings.compute_tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


async def start_compute_node(settings: ComputeNodeSettings) -> ComputeNode:
    """Start pools and serve gRPC; returns once the port is bound (shells warm up in the background)."""
    shells_root = (settings.data_dir / "shells").resolve()
    shells_root.mkdir(parents=True, exist_ok=True)
    limits = shell_limits(settings)
    if limits.other_user is not None or settings.shell_python:
        await check_shell_interpreter(settings.shell_python or sys.executable, limits.other_user, shells_root / "check")
    python = dataclasses.replace(PYTHON, python=settings.shell_python)
    specs: dict[str, ShellSpec] = {"python": python}
    unavailable: dict[str, str] = {}
    if settings.r_enabled:
        reason = await r_unavailable_reason(settings.shell_python, limits.other_user)
        if reason:
            unavailable["r"] = reason
            logger.warning("%s; serving Python only", reason)
        else:
            specs["r"] = dataclasses.replace(R, python=settings.shell_python)
    else:
        unavailable["r"] = "R is disabled by O16N_R_ENABLED"
    cgroups = Cgroups.setup(settings.shell_cgroup, settings.shell_pids_limit)
    limits = dataclasses.replace(limits, cgroups=cgroups)
    pools = {name: ShellPool(spec, _pool_config(settings, name, limits), shells_root) for name, spec in specs.items()}

    interceptors: list[grpc.aio.ServerInterceptor] = [ErrorInterceptor()]
    if settings.compute_secret:
        interceptors.insert(0, SecretInterceptor(settings.compute_secret))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", 1 << 30),
            ("grpc.max_send_message_length", 1 << 30),
            ("grpc.so_reuseport", 0),
        ],
    )
    address = f"{settings.compute_host}:{settings.compute_port}"
    credentials = _server_credentials(settings)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the compute node to {settings.compute_host}:{settings.compute_port}")
    node_id = settings.node_id or f"{settings.compute_host}:{port}"
    sessions = SessionRegistry(
        pools,
        root=(settings.data_dir / "sessions").resolve(),
        cache_dir=(settings.data_dir / "snapshot-cache").resolve(),
        cache_bytes=settings.snapshot_cache_bytes,
    )
    dedicated = DedicatedPools(
        specs,
        {name: _pool_config(settings, name, limits) for name in specs},
        shells_root,
        load_timeout=settings.execution_timeout,
        snapshots=sessions.cache,
    )
    registry = ServiceRegistry(
        pools,
        execution_timeout=settings.execution_timeout,
        dedicated=dedicated,
        snapshots=sessions.cache,
        run_budget=settings.shell_run_budget_ms / 1000,
    )
    realtime = _realtime_models(settings, shells_root, python, limits)
    sessions.start()
    servicer = ComputeServicer(
        node_id=node_id,
        pools=pools,
        unavailable=unavailable,
        registry=registry,
        log_path=str(Path(settings.data_dir).resolve() / "logs"),
        realtime=realtime,
        sessions=sessions,
        reply_hold=settings.reply_batch_hold_ms / 1000,
    )
    pb_grpc.add_ComputeServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    realtime_pb2_grpc.add_RealtimeServicer_to_server(RealtimeServicer(realtime), server)  # type: ignore[no-untyped-call]
    sessions_pb2_grpc.add_SessionsServicer_to_server(SessionsServicer(sessions), server)  # type: ignore[no-untyped-call]
    pools_pb2_grpc.add_PoolsServicer_to_server(PoolsServicer(dedicated), server)  # type: ignore[no-untyped-call]
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for pool in pools.values():
        await pool.start()
    await realtime.start()
    if limits.other_user is not None:
        seal_data_dir(settings.data_dir.resolve())
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    logger.info("compute node %s serving on port %d (runtimes: %s)", node_id, port, ", ".join(pools))
    return ComputeNode(
        server=server,
        port=port,
        pools=pools,
        health=health_servicer,
        realtime=realtime,
        dedicated=dedicated,
        cgroups=cgroups,
    )
