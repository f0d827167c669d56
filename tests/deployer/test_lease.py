"""One active controller: two replicas sharing a database never hold the lease together;
the standby takes over once the holder's lease lapses or is released."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from interns.deployer.lease import LeaseKeeper


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_replicas_never_both_hold_the_lease(engine):
    clock = Clock()
    one = LeaseKeeper(engine, "deployer", "one", ttl_s=10, clock=clock)
    two = LeaseKeeper(engine, "deployer", "two", ttl_s=10, clock=clock)
    assert one.renew()
    for step in range(5):
        clock.now += 3
        assert one.renew() and not two.renew(), step


def test_the_standby_takes_over_when_the_lease_lapses(engine):
    clock = Clock()
    one = LeaseKeeper(engine, "deployer", "one", ttl_s=10, clock=clock)
    two = LeaseKeeper(engine, "deployer", "two", ttl_s=10, clock=clock)
    assert one.renew() and not two.renew()
    clock.now += 11  # `one` stopped renewing
    assert two.renew()
    assert not one.renew()


def test_a_released_lease_is_taken_at_once(engine):
    one = LeaseKeeper(engine, "deployer", "one", ttl_s=10)
    two = LeaseKeeper(engine, "deployer", "two", ttl_s=10)
    assert one.renew() and not two.renew()
    one.release()
    assert two.renew()


def test_racing_replicas_get_exactly_one_holder(engine):
    keepers = [LeaseKeeper(engine, "race", f"r{n}", ttl_s=30) for n in range(6)]
    with ThreadPoolExecutor(6) as pool:
        held = list(pool.map(lambda k: k.renew(), keepers))
    assert sum(held) == 1
