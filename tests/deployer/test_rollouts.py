"""The controller end to end on a real (SQLite) database with Triton stood in for: a good
version goes shadow -> canary -> full on agreeing live comparisons, a bad one is rolled
back with the reason in the audit trail, a replaced version is unloaded once drained."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from interns.common.db import ModelVersion, Rollout, RouteChange, Task, Trace
from interns.common.events import ModelRegistered, RolloutChanged, ShadowCompared
from interns.common.routes import RouteChanger
from interns.deployer.gating import Gate
from interns.deployer.rollouts import Deployer
from interns.deployer.settings import DeployerSettings
from interns.deployer.triton import TritonError

MODEL = "intern-weather"


class FakeTriton:
    """Triton's model control, in memory: which versions are loaded, calls per version."""

    def __init__(self):
        self.loaded: dict[str, set[int]] = {}
        self.calls: dict[tuple[str, int], int] = {}
        self.loads: list[tuple[str, set[int]]] = []
        self.fail_answers = False

    async def loaded_versions(self, model):
        return set(self.loaded.get(model, set()))

    async def serve_versions(self, model, versions, timeout_s):
        self.loads.append((model, set(versions)))
        self.loaded[model] = set(versions)

    async def answer(self, model, version, body, timeout_s):
        if self.fail_answers:
            raise TritonError("model.py raised")
        self.calls[(model, version)] = self.calls.get((model, version), 0) + 1
        return {"content": "ok"}

    async def call_count(self, model, version):
        return self.calls.get((model, version), 0)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def world(engine):
    published: list[RolloutChanged] = []

    async def publish(change):
        published.append(change)

    with Session(engine) as session:
        session.add(Task(task_id="weather", signature="sig"))
        session.commit()
    triton, clock = FakeTriton(), Clock()
    asked: list[tuple[str, str]] = []

    async def request_training(task_id, reason):
        asked.append((task_id, reason))

    settings = DeployerSettings(
        drift_every_s=60,
        drift_agreement_drop=0.02,
        drift_cooldown_s=3600,
        canary_shares=[0.1, 0.5],
        gate=Gate(min_samples=10, min_agreement=0.9, max_fallback_rate=0.1),
        drain_grace_s=10,
        warmup_requests=2,
    )
    deployer = Deployer(
        engine,
        RouteChanger(engine, publish),
        triton,
        settings,
        lambda task_id, n: [{"messages": [{"role": "user", "content": "hi"}]}] * n,
        clock=clock,
        request_training=request_training,
    )
    deployer.asked = asked
    return deployer, triton, clock, published, engine


def register(engine, version: int, exact_match: float = 0.95, **more) -> ModelRegistered:
    with Session(engine) as session:
        session.add(
            ModelVersion(
                model=MODEL,
                version=version,
                task_id="weather",
                scores={"exact_match": exact_match, **more},
            )
        )
        session.commit()
    return ModelRegistered(
        task_id="weather",
        model=MODEL,
        version=version,
        base_model="tiny",
        passed=True,
        scores={"exact_match": exact_match},
    )


def compare(version: int, agree: bool, kind: str, fallback: bool = False) -> ShadowCompared:
    return ShadowCompared(
        trace_id="t",
        task_id="weather",
        model=MODEL,
        model_version=version,
        agree=agree,
        score=1.0 if agree else 0.0,
        expert_answer="{}",
        intern_answer="{}",
        kind=kind,
        fallback=fallback,
        occurred_at=datetime.now(UTC) + timedelta(seconds=1),
    )


def status(engine, version: int) -> str:
    with Session(engine) as session:
        return session.get(ModelVersion, (MODEL, version)).status


def route(engine) -> Rollout:
    with Session(engine) as session:
        return session.get(Rollout, "weather")


async def promote_to_full(deployer, version: int) -> None:
    for kind in ("shadow", "check", "check"):
        for _ in range(10):
            deployer.on_comparison(compare(version, True, kind))
        await deployer.tick()


