"""The deploy controller on real parts (Tansu Kafka, Triton, the replay expert, the router
and the controller, each its own process): a planted good version is promoted to full,
a planted bad one (it passed its offline evaluation, then disagrees on live traffic) is
rolled back to the serving version by itself, then unloaded once drained; no call fails."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from sqlmodel import Session, col, select

from interns.api.v1 import chat_pb2, router_pb2, router_pb2_grpc
from interns.bench.rollout import (
    MODEL,
    TASK,
    fresh_settings,
    planted_model,
    publish,
    register,
    running_parts,
    weather_bodies,
    weather_workload,
    write_version,
)
from interns.common.chat import input_from_openai
from interns.common.db import ModelVersion, Rollout, RouteChange, make_engine
from interns.common.signature import request_signature
from interns.deployer.triton import control_headers
from interns.stack.components import triton_control_key

pytestmark = pytest.mark.integration

ENV = {
    "router": {"ROUTER_CHECK_SHARE": "1.0"},
    "deployer": {
        "DEPLOYER_CANARY_SHARES": "[0.5]",
        "DEPLOYER_GATE__MIN_SAMPLES": "8",
        "DEPLOYER_GATE__MIN_AGREEMENT": "0.9",
        "DEPLOYER_TICK_S": "0.2",
        "DEPLOYER_DRAIN_GRACE_S": "3",
        "DEPLOYER_STAGE_TIMEOUT_S": "120",
    },
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    state = tmp_path_factory.mktemp("deployer")
    settings = fresh_settings(state, weather_workload(state / "weather.jsonl"), deployer=True)
    with running_parts(settings, ["kafka", "triton", "expert", "router", "deployer"], ENV):
        yield settings


class Traffic:
    """Calls to the router, each city from its own session, until stopped; records the
    routes and the failures."""

    def __init__(self, settings):
        self.address = f"{settings.host}:{settings.router_port}"
        self.bodies = weather_bodies(Path(settings.workload))
        self.routes: list[chat_pb2.RouteDecision] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()

    async def run(self, workers: int = 4) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)

            async def worker(number: int) -> None:
                sent = number
                while not self._stop.is_set():
                    body = self.bodies[sent % len(self.bodies)]
                    request = router_pb2.RouteChatCompletionRequest(
                        trace_id=f"t{number}-{sent}",
                        metadata=chat_pb2.RequestMetadata(
                            tenant_id="acme", session_id=f"s{sent % 40}"
                        ),
                        input=input_from_openai(body),
                    )
                    sent += workers
                    try:
                        answer = await stub.RouteChatCompletion(request, timeout=10)
                        self.routes.append(answer.route)
                    except grpc.aio.AioRpcError as error:
                        self.failures.append(error.code().name)
                    await asyncio.sleep(0.02)

            await asyncio.gather(*(worker(n) for n in range(workers)))

    def stop(self) -> None:
        self._stop.set()


async def until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def current_route(engine) -> Rollout | None:
    with Session(engine) as session:
        return session.get(Rollout, TASK)


def audit(engine) -> list[RouteChange]:
    with Session(engine) as session:
        return list(session.exec(select(RouteChange).order_by(col(RouteChange.id))))


async def router_applied(settings, mode: str, version: int) -> None:
    """Returns once the router's table routes the task so."""
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.router_port}") as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        async with asyncio.timeout(20):
            while True:
                table = await stub.GetRoutingTable(router_pb2.GetRoutingTableRequest())
                if any(
                    e.task_id == TASK and e.mode == mode and e.model_version == version
                    for e in table.entries
                ):
                    return
                await asyncio.sleep(0.1)


def loaded_versions(settings) -> set[int]:
    client = triton.InferenceServerClient(f"{settings.host}:{settings.triton_grpc_port}")
    key = control_headers(triton_control_key(settings))
    index = client.get_model_repository_index(headers=key, as_json=True).get("models", [])
    return {
        int(m["version"])
        for m in index
        if m.get("name") == MODEL and m.get("state") == "READY" and m.get("version")
    }


