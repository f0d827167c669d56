"""The gateway's HTTP server sends each response in one socket write, and still streams:
the transport's rules, then the real server over a real socket."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from interns.gateway.coalesced_writes import CoalescedWrites
from interns.gateway.http_api import HttpServer
from tests.gateway.test_http_api import API_KEY, MAX_BODY_BYTES, serving, weather_body
from tests.servers import expert_serving, replay_expert


class Socket:
    """What a transport was asked to write, and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


async def test_the_writes_of_one_turn_go_out_as_one():
    socket = Socket()
    transport = CoalescedWrites(socket, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"{}")
    assert socket.writes == [] and transport.get_write_buffer_size() == 21
    await asyncio.sleep(0)
    transport.write(b"next")
    await asyncio.sleep(0)
    assert socket.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"next"]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


async def test_closing_sends_what_waits_first():
    socket = Socket()
    transport = CoalescedWrites(socket, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert socket.writes == [b"last words"] and socket.closed


async def test_nothing_is_written_once_the_connection_is_gone_or_aborted():
    lost, aborted = Socket(), Socket()
    CoalescedWrites(lost, asyncio.get_running_loop()).write(b"too late")
    lost.closed = True  # the client hung up within the same turn
    dropping = CoalescedWrites(aborted, asyncio.get_running_loop())
    dropping.write(b"never sent")
    dropping.abort()
    await asyncio.sleep(0)
    assert lost.writes == [] and aborted.writes == [] and aborted.aborted


async def test_one_connection_serves_calls_one_after_the_other(weather_log):
    async with replay_expert(weather_log) as expert, serving(expert) as served:
        server = HttpServer(served.gateway, "127.0.0.1", 0, MAX_BODY_BYTES, ["replay"])
        async with (
            server,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}",
                headers={"authorization": f"Bearer {API_KEY}"},
                limits=httpx.Limits(max_connections=1),
            ) as http,
        ):
            answers = [
                await http.post("/v1/chat/completions", json=weather_body(city))
                for city in ("Lima", "Oslo", "Lima")
            ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    cities = [
        json.loads(a.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
        for a in answers
    ]
    assert [c["city"] for c in cities] == ["Lima", "Oslo", "Lima"]
    assert len(served.publisher.traces) == 3


async def test_a_stream_reaches_the_client_chunk_by_chunk():
    async def slow_words():
        first = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
        yield f"data: {json.dumps(first)}\n\n".encode()
        await asyncio.sleep(1.0)
        last = {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()

    def chat(_: Request) -> StreamingResponse:
        return StreamingResponse(slow_words(), media_type="text/event-stream")

    slow = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    async with expert_serving(slow) as expert, serving(expert) as served:
        server = HttpServer(served.gateway, "127.0.0.1", 0, MAX_BODY_BYTES, ["replay"])
        async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            started = time.monotonic()
            request = http.stream(
                "POST",
                "/v1/chat/completions",
                json=weather_body(stream=True),
                headers={"authorization": f"Bearer {API_KEY}"},
            )
            async with request as response:
                events = [
                    (json.loads(line[6:]) if line != "data: [DONE]" else None, time.monotonic())
                    async for line in response.aiter_lines()
                    if line.startswith("data: ")
                ]
    words = [
        (event["choices"][0]["delta"].get("content"), at - started)
        for event, at in events
        if event and event["choices"] and event["choices"][0]["delta"].get("content")
    ]
    assert [word for word, _ in words] == ["Hi"]
    # "Hi" came before the expert's second chunk, not with the whole answer a second later.
    assert words[0][1] < 0.8 and events[-1][1] - started >= 1.0
    assert events[-1][0] is None  # [DONE]