async def test_a_good_version_goes_shadow_canary_full(world):
    deployer, triton, _, published, engine = world
    await deployer.on_registered(register(engine, 1))
    assert triton.loaded[MODEL] == {1} and triton.calls[(MODEL, 1)] == 2  # loaded, warmed
    assert (route(engine).mode, route(engine).model_version) == ("shadow", 1)
    await promote_to_full(deployer, 1)
    assert [(e.mode, e.canary_share) for e in published] == [
        ("shadow", 0.0),
        ("canary", 0.1),
        ("canary", 0.5),
        ("full", 0.0),
    ]
    assert all(e.changed_by == "controller" for e in published)
    assert "agreement 1.00" in published[-1].reason
    assert status(engine, 1) == "serving"


async def test_a_bad_version_is_rolled_back_with_the_reason(world):
    deployer, triton, clock, published, engine = world
    await deployer.on_registered(register(engine, 1))
    for agree in (True, False, False):
        deployer.on_comparison(compare(1, agree, "shadow"))
    await deployer.tick()
    last = published[-1]
    assert (last.target, last.mode) == ("expert", "off")
    assert "rollback of intern-weather v1 to the expert: live agreement 0.33" in last.reason
    assert status(engine, 1) == "rolled_back"
    with Session(engine) as session:
        audit = session.exec(select(RouteChange).order_by(col(RouteChange.id).desc())).first()
    assert audit.changed_by == "controller" and audit.reason == last.reason
    # Drained: unloaded after the grace period with no call counted.
    clock.now += 10
    await deployer.tick()
    assert triton.loaded[MODEL] == {1}
    clock.now += 10
    await deployer.tick()
    assert triton.loaded[MODEL] == set()


async def test_a_version_that_falls_back_in_canary_returns_to_the_serving_one(world):
    deployer, triton, _, published, engine = world
    await deployer.on_registered(register(engine, 1))
    await promote_to_full(deployer, 1)
    await deployer.on_registered(register(engine, 2, exact_match=0.97))
    assert triton.loaded[MODEL] == {1, 2}
    for _ in range(10):
        deployer.on_comparison(compare(2, True, "shadow"))
    await deployer.tick()
    assert (route(engine).mode, route(engine).model_version) == ("canary", 2)
    for _ in range(2):
        deployer.on_comparison(compare(2, False, "check", fallback=True))
    await deployer.tick()
    assert (route(engine).target, route(engine).mode, route(engine).model_version) == (
        MODEL,
        "full",
        1,
    )
    assert "fallback rate" in published[-1].reason
    assert (status(engine, 1), status(engine, 2)) == ("serving", "rolled_back")


async def test_a_replaced_version_is_unloaded_only_once_drained(world):
    deployer, triton, clock, _, engine = world
    await deployer.on_registered(register(engine, 1))
    await promote_to_full(deployer, 1)
    await deployer.on_registered(register(engine, 2, exact_match=0.97))
    await promote_to_full(deployer, 2)
    assert status(engine, 1) == "replaced"
    clock.now += 10
    await deployer.tick()
    triton.calls[(MODEL, 1)] += 3  # calls still reaching v1 (routers not yet moved)
    clock.now += 10
    await deployer.tick()
    assert triton.loaded[MODEL] == {1, 2}
    clock.now += 10
    await deployer.tick()
    assert triton.loaded[MODEL] == {2}


async def test_a_serving_version_whose_agreement_drops_is_rolled_back(world):
    deployer, _, _, published, engine = world
    await deployer.on_registered(register(engine, 1))
    await promote_to_full(deployer, 1)
    for _ in range(3):
        deployer.on_comparison(compare(1, False, "check"))
    await deployer.tick()
    assert "live agreement" in published[-1].reason and route(engine).target == "expert"


async def test_a_redelivered_event_and_foreign_evidence_change_nothing(world):
    deployer, triton, _, published, engine = world
    event = register(engine, 1)
    await deployer.on_registered(event)
    await deployer.on_registered(event)
    assert len(published) == 1 and len(triton.loads) == 1
    deployer.on_comparison(compare(7, False, "shadow"))  # another version
    deployer.on_comparison(compare(1, False, "check"))  # not a shadow comparison
    stale = compare(1, False, "shadow")
    deployer.on_comparison(
        stale.model_copy(update={"occurred_at": datetime(2020, 1, 1, tzinfo=UTC)})
    )
    await deployer.tick()
    assert route(engine).mode == "shadow"


