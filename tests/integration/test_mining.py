"""The miner on the real stack: calls through the gateway become a task, published on the
task topic and listed by the control API, under the id the router will match by."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from interns.api.v1 import (
    chat_pb2,
    control_pb2,
    control_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
)
from interns.common.chat import input_from_openai
from interns.common.events import TaskChanged
from interns.common.signature import request_signature
from interns.miner.mining import task_id_for
from tests.conftest import CITIES, openai_log_line

pytestmark = pytest.mark.integration


async def test_calls_through_the_gateway_become_a_published_and_listed_task(stack, auth):
    settings, _ = stack
    signature = request_signature(openai_log_line("Lima", "m")["request"])
    task_id = task_id_for(signature)
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.gateway_port}") as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for city in CITIES:
            await gateway.CreateChatCompletion(
                gateway_pb2.CreateChatCompletionRequest(
                    metadata=chat_pb2.RequestMetadata(session_id=f"mine-{city}"),
                    input=input_from_openai(openai_log_line(city, "m")["request"]),
                ),
                metadata=auth,
                timeout=20,
            )

    consumer = AIOKafkaConsumer(
        TaskChanged.topic,
        bootstrap_servers=f"{settings.host}:{settings.kafka_port}",
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex}",
    )
    await consumer.start()
    event = None
    try:
        # The miner passes every 10 s by default.
        async with asyncio.timeout(45):
            while event is None:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        candidate = TaskChanged.model_validate_json(record.value)
                        if candidate.task_id == task_id and candidate.size >= len(CITIES):
                            event = candidate
    finally:
        await consumer.stop()
    assert event.signature == signature
    assert event.output_kind == "tool_call"
    assert "GetWeather" in event.label

    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.trainer_port}") as channel:
        control = control_pb2_grpc.ControlServiceStub(channel)
        got = await control.GetTask(control_pb2.GetTaskRequest(task_id=task_id), timeout=10)
    assert got.task.size >= len(CITIES) and got.task.output_kind == "tool_call"
