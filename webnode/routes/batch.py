"""Batch consumption (semantics §3): /api/{name}/{version}/batch[/{executionId}[/{index}/files[/{fileName}]]]."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from common.errors import InvalidInput, NotFound
from webnode.auth.roles import Action, allowed, require
from webnode.batch import BatchRunner
from webnode.keys import cluster_key, coordinator_key, db_key, principal, services_key, settings_key
from webnode.middleware import parse_json
from webnode.routes import realtime
from webnode.routes.consume import check_inputs
from webnode.store.batches import COMPLETE, IN_PROGRESS, PENDING, BatchExecution, BatchStore

routes = web.RouteTableDef()
batch_key = web.AppKey("batch", BatchRunner)
_BASE = "/api/{name}/{version}/batch"
DEFAULT_PARALLEL_COUNT = 10


async def batch_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    runner = BatchRunner(
        BatchStore(app[db_key]),
        app[services_key],
        app[cluster_key],
        app[coordinator_key],
        lease=settings.batch_lease_seconds,
        timeout=settings.compute_timeout,
        realtime=realtime.scorer(app),
    )
    app[batch_key] = runner
    await runner.start()
    yield
    await runner.close()


def _parallel_count(request: web.Request) -> int:
    raw = request.query.get("parallelCount", "")
    if not raw:
        return DEFAULT_PARALLEL_COUNT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"parallelCount must be a positive integer, not {raw!r}", field="parallelCount") from None
    if value < 1:
        raise InvalidInput("parallelCount must be at least 1", field="parallelCount")
    return min(value, request.app[settings_key].batch_max_parallel_count)


def _show_partial(request: web.Request) -> bool:
    # The swagger says showPartialResults; Microsoft's client sends showPartialResult.
    raw = request.query.get("showPartialResults", request.query.get("showPartialResult", "true"))
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise InvalidInput(f"showPartialResults must be true or false, not {raw!r}", field="showPartialResults")
    return value == "true"


def _records(raw: bytes, request: web.Request, entry: Any) -> list[str]:
    data = parse_json(raw)
    if not isinstance(data, list) or not data:
        raise InvalidInput("the request body must be a non-empty JSON array of input objects, one per record")
    limit = request.app[settings_key].batch_max_records
    if len(data) > limit:
        raise InvalidInput(f"a batch holds at most {limit} records, not {len(data)}")
    records = []
    for index, record in enumerate(data):
        try:
            check_inputs(entry.service, record)
        except InvalidInput as exc:
            raise InvalidInput(f"record {index}: {exc.message}", field=exc.field) from None
        records.append(orjson.dumps(record).decode())
    return records


async def _execution(request: web.Request) -> BatchExecution:
    """The execution named in the path, if the caller may see it (others' are 404, like missing ones)."""
    name, version = request.match_info["name"], request.match_info["version"]
    await request.app[services_key].get(name, version)
    execution = await request.app[batch_key].store.get(request.match_info["executionId"], name, version)
    who = principal(request)
    if execution.owner != who.username and not allowed(who, Action.MANAGE_ANY):
        raise NotFound(f"batch execution '{execution.id}' not found")
    return execution


def _index(request: web.Request) -> int:
    raw = request.match_info["index"]
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"index must be an integer, not {raw!r}", field="index") from None


async def _files(request: web.Request) -> dict[str, str | None]:
    execution = await _execution(request)
    item = await request.app[batch_key].store.item(execution.id, _index(request))
    if item.result is None:
        return {}
    files = orjson.loads(item.result).get("outputFiles") or {}
    assert isinstance(files, dict)
    return files


@routes.post(_BASE)
async def start_batch(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.CONSUME)
    name, version = request.match_info["name"], request.match_info["version"]
    entry = await request.app[services_key].get(name, version)
    parallel_count = _parallel_count(request)
    records = _records(await request.read(), request, entry)
    runner = request.app[batch_key]
    execution = BatchExecution(
        id=str(uuid.uuid4()),
        name=name,
        version=version,
        owner=who.username,
        state=PENDING,
        total=len(records),
        parallel_count=parallel_count,
        created_at=time.time(),
        lease_owner=runner.node,
    )
    await runner.store.create(execution, records, runner.lease_until)
    runner.run(execution)
    # Swagger names the key batchExecutionId; Microsoft's client reads BatchExecutionId.
    return web.json_response({"batchExecutionId": execution.id, "BatchExecutionId": execution.id}, status=202)


@routes.get(_BASE)
async def list_batches(request: web.Request) -> web.Response:
    who = principal(request)
    require(who, Action.CONSUME)
    name, version = request.match_info["name"], request.match_info["version"]
    await request.app[services_key].get(name, version)
    owner = None if allowed(who, Action.MANAGE_ANY) else who.username
    executions = await request.app[batch_key].store.of_service(name, version, owner)
    return web.json_response([e.id for e in executions])


@routes.get(_BASE + "/{executionId}")
async def batch_status(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    show_partial = _show_partial(request)
    execution = await _execution(request)
    store = request.app[batch_key].store
    # The state is read before the records: Complete is stored only once every record has its result,
    # so a Complete execution never shows a missing result; records all done mean Complete (or about to be).
    items = await store.items(execution.id)
    completed = sum(1 for item in items if item.result is not None)
    state = COMPLETE if completed == execution.total and execution.state in (PENDING, IN_PROGRESS) else execution.state
    results: list[Any] = []
    if show_partial or completed == execution.total:
        # One entry per record, by index; records still running are null.
        results = [orjson.Fragment(item.result) if item.result is not None else None for item in items]
    body = {
        "state": state,
        "totalItemCount": execution.total,
        "completedItemCount": completed,
        "batchExecutionResults": results,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


@routes.delete(_BASE + "/{executionId}")
async def cancel_batch(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    execution = await _execution(request)
    runner = request.app[batch_key]
    await runner.cancel(execution.id)
    await runner.store.delete(execution.id)
    return web.json_response([execution.id])


@routes.get(_BASE + "/{executionId}/{index}/files")
async def batch_files(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    files = await _files(request)
    return web.json_response([name for name, content in files.items() if content is not None])


@routes.get(_BASE + "/{executionId}/{index}/files/{fileName}")
async def batch_file(request: web.Request) -> web.Response:
    require(principal(request), Action.CONSUME)
    files = await _files(request)
    file_name = request.match_info["fileName"]
    content = files.get(file_name)
    if content is None:
        raise NotFound(f"file '{file_name}' not found in this record's output files")
    return web.Response(body=base64.b64decode(content), content_type="application/octet-stream")
