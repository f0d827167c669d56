"""The walking skeleton on the real local stack: a gRPC call goes gateway -> router ->
expert and back, and its trace reaches Kafka and the database."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import Session

from interns.api.v1 import (
    chat_pb2,
    control_pb2,
    control_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from interns.common.chat import input_from_openai
from interns.common.db import Trace, make_engine
from interns.common.events import DeadLetter, TraceRecorded, TraceRequest
from interns.stack.supervisor import status
from interns.trainer.celery_app import make_celery
from tests.conftest import openai_log_line

pytestmark = pytest.mark.integration


def gateway_stub(settings):
    channel = grpc.aio.insecure_channel(f"{settings.host}:{settings.gateway_port}")
    return channel, gateway_pb2_grpc.GatewayServiceStub(channel)


def wait_for_trace(settings, trace_id: str, timeout: float = 30.0) -> Trace | None:
    engine = make_engine(settings.resolved_database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with Session(engine) as session:
                found = session.get(Trace, trace_id)
            if found is not None:
                return found
            time.sleep(0.2)
        return None
    finally:
        engine.dispose()


def test_every_part_is_healthy_with_a_pid_and_a_log(stack):
    settings, _ = stack
    rows = {row.name: row for row in status(settings)}
    assert set(rows) == {
        "kafka",
        "redis",
        "triton",
        "expert",
        "router",
        "gateway",
        "trace-collector",
        "miner",
        "trainer",
        "trainer-worker",
    }
    for row in rows.values():
        assert row.healthy, (row.name, row.detail)
        assert row.pid and row.log.endswith(f"{row.name}.log")


async def test_a_call_is_answered_by_the_expert_and_its_trace_stored(stack, auth):
    settings, _ = stack
    channel, stub = gateway_stub(settings)
    request = gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(agent_id="weather-bot", session_id="s-9"),
        input=input_from_openai(openai_log_line("Kyoto", "s-9")["request"]),
    )
    async with channel:
        response = await stub.CreateChatCompletion(request, timeout=20, metadata=auth)
    call = response.output.message.tool_calls[0]
    assert json.loads(call.function.arguments)["city"] == "Kyoto"

    stored = await asyncio.to_thread(wait_for_trace, settings, response.trace_id)
    assert stored is not None, "the trace never reached the database"
    assert (stored.tenant_id, stored.agent_id, stored.session_id, stored.route_target) == (
        "local",
        "weather-bot",
        "s-9",
        "expert",
    )
    assert stored.response["message"]["tool_calls"][0]["function"]["name"] == "GetWeather"


async def test_a_streamed_call_is_answered_and_traced(stack, auth):
    settings, _ = stack
    channel, stub = gateway_stub(settings)
    request = gateway_pb2.StreamChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(session_id="s-10"),
        input=input_from_openai(openai_log_line("Quito", "s-10")["request"]),
    )
    async with channel:
        chunks = [c async for c in stub.StreamChatCompletion(request, timeout=20, metadata=auth)]
    calls = [call for chunk in chunks for call in chunk.delta.tool_calls]
    assert json.loads(calls[0].function.arguments)["city"] == "Quito"
    assert await asyncio.to_thread(wait_for_trace, settings, chunks[0].trace_id)


async def test_a_malformed_request_gets_invalid_argument_naming_the_field(stack, auth):
    settings, _ = stack
    channel, stub = gateway_stub(settings)
    request = gateway_pb2.CreateChatCompletionRequest(input=chat_pb2.ChatCompletionInput())
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateChatCompletion(request, timeout=10, metadata=auth)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input.messages" in refused.value.details()


async def test_a_bad_trace_event_goes_to_the_dead_letter_topic_and_the_rest_is_stored(stack):
    settings, _ = stack
    bootstrap = f"{settings.host}:{settings.kafka_port}"
    good = TraceRecorded(
        trace_id="integration-good-1",
        tenant_id="acme",
        session_id="dl",
        request=TraceRequest(messages=[{"role": "user", "content": "hi"}]),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(TraceRecorded.topic, b'{"trace_id": "broken"}', key=b"dl")
        await producer.send_and_wait(TraceRecorded.topic, good.to_bytes(), key=b"dl")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        DeadLetter.topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id="integration-test-deadletters",
    )
    await consumer.start()
    try:
        letter = None
        async with asyncio.timeout(30):
            while letter is None:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        candidate = DeadLetter.model_validate_json(record.value)
                        if '"broken"' in candidate.payload:
                            letter = candidate
    finally:
        await consumer.stop()
    assert letter.consumer == "trace-collector"
    assert "tenant_id" in letter.reason and "request" in letter.reason
    assert await asyncio.to_thread(wait_for_trace, settings, "integration-good-1")


async def test_a_route_pinned_through_the_control_api_reaches_the_routers_table(stack):
    settings, _ = stack
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.trainer_port}") as channel:
        control = control_pb2_grpc.ControlServiceStub(channel)
        pinned = await control.PinTaskToExpert(
            control_pb2.PinTaskToExpertRequest(task_id="task-x", pinned=True, reason="test"),
            timeout=10,
        )
        assert pinned.rollout.pinned and pinned.rollout.changed_by.startswith("operator:")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await control.PromoteModel(
                control_pb2.PromoteModelRequest(
                    task_id="task-x", model="m", model_version=1, mode="full"
                ),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await control.ListRollouts(control_pb2.ListRolloutsRequest(), timeout=10)
        assert [r.task_id for r in listed.rollouts] == ["task-x"]

    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.router_port}") as channel:
        router = router_pb2_grpc.RouterServiceStub(channel)
        entries = []
        async with asyncio.timeout(20):
            while not entries:
                table = await router.GetRoutingTable(router_pb2.GetRoutingTableRequest())
                entries = [e for e in table.entries if e.task_id == "task-x"]
                await asyncio.sleep(0.2)
    assert (entries[0].target, entries[0].mode) == ("expert", "off")


def test_the_celery_worker_runs_tasks(stack):
    settings, _ = stack
    app = make_celery(f"redis://{settings.host}:{settings.redis_port}/0")
    described = app.send_task("interns.trainer.describe_worker").get(timeout=30)
    assert described["device"] == "cpu" and described["torch"].startswith("2.13.0")


def test_every_service_exposes_prometheus_metrics(stack):
    settings, _ = stack
    for port in (
        settings.gateway_ops_port,
        settings.router_ops_port,
        settings.trainer_ops_port,
        settings.collector_ops_port,
        settings.miner_ops_port,
    ):
        response = httpx.get(f"http://{settings.host}:{port}/metrics", timeout=5)
        assert response.headers["content-type"].startswith("text/plain"), port
        assert "# TYPE interns_" in response.text, port
    gateway_metrics = httpx.get(
        f"http://{settings.host}:{settings.gateway_ops_port}/metrics", timeout=5
    ).text
    assert 'interns_rpc_requests_total{code="OK",method="CreateChatCompletion"' in gateway_metrics
