"""Serving one call: pick the route, call the target, turn its answer into gRPC messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from interns.api.v1 import chat_pb2, router_pb2
from interns.common.chat import input_to_openai, output_from_openai, tool_call_from_openai
from interns.common.metrics import ROUTED_CALLS
from interns.router.expert import ExpertClient, ExpertError
from interns.router.routing import Decision, RoutingTable


class Router:
    """Routes calls by the routing table; the expert answers whatever no intern takes."""

    def __init__(self, table: RoutingTable, expert: ExpertClient, expert_model: str):
        self._table = table
        self._expert = expert
        self._expert_model = expert_model

    def _decide(self) -> Decision:
        decision = self._table.decide(self._expert_model)
        ROUTED_CALLS.labels("router", decision.target, decision.reason).inc()
        return decision

    async def complete(
        self,
        chat: chat_pb2.ChatCompletionInput,
        trace_id: str,
        deadline_s: float | None,
        context: grpc.aio.ServicerContext,
    ) -> tuple[chat_pb2.ChatCompletionOutput, Decision]:
        decision = self._decide()
        body = input_to_openai(chat, self._expert_model)
        try:
            answer = await self._expert.complete(body, deadline_s)
        except ExpertError as error:
            await context.abort(error.code, str(error))
        output = output_from_openai(answer)
        return output, Decision(**{**decision.__dict__, "model": output.model or decision.model})

    async def stream(
        self,
        chat: chat_pb2.ChatCompletionInput,
        trace_id: str,
        deadline_s: float | None,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[router_pb2.StreamRouteChatCompletionResponse]:
        decision = self._decide()
        body = input_to_openai(chat, self._expert_model)
        route = chat_pb2.RouteDecision(**decision.__dict__)
        assembler = ToolCallAssembler()
        first = True
        try:
            async for chunk in self._expert.stream(body, deadline_s):
                for delta in assembler.feed(chunk):
                    yield router_pb2.StreamRouteChatCompletionResponse(
                        id=assembler.id,
                        model=assembler.model,
                        delta=delta,
                        route=route if first else None,
                    )
                    first = False
            yield router_pb2.StreamRouteChatCompletionResponse(
                id=assembler.id,
                model=assembler.model,
                delta=assembler.finish(),
                route=route if first else None,
            )
        except ExpertError as error:
            await context.abort(error.code, str(error))


class ToolCallAssembler:
    """Turns OpenAI stream chunks into deltas: text passes through as it comes; tool-call
    fragments are joined and sent whole in the last delta (`finish`), so that each parses."""

    def __init__(self) -> None:
        self._calls: dict[int, dict] = {}
        self._finish_reason = ""
        self._usage: dict = {}
        self.id = ""
        self.model = ""

    def feed(self, chunk: dict) -> list[chat_pb2.ChatCompletionDelta]:
        """The text deltas of one chunk; tool-call fragments and usage are kept for the end."""
        self.id = chunk.get("id") or self.id
        self.model = chunk.get("model") or self.model
        self._usage = chunk.get("usage") or self._usage
        deltas = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            for fragment in delta.get("tool_calls") or []:
                call = self._calls.setdefault(
                    fragment.get("index", 0),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = fragment.get("id") or call["id"]
                function = fragment.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
            if delta.get("role") or delta.get("content"):
                deltas.append(
                    chat_pb2.ChatCompletionDelta(
                        role=delta.get("role") or "", content=delta.get("content") or ""
                    )
                )
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return deltas

    def finish(self) -> chat_pb2.ChatCompletionDelta:
        """The last delta: whole tool calls, the finish reason and the usage."""
        return chat_pb2.ChatCompletionDelta(
            tool_calls=[tool_call_from_openai(c) for _, c in sorted(self._calls.items())],
            finish_reason=self._finish_reason or "stop",
            usage=chat_pb2.Usage(
                prompt_tokens=int(self._usage.get("prompt_tokens") or 0),
                completion_tokens=int(self._usage.get("completion_tokens") or 0),
                total_tokens=int(self._usage.get("total_tokens") or 0),
            ),
        )
