"""Acknowledged traces held until the trace-collector has committed past them: what is
forgotten, what is sent again, and the bound. (A broker that really forgets is in
tests/integration/test_kafka_outage.py.)"""

from __future__ import annotations

from interns.gateway.delivery import HeldTraces


def records(*numbers: int, size: int = 10) -> list[tuple[bytes, bytes]]:
    return [(f"k{n}".encode(), f"{n:0{size}d}".encode()) for n in numbers]


def test_committed_batches_are_forgotten_and_others_kept():
    held = HeldTraces(max_bytes=1 << 20)
    held.acknowledged(0, 100, records(1, 2, 3))  # offsets 100..102
    held.acknowledged(0, 103, records(4, 5))  # 103..104
    held.acknowledged(1, 7, records(6))  # partition 1, offset 7
    assert held.count == 6

    # The collector read up to 103 on partition 0 (next offset 103) and nothing on 1.
    assert held.committed({0: 103}, held.epoch) == 3
    assert held.count == 3
    assert held.partitions() == [0, 1]

    # A batch read only in part stays held whole.
    assert held.committed({0: 104, 1: 7}, held.epoch) == 0
    assert held.committed({0: 105, 1: 8}, held.epoch) == 3
    assert held.count == 0 and held.size == 0
    assert held.take_all() == []


def test_offsets_going_back_give_back_every_held_record_in_order():
    held = HeldTraces(max_bytes=1 << 20)
    held.acknowledged(0, 500, records(1, 2))
    held.acknowledged(2, 40, records(3))
    held.acknowledged(0, 502, records(4))

    # The broker restarted with an empty log: partition 2 acknowledges at offset 0.
    resend, released = held.acknowledged(2, 0, records(5))
    assert released == 0
    assert resend == records(1, 2, 4, 3)  # oldest first per partition
    # Only the batch acknowledged by the new log is held now.
    assert held.count == 1
    assert held.partitions() == [2]
    # The new log's offsets are the reference from now on: no false alarm.
    assert held.acknowledged(0, 0, records(6)) == ([], 0)
    assert held.acknowledged(0, 1, records(7)) == ([], 0)


def test_offsets_asked_before_a_reset_confirm_nothing():
    held = HeldTraces(max_bytes=1 << 20)
    held.acknowledged(0, 5000, records(1))
    asked_at = held.epoch
    held.take_all()  # the gateway lost Kafka meanwhile
    held.acknowledged(0, 3, records(2))
    # The old log's committed offset (5001) must not confirm the new log's offset 3.
    assert held.committed({0: 5001}, asked_at) == 0
    assert held.count == 1
    assert held.committed({0: 4}, held.epoch) == 1


def test_the_hold_is_bounded_and_releases_the_oldest_first():
    one = sum(len(k) + len(v) for k, v in records(0))
    held = HeldTraces(max_bytes=3 * one)
    assert held.acknowledged(1, 10, records(1))[1] == 0
    assert held.acknowledged(0, 90, records(2))[1] == 0
    assert held.acknowledged(1, 11, records(3))[1] == 0
    # A fourth record passes the bound: the oldest (partition 1, offset 10) goes.
    assert held.acknowledged(0, 91, records(4))[1] == 1
    assert held.count == 3 and held.size == 3 * one
    assert held.take_all() == records(2, 4, 3)
