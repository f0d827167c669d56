"""The demo's replay and watch loop: the workload goes through the gateway at the plan's
pace while the stack mines, trains and rolls out by itself; the demo only watches, draws
what it sees, and keeps to its budget (jobs that could not finish in time are cancelled).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from rich.console import Console
from rich.live import Live

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai, message_to_openai
from interns.demo.figures import CallRecord, agreement, compare, costs
from interns.demo.live import ACTIVE_JOBS, DemoState, LiveView, Snapshot, StackWatcher, plain_line
from interns.demo.plan import DemoPlan
from interns.demo.prices import PriceTable
from interns.expert.replay import WorkloadRecord

CALL_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 32
PLAIN_EVERY_S = 15.0
SAVINGS_EVERY_S = 5.0


@dataclass
class Scheduled:
    at_s: float
    phase: str
    rate: float
    record: WorkloadRecord


def schedule(plan: DemoPlan, records: list[WorkloadRecord]) -> Iterator[Scheduled]:
    """When each call is sent: passes over the workload, each shuffled anew, at each
    phase's rate, until the replay ends or `plan.calls` were sent."""
    rng = random.Random(plan.seed)
    order: list[WorkloadRecord] = []
    sent = 0
    for phase in plan.phases:
        at = phase.start_s
        while at < phase.end_s and sent < plan.calls:
            if not order:
                order = rng.sample(records, len(records))
            yield Scheduled(at, phase.name, phase.rate, order.pop())
            sent += 1
            at += 1.0 / phase.rate


def jobs_to_cancel(
    jobs: list,
    elapsed_s: float,
    plan: DemoPlan,
    replay_over: bool,
    cancelled: list[str],
    started_in_time: set[str] | None = None,
) -> list[str]:
    """The jobs the budget no longer has room for: once no job may start
    (`plan.training_deadline_s`), queued ones and running ones not seen running before
    then (`started_in_time`: a task found late is queued and taken by the idle worker
    between two looks); every unfinished one when the replay is over."""
    late = elapsed_s > plan.training_deadline_s
    in_time = started_in_time or set()
    return [
        job.job_id
        for job in jobs
        if job.job_id not in cancelled
        and (
            (late and job.status == "queued")
            or (late and job.status == "running" and job.job_id not in in_time)
            or (replay_over and job.status in ACTIVE_JOBS)
        )
    ]


@dataclass
class LoopResult:
    records: list[CallRecord]
    trace_ids: list[str]
    replay_s: float
    cancelled_jobs: list[str] = field(default_factory=list)
    last_snapshot: Snapshot = field(default_factory=Snapshot)


def _request(record: WorkloadRecord) -> gateway_pb2.CreateChatCompletionRequest:
    return gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(
            agent_id="demo",
            session_id=str(record.metadata.get("session_id") or ""),
            labels={"task_label": str(record.metadata.get("task_label") or "")},
        ),
        input=input_from_openai(record.request),
    )


