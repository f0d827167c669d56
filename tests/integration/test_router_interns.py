"""The router serves interns on the real Triton, routed live from the real rollout topic:
full, canary and shadow modes, and the cascade to the expert when an intern's answer
fails its checks or Triton cannot answer."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from interns.api.v1 import chat_pb2, router_pb2, router_pb2_grpc
from interns.common.chat import input_from_openai
from interns.common.events import RolloutChanged, ShadowCompared
from interns.common.intern_contract import config_pbtxt
from interns.common.signature import request_signature
from tests.conftest import openai_log_line

pytestmark = pytest.mark.integration

# An intern that reads the city from the question: right on the weather workload.
GOOD = """
import json
import re

import numpy as np
import triton_python_backend_utils as pb_utils


def answer(body):
    question = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    city = re.search(r"in (\\w+)", question).group(1)
    arguments = json.dumps({"city": city, "date": "2019-03-02"})
    return {"tool_calls": [{"id": "call_i", "type": "function",
                            "function": {"name": "GetWeather", "arguments": arguments}}]}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            bodies = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy()
            out = [[json.dumps(answer(json.loads(b[0]))).encode()] for b in bodies]
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("RESPONSE", np.array(out, dtype=object))]))
        return responses
"""

# An intern that calls a tool the request never offered: it must never be served.
BAD = GOOD.replace('"name": "GetWeather"', '"name": "LaunchRockets"')


# An intern unsure about Paris: it marks that answer `defer` (below its calibrated
# confidence threshold), as a trained intern does.
UNSURE = GOOD.replace(
    '    return {"tool_calls"',
    '    if city == "Paris":\n'
    '        return {"content": None, "confidence": 0.2, "defer": True}\n'
    '    return {"confidence": 0.97, "tool_calls"',
)


def weather(city: str = "Lima"):
    return openai_log_line(city, "s")["request"]


SIGNATURE = request_signature(weather())


@pytest.fixture(scope="module")
def interns(stack_triton):
    for name, source in (
        ("intern-weather-good", GOOD),
        ("intern-weather-bad", BAD),
        ("intern-weather-unsure", UNSURE),
    ):
        stack_triton.plant(name, source, config_pbtxt(name))
        stack_triton.load(name)
    return stack_triton.settings


async def route(settings, mode: str, target: str, share: float = 0.0) -> str:
    """Publishes a rollout for the weather task as the deploy controller does; returns
    once the router's table shows it."""
    task_id = "weather"
    change = RolloutChanged(
        task_id=task_id,
        signature=SIGNATURE,
        target=target,
        model_version=1,
        mode=mode,
        canary_share=share,
        changed_by="test",
        reason="integration test",
    )
    producer = AIOKafkaProducer(bootstrap_servers=f"{settings.host}:{settings.kafka_port}")
    await producer.start()
    try:
        await producer.send_and_wait(RolloutChanged.topic, change.to_bytes(), key=change.key())
    finally:
        await producer.stop()
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.router_port}") as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        async with asyncio.timeout(20):
            while True:
                table = await stub.GetRoutingTable(router_pb2.GetRoutingTableRequest())
                if any(
                    e.task_id == task_id
                    and e.mode == mode
                    and e.target == target
                    and abs(e.canary_share - share) < 1e-9
                    for e in table.entries
                ):
                    return task_id
                await asyncio.sleep(0.1)


async def ask(settings, city: str = "Lima", session: str = "s1", trace_id: str = ""):
    request = router_pb2.RouteChatCompletionRequest(
        trace_id=trace_id or uuid.uuid4().hex,
        metadata=chat_pb2.RequestMetadata(tenant_id="acme", session_id=session),
        input=input_from_openai(weather(city)),
    )
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.router_port}") as channel:
        return await router_pb2_grpc.RouterServiceStub(channel).RouteChatCompletion(
            request, timeout=20
        )


def city_of(response) -> str:
    return json.loads(response.output.message.tool_calls[0].function.arguments)["city"]


