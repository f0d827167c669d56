"""Sampled checks: for a share of the calls an intern serves, the expert answers too (off
the critical path) and the comparison is published, so the deploy controller can measure
live agreement and the fallback rate in canary and full modes. A call the intern defers
(below its confidence threshold) is the expert's by design: no comparison, no fallback."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY

from interns.api.v1 import chat_pb2
from interns.common.chat import input_from_openai
from interns.common.events import RolloutChanged, ShadowCompared
from interns.common.signature import request_signature
from interns.router.checks import CheckFailed
from interns.router.interns import InternDeferred, InternFailed
from interns.router.routing import RoutingTable
from interns.router.serving import Router, RouterConfig
from tests.conftest import openai_log_line
from tests.servers import replay_expert


class FixedIntern:
    """An intern that answers every call with the weather of one city (or fails)."""

    def __init__(self, city: str | None):
        self.city = city

    async def answer(self, model, version, body, timeout_s, check):
        if self.city is None:
            raise InternFailed("triton: model not ready")
        arguments = json.dumps({"city": self.city, "date": "2019-03-02"})
        message = {
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "GetWeather", "arguments": arguments},
                }
            ]
        }
        check(message)
        return message


class ScriptedIntern:
    """An intern that, call after call, answers right (`ok`), defers (`defer`, below its
    confidence threshold) or calls a tool the request does not offer (`invalid`); it
    raises what the real client raises for each."""

    def __init__(self, script: list[str]):
        self.script = iter(script)

    async def answer(self, model, version, body, timeout_s, check):
        step = next(self.script)
        if step == "defer":
            raise InternDeferred("intern deferred (confidence 0.2)")
        name = "LaunchRockets" if step == "invalid" else "GetWeather"
        arguments = json.dumps({"city": "Lima", "date": "2019-03-02"})
        message = {
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}
            ]
        }
        try:
            check(message)
        except CheckFailed as error:
            raise InternFailed(f"check failed: {error}") from None
        return message


def full_route(body, mode: str = "full") -> RoutingTable:
    table = RoutingTable()
    table.apply(
        RolloutChanged(
            task_id="weather",
            signature=request_signature(body),
            target="intern-weather",
            model_version=3,
            mode=mode,
            canary_share=1.0 if mode == "canary" else 0.0,
            changed_by="test",
        )
    )
    return table


async def serve(
    weather_log,
    intern,
    check_share: float,
    calls: int = 4,
    mode: str = "full",
    streamed: bool = False,
) -> tuple[list, list]:
    body = openai_log_line("Lima", "s")["request"]
    published: list[ShadowCompared] = []

    async def publish(event: ShadowCompared) -> None:
        published.append(event)

    async with replay_expert(weather_log) as expert:
        config = RouterConfig("replay", check_share=check_share)
        router = Router(full_route(body, mode), expert, config, intern, publish)
        metadata = chat_pb2.RequestMetadata(tenant_id="acme", session_id="s")
        routes = []
        for n in range(calls):
            if streamed:
                chunks = router.stream(input_from_openai(body), metadata, f"t{n}", 10.0)
                route = [chunk.route async for chunk in chunks][0]
            else:
                _, route = await router.complete(input_from_openai(body), metadata, f"t{n}", 10.0)
            routes.append(route)
        await router.drain()
    await asyncio.sleep(0)
    return routes, published


def counted(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, {"service": "router", **labels}) or 0.0


def fallbacks() -> float:
    return counted("interns_fallbacks_total", task="weather", model="intern-weather")


async def test_every_sampled_intern_answer_is_compared_with_the_expert(weather_log):
    routes, published = await serve(weather_log, FixedIntern("Lima"), check_share=1.0)
    assert [r.target for r in routes] == ["intern"] * 4
    assert len(published) == 4
    assert {(e.kind, e.agree, e.fallback, e.model, e.model_version) for e in published} == {
        ("check", True, False, "intern-weather", 3)
    }


async def test_a_wrong_intern_answer_is_published_as_a_disagreement(weather_log):
    _, published = await serve(weather_log, FixedIntern("Oslo"), check_share=1.0)
    assert published and not any(e.agree for e in published)
    assert all(e.kind == "check" and 0 < e.score < 1 for e in published)


async def test_a_sampled_call_that_fell_back_is_published_as_a_fallback(weather_log):
    routes, published = await serve(weather_log, FixedIntern(None), check_share=1.0)
    assert all(r.target == "expert" and r.reason.startswith("fallback") for r in routes)
    assert len(published) == 4
    assert all(e.fallback and not e.agree and e.model == "intern-weather" for e in published)


async def test_no_checks_when_the_share_is_zero(weather_log):
    routes, published = await serve(weather_log, FixedIntern("Lima"), check_share=0.0)
    assert [r.target for r in routes] == ["intern"] * 4
    assert published == []


@pytest.mark.parametrize("mode", ["full", "canary"])
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_deferred_call_is_the_experts_with_no_comparison_and_no_fallback(
    weather_log, mode, streamed
):
    intern = ScriptedIntern(["defer", "invalid", "defer", "ok"])
    before = {
        "fallbacks": fallbacks(),
        "deferred": counted("interns_routed_calls_total", target="expert", reason="deferred"),
        "checks deferred": counted("interns_routed_calls_total", target="check", reason="deferred"),
    }

    routes, published = await serve(weather_log, intern, 1.0, mode=mode, streamed=streamed)

    assert [r.target for r in routes] == ["expert", "expert", "expert", "intern"]
    assert [r.reason.split(":")[0] for r in routes[:3]] == ["deferred", "fallback", "deferred"]
    assert routes[0].reason == "deferred: intern deferred (confidence 0.2)"
    assert "LaunchRockets" in routes[1].reason
    # Only the invalid answer (a failed check) and the served one are compared.
    assert len(published) == 2
    assert {(e.trace_id, e.fallback, e.agree) for e in published} == {
        ("t1", True, False),
        ("t3", False, True),
    }
    assert fallbacks() - before["fallbacks"] == 1
    assert (
        counted("interns_routed_calls_total", target="expert", reason="deferred")
        - before["deferred"]
        == 2
    )
    assert (
        counted("interns_routed_calls_total", target="check", reason="deferred")
        - before["checks deferred"]
        == 2
    )
