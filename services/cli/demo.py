"""The demo: replay a recorded workload through the gateway and show where calls went.

Until interns are trained (the flywheel), this is the walking skeleton: every call goes
client -> gateway -> router -> expert and back, and its trace reaches Kafka and the
database. The report says how many calls were answered, how many matched the workload's
reference answer, how many traces were stored, and how long it all took.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai, message_to_openai
from interns.common.db import Trace, make_engine
from interns.common.settings import SecureSettings, load_settings
from interns.common.tls import aio_channel
from interns.expert.replay import WorkloadRecord, load_workload
from interns.expert.settings import ExpertSettings
from interns.stack.settings import StackSettings


def spread(records: list[WorkloadRecord], limit: int) -> list[WorkloadRecord]:
    """`limit` records taken evenly across the file, so that every part of it is seen."""
    if len(records) <= limit:
        return records
    step = len(records) / limit
    return [records[int(i * step)] for i in range(limit)]


def tool_calls_of(message: dict[str, Any]) -> list[tuple[str, Any]]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            parsed = arguments
        calls.append((function.get("name"), parsed))
    return calls


def same_answer(answer: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Tool calls equal by name and parsed arguments; otherwise the text must be equal."""
    if reference.get("tool_calls"):
        return tool_calls_of(answer) == tool_calls_of(reference)
    return (answer.get("content") or "").strip() == (reference.get("content") or "").strip()


class MissingApiKey(RuntimeError):
    """The demo has no API key to send."""


def demo_api_key(settings: StackSettings) -> str:
    """INTERNS_API_KEY, else the local key `interns up` wrote in the state folder."""
    if settings.api_key:
        return settings.api_key
    try:
        return settings.api_key_file.read_text().strip()
    except FileNotFoundError:
        raise MissingApiKey(
            f"no API key in {settings.api_key_file}: start the stack with 'interns up',"
            " or set INTERNS_API_KEY"
        ) from None


async def replay(
    gateway_addr: str,
    api_key: str,
    records: list[WorkloadRecord],
    concurrency: int,
    progress: Progress,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    task = progress.add_task("replaying through the gateway", total=len(records))
    semaphore = asyncio.Semaphore(concurrency)
    async with aio_channel(gateway_addr, SecureSettings()) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)

        async def call(record: WorkloadRecord) -> None:
            metadata = chat_pb2.RequestMetadata(
                agent_id="demo",
                session_id=str(record.metadata.get("session_id", "")),
                labels={"task_label": str(record.metadata.get("task_label", ""))},
            )
            request = gateway_pb2.CreateChatCompletionRequest(
                metadata=metadata, input=input_from_openai(record.request)
            )
            async with semaphore:
                started = time.perf_counter()
                try:
                    response = await stub.CreateChatCompletion(
                        request, timeout=60, metadata=(("authorization", f"Bearer {api_key}"),)
                    )
                    answer = message_to_openai(response.output.message)
                    results.append(
                        {
                            "ok": True,
                            "trace_id": response.trace_id,
                            "target": response.route.target,
                            "agree": same_answer(answer, record.answer),
                            "latency_ms": (time.perf_counter() - started) * 1000,
                        }
                    )
                except grpc.aio.AioRpcError as error:
                    results.append(
                        {"ok": False, "error": f"{error.code().name}: {error.details()}"}
                    )
            progress.advance(task)

        await asyncio.gather(*(call(record) for record in records))
    return results


def wait_for_traces(database_url: str, trace_ids: list[str], timeout_s: float) -> int:
    """How many of `trace_ids` the collector has stored, waiting up to `timeout_s`."""
    engine = make_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as connection:
                stored = connection.execute(
                    select(func.count()).where(Trace.trace_id.in_(trace_ids))
                ).scalar_one()
            if stored >= len(trace_ids) or time.monotonic() > deadline:
                return stored
            time.sleep(0.25)
    finally:
        engine.dispose()


def run_demo(
    settings: StackSettings, workload: Path | None, out: Path, limit: int, console: Console
) -> dict[str, Any]:
    """Replays `limit` calls of `workload` through the running stack; writes and returns
    the report (`report["ok"]` is False when a call failed or a trace was not stored)."""
    api_key = demo_api_key(settings)
    path = workload or load_settings(ExpertSettings).workload
    loaded = load_workload(path)
    records = spread(loaded.records, limit)
    console.print(
        f"workload {path}: {len(loaded.records)} records ({loaded.format}),"
        f" replaying {len(records)}"
    )
    started = time.monotonic()
    with Progress(console=console) as progress:
        results = asyncio.run(
            replay(f"{settings.host}:{settings.gateway_port}", api_key, records, 8, progress)
        )
    answered = [r for r in results if r["ok"]]
    trace_ids = [r["trace_id"] for r in answered]
    with console.status("waiting for the traces to reach the database"):
        stored = wait_for_traces(settings.resolved_database_url, trace_ids, timeout_s=60)
    latencies = [r["latency_ms"] for r in answered]
    report = {
        "workload": str(path),
        "calls": len(results),
        "answered": len(answered),
        "failed": len(results) - len(answered),
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:10],
        "agreement_with_reference": sum(r["agree"] for r in answered) / max(len(answered), 1),
        "intern_share": sum(r["target"] == "intern" for r in answered) / max(len(answered), 1),
        "traces_stored": stored,
        "latency_ms_p50": statistics.median(latencies) if latencies else None,
        "latency_ms_p95": statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else None,
        "duration_s": round(time.monotonic() - started, 2),
    }
    report["ok"] = report["failed"] == 0 and stored == len(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = Table(
        "figure", "value", title="walking skeleton: client -> gateway -> router -> expert"
    )
    for key, value in report.items():
        if key != "errors":
            table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    for error in report["errors"]:
        console.print(f"[red]error:[/] {error}")
    console.print(f"report written to {out / 'report.json'}")
    return report
