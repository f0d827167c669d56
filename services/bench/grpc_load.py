"""A closed-loop gRPC load generator for `GatewayService.CreateChatCompletion`, and a
trivial GatewayService server to measure the generator's own ceiling.

`run`: `concurrency` asyncio workers over a few channels (each its own TCP connection),
each sending the next request as soon as the last is answered; after `warmup_s`, calls
started within `duration_s` are timed. Prints one line `BENCH_JSON {...}` with the same
figures as the wrk script. No gRPC load tool is packaged for Debian or PyPI that runs
here (ghz is a Go binary), hence this one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import grpc
import typer

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai
from interns.common.grpc_server import MAX_MESSAGE_BYTES

RESULT_MARK = "BENCH_JSON "
CALL_TIMEOUT_S = 10.0

app = typer.Typer(add_completion=False, no_args_is_help=True)


def read_requests(bodies: Path) -> list[gateway_pb2.CreateChatCompletionRequest]:
    """The OpenAI request bodies of `bodies` (one JSON a line) as gateway requests."""
    return [
        gateway_pb2.CreateChatCompletionRequest(
            metadata=chat_pb2.RequestMetadata(agent_id="bench"),
            input=input_from_openai(json.loads(line)),
        )
        for line in bodies.read_text().splitlines()
        if line.strip()
    ]


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def closed_loop(
    target: str,
    requests: list[gateway_pb2.CreateChatCompletionRequest],
    api_key: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    channels: int,
) -> dict:
    """Runs the load and returns its figures (latencies in ms)."""
    options = [
        ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(channel) for channel in opened]
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    started = time.perf_counter()
    measure_from = started + warmup_s
    end = measure_from + duration_s
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    warmup_calls = 0

    async def worker(number: int) -> None:
        nonlocal warmup_calls
        stub = stubs[number % len(stubs)]
        sent = number
        while (begin := time.perf_counter()) < end:
            request = requests[sent % len(requests)]
            sent += 1
            try:
                await stub.CreateChatCompletion(request, metadata=metadata, timeout=CALL_TIMEOUT_S)
                failed = None
            except grpc.aio.AioRpcError as error:
                failed = error.code().name
            finish = time.perf_counter()
            if begin < measure_from:
                warmup_calls += 1
                continue
            latencies.append(finish - begin)
            if failed:
                errors[failed] += 1

    try:
        for channel in opened:
            await asyncio.wait_for(channel.channel_ready(), 10)
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        for channel in opened:
            await channel.close()
    measured_s = time.perf_counter() - measure_from
    ordered = sorted(latencies)
    ms = 1000.0
    return {
        "requests": len(ordered),
        "warmup_requests": warmup_calls,
        "duration_s": measured_s,
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "p50_ms": percentile(ordered, 0.50) * ms,
        "p90_ms": percentile(ordered, 0.90) * ms,
        "p99_ms": percentile(ordered, 0.99) * ms,
        "mean_ms": (sum(ordered) / len(ordered) * ms) if ordered else 0.0,
        "max_ms": (ordered[-1] * ms) if ordered else 0.0,
    }


@app.command()
def run(
    target: str = typer.Option(..., help="host:port of a GatewayService"),
    bodies: Path = typer.Option(..., help="OpenAI request bodies, one JSON a line"),
    concurrency: int = typer.Option(8, min=1, max=1024),
    duration_s: float = typer.Option(10.0, min=0.5, max=600),
    warmup_s: float = typer.Option(2.0, min=0, max=120),
    channels: int = typer.Option(4, min=1, max=64, help="TCP connections, at most concurrency"),
    api_key: str = typer.Option("", help="Sent as authorization: Bearer <key>"),
) -> None:
    """Closed-loop load against CreateChatCompletion; prints the figures as one JSON line."""
    figures = asyncio.run(
        closed_loop(
            target,
            read_requests(bodies),
            api_key,
            concurrency,
            duration_s,
            warmup_s,
            min(channels, concurrency),
        )
    )
    print(RESULT_MARK + json.dumps(figures), flush=True)


class TrivialGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Answers every call at once with the same small completion."""

    def __init__(self) -> None:
        self._answer = gateway_pb2.CreateChatCompletionResponse(
            trace_id="0" * 32,
            output=chat_pb2.ChatCompletionOutput(
                id="chatcmpl-trivial",
                model="trivial",
                message=chat_pb2.ChatMessage(role="assistant", content="ok"),
                finish_reason="stop",
            ),
        )

    async def CreateChatCompletion(self, request, context):
        return self._answer


async def _serve_trivial(port: int, seconds: float) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(TrivialGateway(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await asyncio.wait_for(server.wait_for_termination(), seconds)
    except TimeoutError:
        pass
    finally:
        await server.stop(1)


@app.command("trivial-server")
def trivial_server(
    port: int = typer.Option(..., help="Port on 127.0.0.1"),
    seconds: float = typer.Option(120.0, max=3600, help="Stops by itself after this long"),
) -> None:
    """A GatewayService that answers at once: the client's ceiling is measured against it."""
    asyncio.run(_serve_trivial(port, seconds))


if __name__ == "__main__":
    app()