async def comparisons_until(settings, trace_id: str) -> list[ShadowCompared]:
    """Every comparison on the shadow topic from its start up to the one of `trace_id`
    (they share the task's key, so they come in the order they were published)."""
    consumer = AIOKafkaConsumer(
        ShadowCompared.topic,
        bootstrap_servers=f"{settings.host}:{settings.kafka_port}",
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex}",
    )
    await consumer.start()
    found: list[ShadowCompared] = []
    try:
        async with asyncio.timeout(20):
            while not any(event.trace_id == trace_id for event in found):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [ShadowCompared.model_validate_json(r.value) for r in records]
    finally:
        await consumer.stop()
    return found


async def test_in_full_mode_the_intern_answers(interns):
    await route(interns, "full", "intern-weather-good")
    response = await ask(interns, "Oslo")
    assert (response.route.target, response.route.model, response.route.reason) == (
        "intern",
        "intern-weather-good",
        "full",
    )
    assert city_of(response) == "Oslo"
    assert response.route.cost_usd == 0


async def test_an_intern_answer_that_fails_its_check_falls_back_to_the_expert(interns):
    await route(interns, "full", "intern-weather-bad")
    response = await ask(interns, "Kyoto")
    assert response.route.target == "expert"
    assert response.route.reason.startswith("fallback: check failed")
    assert "LaunchRockets" in response.route.reason
    assert city_of(response) == "Kyoto"
    assert response.route.cost_usd > 0


async def test_an_intern_that_defers_leaves_the_call_to_the_expert_without_tripping(interns):
    await route(interns, "full", "intern-weather-unsure")
    traces = {uuid.uuid4().hex for _ in range(30)}
    deferred = [await ask(interns, "Paris", trace_id=trace_id) for trace_id in traces]
    assert all(r.route.target == "expert" for r in deferred)
    assert all(city_of(r) == "Paris" for r in deferred)
    assert {r.route.reason for r in deferred} == {"deferred: intern deferred (confidence 0.2)"}
    # Deferring is not a fault: the breaker stays closed and the intern keeps its calls.
    sure = await ask(interns, "Lima")
    assert (sure.route.target, sure.route.model) == ("intern", "intern-weather-unsure")
    assert city_of(sure) == "Lima"
    # Nor is it a failed check: of the deferred calls the router sampled for checks
    # (ROUTER_CHECK_SHARE, 0.1), none was published. A shadow call, always compared,
    # marks where to stop reading.
    await route(interns, "shadow", "intern-weather-good")
    marker = uuid.uuid4().hex
    await ask(interns, "Lima", trace_id=marker)
    published = await comparisons_until(interns, marker)
    assert not [event for event in published if event.trace_id in traces]


async def test_a_model_triton_cannot_serve_falls_back_and_then_trips_its_breaker(interns):
    await route(interns, "full", "intern-not-loaded")
    reasons = [(await ask(interns, "Quito")).route.reason for _ in range(7)]
    assert reasons[0].startswith("fallback: triton:")
    assert reasons[-1] == "fallback: circuit open for intern-not-loaded v1"


async def test_a_canary_sends_its_share_of_sessions_to_the_intern(interns):
    await route(interns, "canary", "intern-weather-good", share=0.3)
    targets = [(await ask(interns, "Lima", session=f"c-{i}")).route.target for i in range(120)]
    share = targets.count("intern") / len(targets)
    assert 0.15 < share < 0.45, share
    again = [(await ask(interns, "Lima", session=f"c-{i}")).route.target for i in range(20)]
    assert again == targets[:20]


async def test_in_shadow_mode_the_expert_serves_and_both_answers_are_compared(interns):
    await route(interns, "shadow", "intern-weather-good")
    trace_id = uuid.uuid4().hex
    response = await ask(interns, "Paris", trace_id=trace_id)
    assert response.route.target == "expert" and response.route.mode == "shadow"
    published = await comparisons_until(interns, trace_id)
    (comparison,) = [event for event in published if event.trace_id == trace_id]
    assert comparison.model == "intern-weather-good" and comparison.task_id == "weather"
    # The recorded expert's date for Paris is 2019-03-02, as the intern says: they agree.
    assert comparison.agree and comparison.score == 1.0
