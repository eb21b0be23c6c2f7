"""Realtime models on a compute node, cached by content hash, and the batching of their requests.

- ONNX models run in this process with onnxruntime (sessions built once, in an executor,
  when a service is published; runs go to a small thread pool, which onnxruntime lets run
  without the GIL, except those of a model whose calls take under INLINE_RUN_SECONDS,
  which run inline: the thread hop would cost more than the call).
- Pickled models are only ever unpickled and scored in a dedicated Python shell pool
  (computenode/pickle_models.py): unpickling runs code.
- Concurrent requests to one ONNX model are scored together: one worker per model takes
  every request queued while the previous call ran (up to `batch_max_size` rows), and, while
  it has fewer requests than the previous call scored, waits up to `batch_max_wait` for them.
  A lone request is scored at once.
- A model is keyed by the SHA-256 of its bytes: a patched service is a new key, and requests
  already holding the old model finish on it (atomic swap).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from common.errors import AppError, Internal, InvalidInput, NotFound, ServiceNotLoaded
from common.pb import compute_pb2 as pb
from common.pb import realtime_pb2 as rpb
from computenode import pickle_models
from computenode.onnx_models import OnnxModel
from computenode.pools import ShellPool
from computenode.services import ServiceRegistry, recent_mean

logger = logging.getLogger(__name__)
# A model call shorter than this (a moving average) is cheaper inline than on a thread, for
# batches of up to INLINE_ROWS rows: the event loop is held no longer than a request handler holds it.
INLINE_RUN_SECONDS = 50e-6
INLINE_ROWS = 64

SUPPORTED = (
    "supported model formats: ONNX (e.g. scikit-learn models converted with skl2onnx) and pickled "
    "scikit-learn-style models with a predict method (pickle protocol 2-5)"
)


def detect_format(content: bytes) -> str:
    """'onnx' or 'pickle' from the leading bytes; InvalidInput (listing the formats) otherwise."""
    if not content:
        raise InvalidInput(f"the model file is empty; {SUPPORTED}", field="model")
    if content.startswith(b"blob"):
        raise InvalidInput(
            f"rxSerializeModel models (RevoScale/MicrosoftML) are not supported; {SUPPORTED}", field="model"
        )
    if len(content) > 2 and content[0] == 0x80 and 2 <= content[1] <= 5:
        return "pickle"
    if content[0] == 0x08:  # ModelProto field 1 (ir_version), a varint
        return "onnx"
    raise InvalidInput(f"unrecognised model format; {SUPPORTED}", field="model")


@dataclass
class _Job:
    feed: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[tuple[list[Any], int]]


@dataclass
class OnnxEntry:
    """A loaded ONNX model and its batching queue."""

    model: OnnxModel
    executor: concurrent.futures.Executor
    max_rows: int
    max_wait: float
    queue: collections.deque[_Job] = field(default_factory=collections.deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None
    last_batch: int = 1
    requests: int = 0
    calls: int = 0
    batched_requests: int = 0
    recent_run: float | None = None  # seconds per model call, a moving average

    async def score(self, feed: dict[str, np.ndarray], rows: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.requests += 1
        if not self.model.batchable or self.max_rows <= 1:
            outputs = await self._call(feed, rows)
            self.calls += 1
            return self.model.columns(outputs, 0, rows)
        future: asyncio.Future[tuple[list[Any], int]] = loop.create_future()
        self.queue.append(_Job(feed, rows, future))
        self.arrived.set()
        if self.worker is None or self.worker.done():
            self.worker = loop.create_task(self._work())
        outputs, start = await future
        return self.model.columns(outputs, start, start + rows)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            batch = [self.queue.popleft()]
            rows = batch[0].rows
            # As many requests as the previous call scored are likely on their way: wait (briefly) for
            # them, never for more. After a lone request nothing waits.
            target = self.last_batch
            deadline = loop.time() + self.max_wait
            while rows < self.max_rows:
                if self.queue:
                    if rows + self.queue[0].rows > self.max_rows:
                        break
                    job = self.queue.popleft()
                    batch.append(job)
                    rows += job.rows
                    continue
                if len(batch) >= target:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self.arrived.clear()
                try:
                    await asyncio.wait_for(self.arrived.wait(), remaining)
                except TimeoutError:
                    break
            self.last_batch = len(batch)
            await self._run(batch)

    async def _call(self, feed: dict[str, np.ndarray], rows: int) -> list[Any]:
        """One model call. A model whose calls take less than INLINE_RUN_SECONDS runs inline for
        up to INLINE_ROWS rows: handing it to a thread and back costs more than the call."""
        if rows <= INLINE_ROWS and self.recent_run is not None and self.recent_run < INLINE_RUN_SECONDS:
            return self._timed_run(feed)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._timed_run, feed)

    def _timed_run(self, feed: dict[str, np.ndarray]) -> list[Any]:
        started = time.perf_counter()
        try:
            return self.model.run(feed)
        finally:
            elapsed = time.perf_counter() - started
            self.recent_run = recent_mean(self.recent_run, elapsed)

    async def _run(self, batch: list[_Job]) -> None:
        if len(batch) == 1:
            feed = batch[0].feed
        else:
            feed = {name: np.concatenate([job.feed[name] for job in batch]) for name in batch[0].feed}
        try:
            outputs = await self._call(feed, sum(job.rows for job in batch))
        except Exception as exc:
            if len(batch) > 1:  # one request spoiled the batch: score each on its own
                for job in batch:
                    await self._run([job])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        self.calls += 1
        self.batched_requests += len(batch) if len(batch) > 1 else 0
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result((outputs, start))
            start += job.rows


@dataclass
class PickleEntry:
    key: str


class RealtimeModels:
    """The realtime models this compute node holds, by content hash."""

    def __init__(
        self,
        *,
        root: Path,
        pickle_pool: ShellPool,
        execution_timeout: float,
        batch_max_size: int,
        batch_max_wait: float,
        threads: int,
    ) -> None:
        self._root = root
        self._pickle_pool = pickle_pool
        self._pickles = ServiceRegistry({"python": pickle_pool}, execution_timeout=execution_timeout)
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="realtime")
        self._batch_max_size = batch_max_size
        self._batch_max_wait = batch_max_wait
        self._models: dict[str, OnnxEntry | PickleEntry] = {}
        self._replies: dict[str, rpb.LoadModelReply] = {}
        self._loading: dict[str, asyncio.Task[rpb.LoadModelReply]] = {}

    def __len__(self) -> int:
        return len(self._models)

    async def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        await self._pickle_pool.start()

    async def close(self) -> None:
        await self._pickle_pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ load / unload
    async def load(self, model_hash: str, content: bytes) -> rpb.LoadModelReply:
        """Load once per hash (concurrent loads of one hash share the work); ServiceNotLoaded without bytes."""
        reply = self._replies.get(model_hash)
        if reply is not None:
            return reply
        if not content:
            raise ServiceNotLoaded(f"model {model_hash} is not loaded on this compute node")
        task = self._loading.get(model_hash)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(model_hash, content))
            self._loading[model_hash] = task
            task.add_done_callback(lambda _t: self._loading.pop(model_hash, None))
        return await asyncio.shield(task)

    async def _load(self, model_hash: str, content: bytes) -> rpb.LoadModelReply:
        if hashlib.sha256(content).hexdigest() != model_hash:
            raise InvalidInput("the model bytes do not match their hash", field="model")
        kind = detect_format(content)
        loop = asyncio.get_running_loop()
        if kind == "onnx":
            model = await loop.run_in_executor(None, OnnxModel.load, content, 1)
            entry: OnnxEntry | PickleEntry = OnnxEntry(
                model, self._executor, self._batch_max_size, self._batch_max_wait
            )
            reply = rpb.LoadModelReply(format="onnx", inputs=model.input_columns(), outputs=model.output_columns())
        else:
            entry = await self._load_pickle(model_hash, content)
            reply = rpb.LoadModelReply(format="pickle")
        self._models[model_hash] = entry
        self._replies[model_hash] = reply
        logger.info("loaded %s realtime model %s", kind, model_hash[:12])
        return reply

    async def _load_pickle(self, model_hash: str, content: bytes) -> PickleEntry:
        path = self._root / f"{model_hash}.pkl"
        await asyncio.get_running_loop().run_in_executor(None, path.write_bytes, content)
        definition = pickle_models.definition(model_hash, path)
        self._pickles.load(definition)
        # Load ahead in a shell (the probe scores nothing): a broken pickle fails the publish.
        result = await self._pickles.execute(
            pb.ExecuteServiceRequest(service_key=definition.key, inputs_json=b'{"inputData": null}')
        )
        if not result.success:
            self._pickles.unload(definition.key)
            message = result.error_message.removeprefix("initCode: ")
            raise InvalidInput(f"the pickled model cannot be loaded: {message[:500]}", field="model")
        return PickleEntry(definition.key)

    def unload(self, model_hash: str) -> None:
        """Forget a model; requests already scoring on it finish (they hold the entry)."""
        entry = self._models.pop(model_hash, None)
        self._replies.pop(model_hash, None)
        if isinstance(entry, PickleEntry):
            self._pickles.unload(entry.key)

    # ------------------------------------------------------------------ scoring
    async def score(self, request: pb.ScoreRequest) -> pb.ScoreReply:
        entry = self._models.get(request.model_hash)
        if entry is None:
            raise ServiceNotLoaded(f"model {request.model_hash} is not loaded on this compute node")
        if isinstance(entry, PickleEntry):
            return await self._score_pickle(entry, request.body_json)
        try:
            body = orjson.loads(request.body_json)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"malformed JSON: {exc}") from None
        data = body.get("inputData") if isinstance(body, dict) else None
        feed, rows = entry.model.prepare(data)
        columns = await entry.score(feed, rows)
        return pb.ScoreReply(outputs_json=orjson.dumps({"outputData": columns}, option=orjson.OPT_SERIALIZE_NUMPY))

    async def _score_pickle(self, entry: PickleEntry, body_json: bytes) -> pb.ScoreReply:
        result = await self._pickles.execute(pb.ExecuteServiceRequest(service_key=entry.key, inputs_json=body_json))
        if result.success:
            return pb.ScoreReply(outputs_json=result.outputs_json)
        error = result.error_message
        name = error.partition(":")[0]
        if name in pickle_models.INPUT_ERRORS or error.startswith("input 'inputData'"):
            message = error.removeprefix(pickle_models.INPUT_ERROR + ": ")
            raise InvalidInput(message[:1000], field="inputData")
        failure: AppError = Internal(f"the model failed: {error[:1000]}")
        raise failure

    def figures(self, model_hash: str) -> rpb.ModelFigures:
        entry = self._models.get(model_hash)
        if not isinstance(entry, OnnxEntry):
            raise NotFound(f"no ONNX model {model_hash} is loaded on this compute node")
        return rpb.ModelFigures(requests=entry.requests, calls=entry.calls, batched_requests=entry.batched_requests)
