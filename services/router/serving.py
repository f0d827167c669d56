"""Serving one call: pick the route, call the intern or the expert, and fall back to the
expert whenever the intern cannot give a checked answer in time (a cascade). An intern that
defers (not confident enough) leaves the call to the expert too, by design: a deferral is
its own outcome, neither a fallback nor a failed check."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from interns.api.v1 import chat_pb2, router_pb2
from interns.common.chat import (
    input_to_openai,
    message_from_openai,
    output_from_openai,
    tool_call_from_openai,
)
from interns.common.events import ShadowCompared
from interns.common.logging import get_logger
from interns.common.metrics import FALLBACKS, ROUTED_CALLS
from interns.common.signature import request_signature
from interns.router.checks import check_answer
from interns.router.compare import compare_answers
from interns.router.costs import Price, call_cost
from interns.router.expert import ExpertClient, ExpertError
from interns.router.interns import InternClient, InternDeferred, InternFailed
from interns.router.routing import Decision, RoutingTable

log = get_logger(__name__)
# The first word of the reason of a call its intern deferred to the expert.
DEFERRED = "deferred"
PublishShadow = Callable[[ShadowCompared], Awaitable[None]]


@dataclass
class RouterConfig:
    expert_model: str
    intern_timeout_s: float = 2.0
    prices: dict[str, Price] = field(default_factory=dict)
    shadow_concurrency: int = 16
    # The share of intern-served calls (canary or full) the expert also answers, off the
    # critical path, to measure live agreement; 0 turns the checks off.
    check_share: float = 0.0


@dataclass
class Routed:
    """A call's chosen route and what the router needs to serve it."""

    decision: Decision
    body: dict[str, Any]


