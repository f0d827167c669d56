"""Operators steer routes: promote, roll back, pin; every change is audited and published."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from interns.common.db import ModelVersion, RouteChange, make_engine, upgrade_database
from interns.trainer.control import ControlError, ControlPlane


@pytest.fixture
def plane(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as session:
        for version in (1, 2):
            session.add(ModelVersion(model="intern-t1", version=version, task_id="t1"))
        session.commit()
    published = []

    async def publish(change):
        published.append(change)

    return ControlPlane(engine, publish), published, engine


async def test_promote_then_rollback_returns_to_the_previous_route(plane):
    control, published, engine = plane
    await control.promote("t1", "intern-t1", 1, "full", 0, "operator:ann", "v1 is good")
    await control.promote("t1", "intern-t1", 2, "canary", 0.1, "operator:ann", "try v2")
    rollout = await control.rollback("t1", "operator:bob", "v2 disagrees")
    assert (rollout.target, rollout.model_version, rollout.mode) == ("intern-t1", 1, "full")
    assert [(e.mode, e.model_version) for e in published] == [
        ("full", 1),
        ("canary", 2),
        ("full", 1),
    ]
    assert published[-1].changed_by == "operator:bob" and published[-1].reason == "v2 disagrees"
    with Session(engine) as session:
        assert len(session.exec(select(RouteChange)).all()) == 3


async def test_a_pinned_task_stays_on_the_expert_until_unpinned(plane):
    control, published, _ = plane
    rollout = await control.pin("t1", True, "operator:ann", "incident 42")
    assert (rollout.target, rollout.pinned) == ("expert", True)
    with pytest.raises(ControlError, match="pinned"):
        await control.promote("t1", "intern-t1", 1, "full", 0, "controller", "auto")
    await control.pin("t1", False, "operator:ann", "incident closed")
    await control.promote("t1", "intern-t1", 1, "full", 0, "controller", "auto")
    assert published[-1].target == "intern-t1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("intern-t1", 9, "full", 0), "no model"),
        (("intern-t1", 1, "everywhere", 0), "mode"),
        (("intern-t1", 1, "canary", 1.5), "canary_share"),
    ],
)
async def test_a_bad_promotion_is_refused_and_changes_nothing(plane, args, message):
    control, published, _ = plane
    with pytest.raises(ControlError, match=message):
        await control.promote("t1", *args, "operator:ann", "")
    assert published == []


async def test_rolling_back_a_task_without_history_says_so(plane):
    control, _, _ = plane
    with pytest.raises(ControlError, match="no route to roll back"):
        await control.rollback("t9", "operator:ann", "")


def test_api_keys_are_created_listed_without_the_key_and_revoked(plane):
    control, published, _ = plane
    created = control.create_api_key(" acme ", "agent", "operator:ann")
    assert created.record.tenant_id == "acme" and created.record.created_by == "operator:ann"
    (listed,) = control.list_api_keys("acme")
    assert listed.key_id == created.record.key_id
    assert created.key not in listed.model_dump_json()
    assert control.list_api_keys("globex") == []
    revoked = control.revoke_api_key(created.record.key_id)
    assert revoked.revoked_at is not None
    assert published == []  # keys are read by the gateways from the database, not events


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda c: c.create_api_key("", "", "operator:ann"), "invalid", "tenant_id: is required"),
        (lambda c: c.revoke_api_key(""), "invalid", "key_id: is required"),
        (lambda c: c.revoke_api_key("key_nope"), "not_found", "key_id: no API key"),
    ],
)
def test_a_bad_key_request_is_refused_naming_the_field(plane, call, kind, message):
    control, _, _ = plane
    with pytest.raises(ControlError, match=message) as refused:
        call(control)
    assert refused.value.kind == kind
