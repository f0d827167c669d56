"""The router's gRPC transport: translates RouterService calls to plain calls."""

from __future__ import annotations

import grpc

from interns.api.v1 import router_pb2, router_pb2_grpc
from interns.router.expert import ExpertError
from interns.router.routing import RoutingTable
from interns.router.serving import Router


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, table: RoutingTable):
        self._router = router
        self._table = table

    async def RouteChatCompletion(self, request, context: grpc.aio.ServicerContext):
        try:
            output, route = await self._router.complete(
                request.input, request.metadata, request.trace_id, context.time_remaining()
            )
        except ExpertError as error:
            await context.abort(error.code, str(error))
        return router_pb2.RouteChatCompletionResponse(output=output, route=route)

    async def StreamRouteChatCompletion(self, request, context: grpc.aio.ServicerContext):
        try:
            async for chunk in self._router.stream(
                request.input, request.metadata, request.trace_id, context.time_remaining()
            ):
                yield chunk
        except ExpertError as error:
            await context.abort(error.code, str(error))

    async def GetRoutingTable(self, request, context):
        return router_pb2.GetRoutingTableResponse(
            revision=self._table.revision,
            entries=[
                router_pb2.RouteEntry(
                    task_id=route.task_id,
                    target=route.target,
                    model_version=route.model_version,
                    mode=route.mode,
                    canary_share=route.canary_share,
                )
                for route in self._table.routes.values()
            ],
        )