class Replay:
    """Sends the scheduled calls and records what came back."""

    def __init__(self, gateway_addr: str, api_key: str):
        self._addr = gateway_addr
        self._auth = (("authorization", f"Bearer {api_key}"),)
        self.records: list[CallRecord] = []
        self.trace_ids: list[str] = []
        self.phase, self.rate = "starting", 0.0

    async def run(self, calls: Iterator[Scheduled], started: float, end_s: float) -> None:
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task] = set()
        async with grpc.aio.insecure_channel(self._addr) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            for call in calls:
                if call.at_s >= end_s:
                    break
                self.phase, self.rate = call.phase, call.rate
                delay = started + call.at_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                task = asyncio.create_task(self._call(stub, call, started))
                pending.add(task)
                task.add_done_callback(lambda done: (pending.discard(done), slots.release()))
            self.phase = "finishing"
            if pending:
                await asyncio.wait(pending, timeout=CALL_TIMEOUT_S + 5)

    async def _call(self, stub, call: Scheduled, started: float) -> None:
        sent = time.monotonic()
        t_s = sent - started
        try:
            response = await stub.CreateChatCompletion(
                _request(call.record), timeout=CALL_TIMEOUT_S, metadata=self._auth
            )
        except grpc.aio.AioRpcError as error:
            self.records.append(
                CallRecord(t_s, call.phase, False, error=f"{error.code().name}: {error.details()}")
            )
            return
        latency_ms = (time.monotonic() - sent) * 1000
        answer = message_to_openai(response.output.message)
        exact, without_dates = compare(answer, call.record.answer)
        route, usage = response.route, response.output.usage
        self.trace_ids.append(response.trace_id)
        self.records.append(
            CallRecord(
                t_s=t_s,
                phase=call.phase,
                ok=True,
                target=route.target,
                reason=route.reason,
                task_id=route.task_id,
                mode=route.mode,
                model=route.model,
                model_version=route.model_version,
                agree=exact,
                agree_without_dates=without_dates,
                latency_ms=latency_ms,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        )


async def run_loop(
    plan: DemoPlan,
    records: list[WorkloadRecord],
    replay: Replay,
    watcher: StackWatcher,
    prices: PriceTable,
    console: Console,
    began: float,
    deadline: float,
    live: bool,
) -> LoopResult:
    """Replays the workload until the plan's end or `deadline` (monotonic; the budget's
    end less the time the report and the stack's stop need), watching the stack at 1 Hz.
    `replay` keeps what was answered, even when the loop is interrupted."""
    started = time.monotonic()
    end_s = min(plan.replay_s, deadline - started)
    sender = asyncio.create_task(replay.run(schedule(plan, records), started, end_s))
    view = LiveView(plan, console)
    cancelled: list[str] = []
    started_in_time: set[str] = set()  # jobs seen running before the training deadline
    snapshot = Snapshot()
    last_plain = float("-inf")

    savings: dict = {}
    savings_at = float("-inf")

    def state() -> DemoState:
        nonlocal savings, savings_at
        now = time.monotonic()
        answered = replay.records
        # Agreement and costs go over every call so far: every few seconds is enough.
        if now - savings_at >= SAVINGS_EVERY_S:
            savings = {**agreement(answered), **costs(answered, prices, plan.check_share)}
            savings_at = now
        return DemoState(
            elapsed_s=now - began,
            phase=replay.phase,
            rate=replay.rate,
            records=answered,
            replay_elapsed_s=now - started,
            savings=savings,
        )

    def enforce_budget(snapshot: Snapshot, replay_over: bool) -> None:
        elapsed = time.monotonic() - started
        if elapsed <= plan.training_deadline_s:
            started_in_time.update(j.job_id for j in snapshot.jobs if j.status == "running")
        for job_id in jobs_to_cancel(
            snapshot.jobs, elapsed, plan, replay_over, cancelled, started_in_time
        ):
            watcher.cancel(job_id)
            cancelled.append(job_id)

    live_view = Live(console=console, auto_refresh=False, transient=False) if live else None
    try:
        if live_view is not None:
            live_view.start()
        while True:
            snapshot = await asyncio.to_thread(watcher.look)
            over = sender.done()
            await asyncio.to_thread(enforce_budget, snapshot, over)
            current = state()
            if live_view is not None:
                live_view.update(view.render(current, snapshot), refresh=True)
            elif time.monotonic() - last_plain >= PLAIN_EVERY_S or over:
                console.print(plain_line(current, snapshot), highlight=False, soft_wrap=True)
                last_plain = time.monotonic()
            if over:
                break
            await asyncio.sleep(1.0)
    finally:
        if live_view is not None:
            live_view.stop()
        if not sender.done():
            sender.cancel()
    sender.result()
    return LoopResult(
        records=replay.records,
        trace_ids=replay.trace_ids,
        replay_s=time.monotonic() - started,
        cancelled_jobs=cancelled,
        last_snapshot=snapshot,
    )
