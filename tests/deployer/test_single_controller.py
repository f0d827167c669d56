"""Two controller replicas on one database: only the lease holder rolls a version out;
when it stops, the standby takes over and carries the rollout on without repeating it."""

from __future__ import annotations

import asyncio
import contextlib

from sqlmodel import Session

from interns.common.db import Task
from interns.common.routes import RouteChanger
from interns.deployer.gating import Gate
from interns.deployer.lease import LeaseKeeper
from interns.deployer.rollouts import Deployer, control_loop
from interns.deployer.settings import DeployerSettings
from tests.deployer.test_rollouts import FakeTriton, compare, register, route


def replica(engine, triton, published, name: str) -> tuple[Deployer, LeaseKeeper]:
    async def publish(change):
        published.append((name, change))

    settings = DeployerSettings(gate=Gate(min_samples=5), canary_shares=[0.5])
    deployer = Deployer(engine, RouteChanger(engine, publish), triton, settings, lambda t, n: [])
    return deployer, LeaseKeeper(engine, "deployer", name, ttl_s=0.5)


async def test_two_replicas_never_both_act_and_the_standby_takes_over(engine):
    with Session(engine) as session:
        session.add(Task(task_id="weather", signature="sig"))
        session.commit()
    triton, published = FakeTriton(), []
    one, two = replica(engine, triton, published, "one"), replica(engine, triton, published, "two")
    register(engine, 1)  # registered while no controller ran: found by `resume`
    loops = [asyncio.create_task(control_loop(d, lease, 0.02)) for d, lease in (one, two)]
    await asyncio.sleep(0.5)
    assert len(triton.loads) == 1
    assert [(name, change.mode) for name, change in published] in (
        [("one", "shadow")],
        [("two", "shadow")],
    )
    leader, standby = (one, two) if published[0][0] == "one" else (two, one)
    assert leader[1].held and not standby[1].held
    for _ in range(5):
        leader[0].on_comparison(compare(1, True, "shadow"))
    await asyncio.sleep(0.2)
    assert route(engine).mode == "canary"

    # The leader stops (its loop ends, it releases the lease): the standby takes over.
    index = 0 if leader is one else 1
    loops[index].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loops[index]
    leader[1].release()
    await asyncio.sleep(0.3)
    assert standby[1].held
    assert len(triton.loads) == 2  # the standby loaded what it resumes (no-op in Triton)
    assert [c.mode for _, c in published][-1] == "shadow"  # restarted from shadow
    assert {name for name, _ in published[-1:]} == {standby[1].holder}
    loops[1 - index].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loops[1 - index]
