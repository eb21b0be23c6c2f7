"""The Realtime gRPC servicer: load and unload models by content hash (scoring rides the Call stream)."""

from __future__ import annotations

import grpc

from common.pb import realtime_pb2 as rpb
from common.pb import realtime_pb2_grpc as rpb_grpc
from computenode.realtime import RealtimeModels


class RealtimeServicer(rpb_grpc.RealtimeServicer):
    def __init__(self, models: RealtimeModels) -> None:
        self._models = models

    async def LoadModel(self, request: rpb.LoadModelRequest, context: grpc.aio.ServicerContext) -> rpb.LoadModelReply:
        return await self._models.load(request.model_hash, request.content)

    async def UnloadModel(
        self, request: rpb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> rpb.UnloadModelReply:
        self._models.unload(request.model_hash)
        return rpb.UnloadModelReply()

    async def GetModelFigures(
        self, request: rpb.ModelFiguresRequest, context: grpc.aio.ServicerContext
    ) -> rpb.ModelFigures:
        return self._models.figures(request.model_hash)
