"""create_app(settings): compose the web node. Resources live in cleanup_ctx, handlers in routes/."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from webnode.auth.context import auth_ctx
from webnode.auth.logins import ADMIN
from webnode.auth.middleware import audit_middleware
from webnode.auth.passwords import generate_password, hash_password, verify_password
from webnode.auth.roles import OWNER
from webnode.compute.channels import ChannelFactory
from webnode.compute.cluster import ComputeCluster
from webnode.coord.base import Coordinator
from webnode.coord.memory import MemoryCoordinator
from webnode.coord.redis import RedisCoordinator
from webnode.keys import cluster_key, coordinator_key, db_key, services_key, settings_key
from webnode.middleware import auth_middleware, error_middleware, request_id_middleware
from webnode.routes import batch as batch_routes
from webnode.routes import computenodes, consume, login, realtime, services, status
from webnode.routes import pools as pools_routes
from webnode.routes import sessions as sessions_routes
from webnode.routes import snapshots as snapshots_routes
from webnode.routes import swagger as swagger_routes
from webnode.service_cache import ServiceCache
from webnode.settings import WebNodeSettings
from webnode.store.config import ConfigStore
from webnode.store.db import open_database
from webnode.store.migrations import migrate
from webnode.store.services import ServiceStore
from webnode.store.snapshots import SnapshotStore
from webnode.store.users import UserStore

logger = logging.getLogger(__name__)


async def ensure_admin(users: UserStore, settings: WebNodeSettings) -> str | None:
    """Create the local admin on the first start; returns a generated password to print once."""
    existing = await users.get(ADMIN)
    if existing is None:
        generated = None if settings.admin_password else generate_password()
        password = settings.admin_password or generated
        assert password is not None
        try:
            await users.create(ADMIN, await hash_password(password, settings.bcrypt_rounds), OWNER)
        except Exception:
            return None  # another web node created it first
        return generated
    wanted, rounds = settings.admin_password, settings.bcrypt_rounds
    if wanted and not await verify_password(wanted, existing.password_hash, rounds):
        await users.set_password(ADMIN, await hash_password(settings.admin_password, settings.bcrypt_rounds))
    return None


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    db = await open_database(settings.database_url, settings.data_dir)
    await migrate(db)
    app[db_key] = db
    generated = await ensure_admin(UserStore(db), settings)
    if generated:
        banner = f"The local admin password is: {generated}  (shown once; set O16N_ADMIN_PASSWORD to choose one)"
        print(banner, flush=True)
        logger.warning("generated a password for the local admin user (printed on stdout)")
    yield
    await db.close()


async def _coordination_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    coordinator: Coordinator = (
        RedisCoordinator(settings.redis_url, settings.redis_prefix) if settings.redis_url else MemoryCoordinator()
    )
    app[coordinator_key] = coordinator
    await coordinator.start()
    yield
    await coordinator.close()


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    app[services_key] = ServiceCache(ServiceStore(app[db_key]), app[coordinator_key])
    yield


async def _cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    cluster = ComputeCluster(
        ConfigStore(app[db_key]),
        app[coordinator_key],
        health_interval=settings.health_interval,
        streams=settings.compute_streams,
        reload_interval=settings.compute_nodes_reload_interval,
        channels=ChannelFactory(
            secret=settings.compute_secret,
            tls_ca=settings.compute_tls_ca,
            client_cert=settings.compute_tls_client_cert,
            client_key=settings.compute_tls_client_key,
            server_name=settings.compute_tls_server_name,
        ),
        snapshots=SnapshotStore(app[db_key]),
    )
    await cluster.start(settings.compute_nodes)
    app[cluster_key] = cluster
    yield
    await cluster.close()


def create_app(settings: WebNodeSettings) -> web.Application:
    app = web.Application(
        middlewares=[request_id_middleware, audit_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_body_size,
    )
    app[settings_key] = settings
    app.cleanup_ctx.extend([_store_ctx, _coordination_ctx, auth_ctx, _services_ctx, _cluster_ctx])
    app.cleanup_ctx.append(pools_routes.pools_ctx)
    app.router.add_routes(pools_routes.routes)
    app.cleanup_ctx.append(realtime.realtime_ctx)
    app.cleanup_ctx.append(sessions_routes.sessions_ctx)
    for module in (login, services, consume, status, realtime):
        app.router.add_routes(module.routes)
    app.router.add_routes(sessions_routes.routes)
    app.router.add_routes(snapshots_routes.routes)
    app.router.add_routes(computenodes.routes)
    app.router.add_routes(swagger_routes.routes)
    app.cleanup_ctx.append(batch_routes.batch_ctx)
    app.router.add_routes(batch_routes.routes)
    return app
