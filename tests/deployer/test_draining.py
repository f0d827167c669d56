"""A version the route left is unloaded only after the grace period, and only once
Triton's call count of it stopped moving for a whole grace period."""

from interns.deployer.draining import Retiring, drained


def test_nothing_is_unloaded_within_the_grace_period():
    retiring = Retiring("m", 1, since=100.0)
    assert not drained(retiring, 105.0, count=7, grace_s=10)


def test_a_version_still_called_is_not_unloaded():
    retiring = Retiring("m", 1, since=100.0)
    assert not drained(retiring, 110.0, count=7, grace_s=10)
    assert not drained(retiring, 120.0, count=9, grace_s=10)  # 2 more calls came
    assert not drained(retiring, 125.0, count=9, grace_s=10)  # quiet for 5 s only
    assert drained(retiring, 130.0, count=9, grace_s=10)


def test_a_quiet_version_is_unloaded_one_grace_period_after_its_first_count():
    retiring = Retiring("m", 1, since=0.0)
    assert not drained(retiring, 10.0, count=3, grace_s=10)
    assert drained(retiring, 20.0, count=3, grace_s=10)
