"""Sampled checks: for a share of the calls an intern serves, the expert answers too (off
the critical path) and the comparison is published, so the deploy controller can measure
live agreement and the fallback rate in canary and full modes."""

from __future__ import annotations

import asyncio
import json

from interns.api.v1 import chat_pb2
from interns.common.chat import input_from_openai
from interns.common.events import RolloutChanged, ShadowCompared
from interns.common.signature import request_signature
from interns.router.interns import InternFailed
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


def full_route(body) -> RoutingTable:
    table = RoutingTable()
    table.apply(
        RolloutChanged(
            task_id="weather",
            signature=request_signature(body),
            target="intern-weather",
            model_version=3,
            mode="full",
            changed_by="test",
        )
    )
    return table


async def serve(weather_log, intern, check_share: float, calls: int = 4) -> tuple[list, list]:
    body = openai_log_line("Lima", "s")["request"]
    published: list[ShadowCompared] = []

    async def publish(event: ShadowCompared) -> None:
        published.append(event)

    async with replay_expert(weather_log) as expert:
        config = RouterConfig("replay", check_share=check_share)
        router = Router(full_route(body), expert, config, intern, publish)
        metadata = chat_pb2.RequestMetadata(tenant_id="acme", session_id="s")
        routes = []
        for n in range(calls):
            _, route = await router.complete(input_from_openai(body), metadata, f"t{n}", 10.0)
            routes.append(route)
        await router.drain()
    await asyncio.sleep(0)
    return routes, published


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
