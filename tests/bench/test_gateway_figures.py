"""The gateway benchmark's publishing share: per round, from paths measured side by side."""

from __future__ import annotations

import pytest

from interns.bench import figures
from interns.bench.load import Measured


def rounds(*p50s: float) -> list[Measured]:
    return [Measured(concurrency=8, requests=1000, duration_s=1.0, p50_ms=p50) for p50 in p50s]


def point(added_p50_ms: float) -> dict[int, dict]:
    return {8: {"added_p50_ms": added_p50_ms}}


def test_a_slow_spell_that_hits_one_round_of_every_path_cancels_in_that_rounds_share():
    # Round 2 ran while something else took the machine: every path is slower, publishing's
    # share of that round stays what it is in the others. Across rounds it would not:
    # round 2's 'on' against round 1's 'off' and 'direct' would read 0.57.
    on, off, direct = rounds(6.0, 9.0, 6.2), rounds(5.0, 7.5, 5.2), rounds(2.0, 3.0, 2.2)

    shares = figures.paired_shares(on, off, direct)

    assert shares == [0.25, 0.25, 0.25]


def test_a_round_where_the_gateway_added_nothing_is_left_out():
    on, off, direct = rounds(6.0, 2.0), rounds(5.0, 1.9), rounds(2.0, 2.1)

    assert figures.paired_shares(on, off, direct) == [0.25]


def test_the_headline_is_the_median_of_the_rounds_when_they_are_given():
    shares = [0.1, 0.3, 0.2, 0.9, 0.25]

    paired = figures.publishing_overhead(point(4.0), point(2.0), 0, 0, 0, 8, shares)
    medians_only = figures.publishing_overhead(point(4.0), point(2.0), 0, 0, 0, 8)

    assert paired["headline"] == 0.25
    assert paired["latency_share_c8"] == 0.5  # from the medians over rounds, still reported
    assert paired["latency_share_c8_quartiles"] == [0.2, 0.3]
    assert medians_only["headline"] == 0.5
    assert medians_only["latency_share_c8_paired"] is None


@pytest.mark.parametrize("values", [[], [0.2]])
def test_quartiles_need_two_rounds(values):
    assert figures.quartiles(values) is None


def test_rounds_alternate_their_order_so_no_path_always_follows_the_same_one():
    from interns.bench.gateway import round_order

    paths = ["direct", "litellm", "interns-http", "interns-http-nopub", "interns-grpc"]
    orders = [round_order(paths, number) for number in range(4)]

    assert all(sorted(order) == sorted(paths) for order in orders)  # each path once a round
    follows = {(order[i], order[i + 1]) for order in orders for i in range(len(order) - 1)}
    # With publishing and without: each measured right after the other in some round.
    assert {("interns-http", "interns-http-nopub"), ("interns-http-nopub", "interns-http")} <= (
        follows
    )
    # The path with publishing does not always come right after LiteLLM.
    assert {before for before, path in follows if path == "interns-http"} == {
        "litellm",
        "interns-http-nopub",
    }