async def test_a_version_that_does_not_beat_the_serving_one_is_not_rolled_out(world):
    deployer, _, _, published, engine = world
    await deployer.on_registered(register(engine, 1, exact_match=0.95))
    await promote_to_full(deployer, 1)
    count = len(published)
    await deployer.on_registered(register(engine, 2, exact_match=0.93))
    assert len(published) == count and status(engine, 2) == "not_better"


async def test_a_version_that_fails_its_warm_up_is_never_routed(world):
    deployer, triton, clock, published, engine = world
    triton.fail_answers = True
    await deployer.on_registered(register(engine, 1))
    assert published == [] and status(engine, 1) == "failed"


async def test_an_operator_change_takes_the_task_out_of_the_controllers_hands(world):
    deployer, _, _, published, engine = world
    await deployer.on_registered(register(engine, 1))
    deployer.on_route(
        RolloutChanged(
            task_id="weather", target="expert", mode="off", pinned=True, changed_by="operator:ann"
        )
    )
    for _ in range(10):
        deployer.on_comparison(compare(1, True, "shadow"))
    await deployer.tick()
    assert len(published) == 1 and status(engine, 1) == "abandoned"


async def test_a_served_task_whose_agreement_slips_is_sent_back_to_training_once(world):
    deployer, _, clock, published, engine = world
    await deployer.on_registered(register(engine, 1))
    await promote_to_full(deployer, 1)
    # 1 in 20 disagrees: within the gate (no rollback), but below the agreement at full.
    for n in range(40):
        deployer.on_comparison(compare(1, n % 20 != 0, "check"))
    await deployer.tick()
    assert route(engine).mode == "full" and deployer.asked == []  # not yet time to look
    clock.now += 61
    await deployer.tick()
    assert deployer.asked == [("weather", "live agreement fell from 1.00 to 0.95")]
    clock.now += 61
    await deployer.tick()
    assert len(deployer.asked) == 1  # the cooldown


async def test_the_serving_version_is_compared_on_the_candidates_held_out_set(world):
    deployer, _, _, published, engine = world
    await deployer.on_registered(register(engine, 1, exact_match=0.95))
    await promote_to_full(deployer, 1)
    # On the new held-out set the serving v1 scores 0.90: the candidate's 0.93 beats it.
    event = register(engine, 2, exact_match=0.93, baseline_version=1.0, baseline_exact_match=0.9)
    await deployer.on_registered(event)
    assert status(engine, 2) != "not_better" and route(engine).model_version == 2
    event = register(engine, 3, exact_match=0.96, baseline_version=2.0, baseline_exact_match=0.97)
    await deployer.on_registered(event)
    assert status(engine, 3) == "not_better"


def store_calls(engine, deferred: int, by_intern: int) -> None:
    with Session(engine) as session:
        for n in range(deferred + by_intern):
            defers = n < deferred
            session.add(
                Trace(
                    trace_id=uuid.uuid4().hex,
                    tenant_id="acme",
                    request={"messages": []},
                    task_id="weather",
                    route_target="expert" if defers else "intern",
                    route_reason="deferred: intern deferred (confidence 0.1)" if defers else "",
                )
            )
        session.commit()


async def test_a_selective_intern_is_sent_back_only_when_it_defers_more_than_evaluated(world):
    deployer, _, clock, _, engine = world
    await deployer.on_registered(register(engine, 1, coverage=0.4, train_examples=1000))
    await promote_to_full(deployer, 1)
    store_calls(engine, deferred=60, by_intern=40)  # as evaluated: it keeps 40%
    clock.now += 61
    await deployer.tick()
    assert deployer.asked == []
    store_calls(engine, deferred=200, by_intern=0)  # now it keeps 40 of 300 calls
    clock.now += 3700
    await deployer.tick()
    assert deployer.asked == [
        ("weather", "the intern defers 87% of the task's calls (60% in its evaluation)")
    ]