async def test_a_good_version_is_promoted_to_full_and_a_bad_one_rolled_back(parts):
    settings = parts
    engine = make_engine(settings.resolved_database_url)
    bootstrap = settings.resolved_kafka_bootstrap_servers
    repository = settings.state_dir.resolve() / "model-repository"
    signature = request_signature(weather_bodies(Path(settings.workload))[0])
    traffic = Traffic(settings)
    load = asyncio.create_task(traffic.run())
    try:
        # A good version: shadow, canary 50%, full, each on 8 agreeing live comparisons.
        write_version(repository, MODEL, 1, planted_model())
        await publish(
            bootstrap, register(settings.resolved_database_url, TASK, signature, MODEL, 1, 0.9)
        )
        full = await until(
            lambda: (
                (r := current_route(engine)) and r.mode == "full" and r.model_version == 1 and r
            ),
            120,
            "version 1 at full",
        )
        assert full.target == MODEL and full.changed_by == "controller"
        assert [(c.mode, c.model_version) for c in audit(engine)] == [
            ("shadow", 1),
            ("canary", 1),
            ("full", 1),
        ]
        await router_applied(settings, "full", 1)
        await asyncio.sleep(0.5)  # calls routed before the change
        served = len(traffic.routes)
        await until(lambda: len(traffic.routes) > served + 20, 30, "calls served at full")
        assert {r.target for r in traffic.routes[served:]} == {"intern"}

        # A bad version: it passed offline (a better score), answers a wrong city live.
        write_version(repository, MODEL, 2, planted_model(good_calls=0))
        started = time.monotonic()
        await publish(
            bootstrap, register(settings.resolved_database_url, TASK, signature, MODEL, 2, 0.95)
        )
        back = await until(
            lambda: [c for c in audit(engine) if c.reason.startswith("rollback of")],
            120,
            "the rollback",
        )
        rollback = back[0]
        assert (rollback.target, rollback.model_version, rollback.mode) == (MODEL, 1, "full")
        assert rollback.changed_by == "controller"
        assert "intern-weather v2 to intern-weather v1: live agreement 0.00" in rollback.reason
        assert time.monotonic() - started < 60
        with Session(engine) as session:
            assert session.get(ModelVersion, (MODEL, 2)).status == "rolled_back"
            assert session.get(ModelVersion, (MODEL, 1)).status == "serving"
        # v2 is unloaded once drained; v1 keeps serving.
        await until(lambda: loaded_versions(settings) == {1}, 60, "version 2 unloaded")
        await router_applied(settings, "full", 1)
        served = len(traffic.routes)
        await until(lambda: len(traffic.routes) > served + 20, 30, "calls after the rollback")
        assert {(r.target, r.model_version) for r in traffic.routes[served:]} == {("intern", 1)}
    finally:
        traffic.stop()
        await load
        engine.dispose()
    assert traffic.failures == []
    assert not any(r.model_version == 2 and r.target == "intern" for r in traffic.routes)


BROKEN = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError("boom"))
            for _ in requests
        ]
"""


async def test_a_version_that_errors_on_live_calls_is_rolled_back_for_its_fallbacks(parts):
    settings = parts
    engine = make_engine(settings.resolved_database_url)
    repository = settings.state_dir.resolve() / "model-repository"
    signature = request_signature(weather_bodies(Path(settings.workload))[0])
    before = len(audit(engine))
    traffic = Traffic(settings)
    load = asyncio.create_task(traffic.run())
    try:
        # It loads (Triton runs no call at load), and its warm-up has no stored call here.
        write_version(repository, MODEL, 3, BROKEN)
        registered = register(settings.resolved_database_url, TASK, signature, MODEL, 3, 0.99)
        await publish(settings.resolved_kafka_bootstrap_servers, registered)
        back = await until(
            lambda: [c for c in audit(engine)[before:] if c.reason.startswith("rollback of")],
            120,
            "the rollback",
        )
        assert "rollback of intern-weather v3" in back[0].reason
        assert "fallback rate" in back[0].reason
    finally:
        traffic.stop()
        await load
        engine.dispose()
    assert traffic.failures == []