class Router:
    """Routes calls by the routing table; the expert answers whatever no intern takes."""

    def __init__(
        self,
        table: RoutingTable,
        expert: ExpertClient,
        config: RouterConfig,
        interns: InternClient | None = None,
        publish_shadow: PublishShadow | None = None,
    ):
        self._table = table
        self._expert = expert
        self._config = config
        self._interns = interns
        self._publish_shadow = publish_shadow
        self._shadow_slots = asyncio.Semaphore(config.shadow_concurrency)
        self._background: set[asyncio.Task] = set()
        self._counters: dict[tuple[str, str], Any] = {}
        self._sample = random.random

    def _route(self, chat: chat_pb2.ChatCompletionInput, metadata) -> Routed:
        body = input_to_openai(chat, self._config.expert_model)
        decision = self._table.decide(
            request_signature(body),
            metadata.tenant_id,
            metadata.session_id,
            self._config.expert_model,
            request=body,
        )
        if decision.target == "intern" and self._interns is None:
            decision = self._fallback(decision, "no Triton configured")
        return Routed(decision, body)

    def _to_expert(self, decision: Decision, reason: str) -> Decision:
        """The expert answers a call meant for an intern, with this reason."""
        return Decision(
            "expert",
            self._config.expert_model,
            task_id=decision.task_id,
            reason=reason,
            mode=decision.mode,
        )

    def _fallback(self, decision: Decision, why: str) -> Decision:
        """The expert answers a call meant for an intern; the reason says why."""
        FALLBACKS.labels("router", decision.task_id, decision.model).inc()
        return self._to_expert(decision, f"fallback: {why}")

    def _deferred(self, decision: Decision, why: str) -> Decision:
        """The expert answers a call its intern chose not to (below its calibrated
        confidence): no fallback, the intern works as designed."""
        return self._to_expert(decision, f"{DEFERRED}: {why}")

    def _intern_budget(self, deadline_s: float | None) -> float:
        """The intern gets at most half of what is left, so the expert can still answer."""
        budget = self._config.intern_timeout_s
        return min(budget, deadline_s / 2) if deadline_s else budget

    async def _try_intern(
        self, routed: Routed, deadline_s: float | None
    ) -> tuple[dict[str, Any] | None, Decision]:
        decision = routed.decision
        try:
            message = await self._interns.answer(
                decision.model,
                decision.model_version,
                routed.body,
                self._intern_budget(deadline_s),
                lambda m: check_answer(routed.body, m),
            )
            return message, decision
        except InternDeferred as deferral:
            return None, self._deferred(decision, str(deferral))
        except InternFailed as failure:
            return None, self._fallback(decision, str(failure))

    def _count(self, decision: Decision) -> None:
        reason = decision.reason.split(":", 1)[0] if decision.reason else ""
        # The counter of each (target, reason) is looked up once: `labels()` takes a lock
        # and builds a key on every call.
        counter = self._counters.get((decision.target, reason))
        if counter is None:
            counter = ROUTED_CALLS.labels("router", decision.target, reason)
            self._counters[(decision.target, reason)] = counter
        counter.inc()

    def _route_message(self, decision: Decision, cost_usd: float = 0.0) -> chat_pb2.RouteDecision:
        return chat_pb2.RouteDecision(
            target=decision.target,
            model=decision.model,
            model_version=decision.model_version,
            task_id=decision.task_id,
            reason=decision.reason,
            cost_usd=cost_usd,
            mode=decision.mode,
        )

    def _cost(self, model: str, usage: chat_pb2.Usage) -> float:
        """What the expert's answer cost, from the price table."""
        return call_cost(
            self._config.prices,
            model or self._config.expert_model,
            usage.prompt_tokens,
            usage.completion_tokens,
        )

    async def complete(
        self,
        chat: chat_pb2.ChatCompletionInput,
        metadata: chat_pb2.RequestMetadata,
        trace_id: str,
        deadline_s: float | None,
    ) -> tuple[chat_pb2.ChatCompletionOutput, chat_pb2.RouteDecision]:
        """The answer to one call and the route that gave it; raises ExpertError when the
        expert, which answers last, did not."""
        routed = self._route(chat, metadata)
        decision = routed.decision
        checked = self._checked(decision)
        if decision.target == "intern":
            started = time.monotonic()
            message, decision = await self._try_intern(routed, deadline_s)
            if message is not None:
                self._count(decision)
                if checked:
                    self._check(routed, trace_id, message, time.monotonic() - started)
                return intern_output(decision, message), self._route_message(decision)
            if deadline_s:
                deadline_s = max(deadline_s - (time.monotonic() - started), 0.001)
        self._count(decision)
        answer = await self._expert.complete(routed.body, deadline_s)
        output = output_from_openai(answer)
        if decision.shadow_model:
            self._shadow(routed, trace_id, answer)
        elif checked:
            self._not_served(routed, trace_id, answer, decision.reason)
        decision = replace(decision, model=output.model or decision.model)
        return output, self._route_message(decision, self._cost(output.model, output.usage))

    async def stream(
        self,
        chat: chat_pb2.ChatCompletionInput,
        metadata: chat_pb2.RequestMetadata,
        trace_id: str,
        deadline_s: float | None,
    ) -> AsyncIterator[router_pb2.StreamRouteChatCompletionResponse]:
        """The answer to one call as stream chunks, the route in the first (and, with the
        cost, in the last); raises ExpertError when the expert fails."""
        routed = self._route(chat, metadata)
        decision = routed.decision
        checked = self._checked(decision)
        if decision.target == "intern":
            started = time.monotonic()
            message, decision = await self._try_intern(routed, deadline_s)
            if message is not None:
                self._count(decision)
                if checked:
                    self._check(routed, trace_id, message, time.monotonic() - started)
                output = intern_output(decision, message)
                for delta in whole_answer_deltas(output):
                    yield router_pb2.StreamRouteChatCompletionResponse(
                        id=output.id,
                        model=output.model,
                        delta=delta,
                        route=self._route_message(decision),
                    )
                return
        self._count(decision)
        assembler = ToolCallAssembler()
        first = True
        async for chunk in self._expert.stream(routed.body, deadline_s):
            for delta in assembler.feed(chunk):
                yield router_pb2.StreamRouteChatCompletionResponse(
                    id=assembler.id,
                    model=assembler.model,
                    delta=delta,
                    route=self._route_message(decision) if first else None,
                )
                first = False
        final = assembler.finish()
        cost = self._cost(assembler.model, final.usage)
        yield router_pb2.StreamRouteChatCompletionResponse(
            id=assembler.id,
            model=assembler.model,
            delta=final,
            route=self._route_message(decision, cost),
        )
        if decision.shadow_model:
            self._shadow(routed, trace_id, assembler.message())
        elif checked:
            self._not_served(routed, trace_id, assembler.message(), decision.reason)

    # --- shadow -----------------------------------------------------------------------

    def _shadow(self, routed: Routed, trace_id: str, expert_answer: dict[str, Any]) -> None:
        """Runs the intern beside the expert, off the critical path; skipped (and counted)
        when too many shadow calls are already in flight."""
        if self._interns is None or self._shadow_slots.locked():
            ROUTED_CALLS.labels("router", "shadow", "skipped").inc()
            return
        self._in_background(self._run_shadow(routed, trace_id, expert_answer))

    async def _run_shadow(
        self, routed: Routed, trace_id: str, expert_answer: dict[str, Any]
    ) -> None:
        decision = routed.decision
        expert_message = expert_message_of(expert_answer)
        async with self._shadow_slots:
            started = time.perf_counter()
            try:
                intern_message = await self._interns.answer(
                    decision.shadow_model,
                    decision.shadow_version,
                    routed.body,
                    self._config.intern_timeout_s,
                    lambda m: check_answer(routed.body, m),
                )
            except InternDeferred:
                # The intern would not have answered this call: nothing to compare.
                ROUTED_CALLS.labels("router", "shadow", DEFERRED).inc()
                return
            except InternFailed as failure:
                intern_message = {"error": str(failure)}
            latency_ms = (time.perf_counter() - started) * 1000
        await self._compared(
            "shadow",
            trace_id,
            replace(decision, model=decision.shadow_model, model_version=decision.shadow_version),
            expert_message,
            intern_message,
            latency_ms,
        )

    async def _compared(
        self,
        kind: str,
        trace_id: str,
        decision: Decision,
        expert_message: dict[str, Any],
        intern_message: dict[str, Any],
        latency_ms: float,
    ) -> None:
        """Compares the two answers, counts the outcome and publishes it (never raises)."""
        fallback = "error" in intern_message
        agree, score = (False, 0.0) if fallback else compare_answers(expert_message, intern_message)
        outcome = "fallback" if fallback else "agree" if agree else "disagree"
        ROUTED_CALLS.labels("router", kind, outcome).inc()
        if self._publish_shadow is None:
            return
        try:
            await self._publish_shadow(
                ShadowCompared(
                    trace_id=trace_id,
                    task_id=decision.task_id,
                    model=decision.model,
                    model_version=decision.model_version,
                    agree=agree,
                    score=score,
                    expert_answer=json.dumps(expert_message, sort_keys=True),
                    intern_answer=json.dumps(intern_message, sort_keys=True),
                    intern_latency_ms=latency_ms,
                    kind=kind,
                    fallback=fallback,
                )
            )
        except Exception:
            log.exception("comparison not published", kind=kind)

    # --- sampled checks of intern-served calls ----------------------------------------

    def _checked(self, decision: Decision) -> bool:
        """Whether this intern-routed call is one of the sampled checks; decided before the
        intern answers, so that the sample counts its fallbacks fairly."""
        share = self._config.check_share
        return decision.target == "intern" and share > 0 and self._sample() < share

    def _in_background(self, work) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _check(
        self, routed: Routed, trace_id: str, intern_message: dict[str, Any], elapsed_s: float
    ) -> None:
        """Asks the expert the call the intern served, off the critical path, and publishes
        the comparison; skipped (and counted) when too many are in flight."""
        if self._shadow_slots.locked():
            ROUTED_CALLS.labels("router", "check", "skipped").inc()
            return
        self._in_background(self._run_check(routed, trace_id, intern_message, elapsed_s * 1000))

    async def _run_check(
        self, routed: Routed, trace_id: str, intern_message: dict[str, Any], latency_ms: float
    ) -> None:
        async with self._shadow_slots:
            try:
                answer = await self._expert.complete(routed.body, None)
            except ExpertError as error:
                log.warning("sampled check: the expert did not answer", error=str(error))
                ROUTED_CALLS.labels("router", "check", "skipped").inc()
                return
        await self._compared(
            "check",
            trace_id,
            routed.decision,
            expert_message_of(answer),
            intern_message,
            latency_ms,
        )

    def _not_served(
        self, routed: Routed, trace_id: str, expert_answer: dict[str, Any], why: str
    ) -> None:
        """A sampled call its intern did not serve. Deferred: nothing to compare, as in
        shadow (only counted). Fell back: published as a failed check."""
        if why.startswith(f"{DEFERRED}:"):
            ROUTED_CALLS.labels("router", "check", DEFERRED).inc()
            return
        self._in_background(
            self._compared(
                "check",
                trace_id,
                routed.decision,
                expert_message_of(expert_answer),
                {"error": why},
                0.0,
            )
        )

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Waits for shadow calls in flight (at shutdown)."""
        if self._background:
            await asyncio.wait(self._background, timeout=timeout_s)


def expert_message_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The assistant message of an OpenAI response body (or of an assembled stream)."""
    if "choices" in answer:
        return (answer.get("choices") or [{}])[0].get("message") or {}
    return answer


