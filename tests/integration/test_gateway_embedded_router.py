"""The local stack's gateway runs the router in its own process (GATEWAY_ROUTER=embedded):
it takes routes live from the real rollout topic and serves an intern on the real Triton,
as the router service does, and keeps the router's metrics."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from interns.api.v1 import chat_pb2, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai
from interns.common.events import RolloutChanged
from interns.common.intern_contract import config_pbtxt
from interns.common.signature import request_signature
from tests.conftest import openai_log_line
from tests.integration.test_router_interns import GOOD

pytestmark = pytest.mark.integration

MODEL = "intern-gateway-embedded"
TASK = "weather-as-json"


def weather_as_json(city: str) -> dict:
    # A response format of its own gives these calls a signature no other test routes;
    # the replay expert still answers them (it matches on the conversation only).
    return {
        **openai_log_line(city, "embedded")["request"],
        "response_format": {"type": "json_object"},
    }


async def publish(settings, change: RolloutChanged) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=f"{settings.host}:{settings.kafka_port}")
    await producer.start()
    try:
        await producer.send_and_wait(RolloutChanged.topic, change.to_bytes(), key=change.key())
    finally:
        await producer.stop()


async def test_the_gateway_routes_to_an_intern_from_the_rollout_topic(stack_triton, auth):
    settings = stack_triton.settings
    stack_triton.plant(MODEL, GOOD, config_pbtxt(MODEL))
    stack_triton.load(MODEL)
    request = gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(agent_id="weather-bot", session_id="embedded"),
        input=input_from_openai(weather_as_json("Lima")),
    )
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.gateway_port}") as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        before = await gateway.CreateChatCompletion(request, metadata=auth, timeout=20)
        assert (before.route.target, before.route.reason) == ("expert", "no task matched")

        await publish(
            settings,
            RolloutChanged(
                task_id=TASK,
                signature=request_signature(weather_as_json("Lima")),
                target=MODEL,
                model_version=1,
                mode="full",
                changed_by="test",
                reason="integration test",
            ),
        )
        async with asyncio.timeout(30):
            while True:
                answer = await gateway.CreateChatCompletion(request, metadata=auth, timeout=20)
                if answer.route.target == "intern":
                    break
                await asyncio.sleep(0.2)

    assert (answer.route.model, answer.route.task_id, answer.route.mode) == (MODEL, TASK, "full")
    (call,) = answer.output.message.tool_calls
    assert call.function.name == "GetWeather" and '"city": "Lima"' in call.function.arguments

    ops = f"http://{settings.host}:{settings.gateway_ops_port}"
    async with httpx.AsyncClient(base_url=ops, timeout=5) as http:
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert ready.json()["checks"]["router"] is True
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    routed = ("reason", "full"), ("service", "router"), ("target", "intern")
    assert samples[("interns_routed_calls_total", routed)] >= 1
    handled = ("code", "OK"), ("method", "RouteChatCompletion"), ("service", "router")
    assert samples[("interns_rpc_requests_total", handled)] >= 2
