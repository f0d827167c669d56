"""The soak's accounting of lost traces: a memory broker's restart apart from the rest."""

from __future__ import annotations

from interns.bench.soak import (
    Call,
    Fault,
    broker_outages,
    broker_storage,
    failed_goals,
    in_outage,
)
from interns.stack.components import Component, Probe


def test_a_call_made_during_the_broker_outage_counts_as_lost_in_its_restart():
    faults = [
        Fault("kafka", killed_at=100.0, healthy_s=3.2, recovery_s=8.0),
        Fault("triton", killed_at=200.0, healthy_s=3.0, recovery_s=3.5),
    ]
    outages = broker_outages(faults)
    assert outages == [(98.0, 108.0)]
    assert in_outage(Call(started=99.0), outages)  # acknowledged, not yet read at the kill
    assert in_outage(Call(started=104.0), outages)  # just after the restart
    assert not in_outage(Call(started=90.0), outages)
    assert not in_outage(Call(started=201.0), outages)  # Triton's fault is not the broker's


def test_a_broker_that_never_recovered_covers_until_the_recovery_timeout():
    (outage,) = broker_outages([Fault("kafka", killed_at=100.0)])
    assert outage[1] > 300.0


def figures(storage: str, in_restart: int, other: int) -> dict:
    return {
        "broker_storage": storage,
        "lost_in_broker_restart": in_restart,
        "lost_other": other,
        "failed_calls": 0,
        "duplicates": 0,
    }


def test_every_loss_fails_the_run_whatever_the_broker_storage():
    # The gateway resends what a memory broker forgot: a loss there is a failure too.
    assert failed_goals(figures("memory", in_restart=0, other=0)) == []
    assert failed_goals(figures("memory", in_restart=50, other=0)) == ["lost: 50"]
    assert failed_goals(figures("memory", in_restart=50, other=1)) == ["lost: 51"]
    assert failed_goals(figures("s3", in_restart=2, other=1)) == ["lost: 3"]


def test_the_storage_engine_is_read_from_the_broker_command():
    kafka = Component(
        "kafka",
        ["tansu", "broker", "--storage-engine", "memory://tansu/"],
        Probe("tcp", "127.0.0.1:1"),
        "127.0.0.1:1",
    )
    assert broker_storage(kafka) == "memory"