def intern_output(decision: Decision, message: dict[str, Any]) -> chat_pb2.ChatCompletionOutput:
    """An intern's checked message as a completion."""
    grpc_message = message_from_openai({**message, "role": "assistant"})
    return chat_pb2.ChatCompletionOutput(
        id=f"intern-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=decision.model,
        message=grpc_message,
        finish_reason="tool_calls" if grpc_message.tool_calls else "stop",
    )


def whole_answer_deltas(
    output: chat_pb2.ChatCompletionOutput,
) -> list[chat_pb2.ChatCompletionDelta]:
    """A whole answer as stream deltas: the role and text first, then the tool calls and
    the finish reason."""
    deltas = [chat_pb2.ChatCompletionDelta(role="assistant", content=output.message.content)]
    deltas.append(
        chat_pb2.ChatCompletionDelta(
            tool_calls=output.message.tool_calls,
            finish_reason=output.finish_reason,
            usage=output.usage,
        )
    )
    return deltas


class ToolCallAssembler:
    """Turns OpenAI stream chunks into deltas: text passes through as it comes; tool-call
    fragments are joined and sent whole in the last delta (`finish`), so that each parses."""

    def __init__(self) -> None:
        self._calls: dict[int, dict] = {}
        self._finish_reason = ""
        self._usage: dict = {}
        self.id = ""
        self.model = ""
        self._text: list[str] = []

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
            self._text.append(delta.get("content") or "")
            if delta.get("role") or delta.get("content"):
                deltas.append(
                    chat_pb2.ChatCompletionDelta(
                        role=delta.get("role") or "", content=delta.get("content") or ""
                    )
                )
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return deltas

    def message(self) -> dict[str, Any]:
        """What has been assembled so far, as an OpenAI assistant message."""
        return {
            "role": "assistant",
            "content": "".join(self._text) or None,
            "tool_calls": [c for _, c in sorted(self._calls.items())] or None,
        }

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
