"""An agent built on the OpenAI SDK uses Interns by changing its base URL: the real
gateway's HTTP endpoint answers, unary and streamed, and every call is traced."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from openai import AsyncOpenAI
from sqlmodel import Session, select

from interns.common.db import Trace, make_engine
from tests.conftest import openai_log_line

pytestmark = pytest.mark.integration


def stored_sessions(settings, session_id: str) -> list[Trace]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Trace).where(Trace.session_id == session_id)))
    finally:
        engine.dispose()


async def test_the_openai_sdk_gets_the_experts_answer_and_the_call_is_traced(stack, api_key):
    settings, _ = stack
    client = AsyncOpenAI(
        base_url=f"http://{settings.host}:{settings.gateway_http_port}/v1", api_key=api_key
    )
    request = openai_log_line("Lima", "sdk-1")["request"]
    headers = {"x-interns-session-id": "sdk-1", "x-interns-agent-id": "sdk-agent"}
    completion = await client.chat.completions.create(**request, extra_headers=headers)
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "GetWeather"
    assert json.loads(call.function.arguments)["city"] == "Lima"

    stream = await client.chat.completions.create(**request, stream=True, extra_headers=headers)
    streamed = [chunk async for chunk in stream]
    calls = [
        c for chunk in streamed for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices
    ]
    assert json.loads(calls[0].function.arguments)["city"] == "Lima"

    deadline = time.monotonic() + 30
    traces = []
    while len(traces) < 2 and time.monotonic() < deadline:
        traces = await asyncio.to_thread(stored_sessions, settings, "sdk-1")
        await asyncio.sleep(0.2)
    assert len(traces) == 2
    assert {(t.tenant_id, t.agent_id) for t in traces} == {("local", "sdk-agent")}


async def test_a_wrong_key_gets_401_in_openais_error_shape(stack):
    settings, _ = stack
    client = AsyncOpenAI(
        base_url=f"http://{settings.host}:{settings.gateway_http_port}/v1", api_key="ik_wrong"
    )
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError) as refused:
        await client.chat.completions.create(**openai_log_line("Lima", "x")["request"])
    assert "invalid API key" in str(refused.value)
