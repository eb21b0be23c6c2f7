"""Typed application keys: every app-scoped resource of a web node."""

from __future__ import annotations

from aiohttp import web

from webnode.auth.tokens import Principal, TokenService
from webnode.compute.cluster import ComputeCluster
from webnode.coord.base import Coordinator
from webnode.service_cache import ServiceCache
from webnode.settings import WebNodeSettings
from webnode.store.db import Database

settings_key = web.AppKey("settings", WebNodeSettings)
db_key = web.AppKey("db", Database)
coordinator_key = web.AppKey("coordinator", Coordinator)
tokens_key = web.AppKey("tokens", TokenService)
cluster_key = web.AppKey("cluster", ComputeCluster)
services_key = web.AppKey("services", ServiceCache)

# Set on each authenticated request by the auth middleware.
PRINCIPAL = "o16n.principal"


def principal(request: web.Request) -> Principal:
    value = request[PRINCIPAL]
    assert isinstance(value, Principal)
    return value
