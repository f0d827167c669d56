"""The routing table follows the rollout topic and decides per call: by signature, mode,
pin and, for canaries, a share that is sticky per session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from interns.common.events import RolloutChanged, TaskChanged
from interns.common.task_matcher import TaskMatcher
from interns.router.routing import RoutingTable

NOW = datetime.now(UTC)


def change(mode: str, at: datetime = NOW, share: float = 0.0, **extra) -> RolloutChanged:
    fields = {
        "task_id": "t1",
        "signature": "sig-1",
        "target": "intern-t1",
        "model_version": 2,
        "mode": mode,
        "canary_share": share,
        "changed_by": "controller",
        "occurred_at": at,
    }
    return RolloutChanged(**{**fields, **extra})


def decide(table: RoutingTable, session: str = "s1", signature: str = "sig-1"):
    return table.decide(signature, "acme", session, "big-model")


def test_the_latest_change_per_task_is_in_force():
    table = RoutingTable()
    table.apply(change("shadow", NOW))
    table.apply(change("full", NOW + timedelta(seconds=1)))
    table.apply(change("canary", NOW - timedelta(seconds=5), share=0.5))
    assert table.routes["t1"].mode == "full"
    assert table.revision == 2
    assert decide(table).target == "intern"


def test_a_call_of_no_known_task_goes_to_the_expert():
    table = RoutingTable()
    table.apply(change("full"))
    decision = decide(table, signature="other")
    assert (decision.target, decision.model, decision.reason) == (
        "expert",
        "big-model",
        "no task matched",
    )


def test_full_pinned_off_and_shadow():
    table = RoutingTable()
    table.apply(change("full"))
    full = decide(table)
    assert (full.target, full.model, full.model_version, full.task_id) == (
        "intern",
        "intern-t1",
        2,
        "t1",
    )
    table.apply(change("full", NOW + timedelta(seconds=1), pinned=True, target="expert"))
    assert decide(table).reason == "task pinned to the expert"
    table.apply(change("off", NOW + timedelta(seconds=2)))
    assert decide(table).target == "expert"
    table.apply(change("shadow", NOW + timedelta(seconds=3)))
    shadow = decide(table)
    assert (shadow.target, shadow.shadow_model, shadow.shadow_version) == ("expert", "intern-t1", 2)


def test_a_task_whose_signature_changed_is_matched_by_the_new_one_only():
    table = RoutingTable()
    table.apply(change("full"))
    table.apply(change("full", NOW + timedelta(seconds=1), signature="sig-2"))
    assert decide(table, signature="sig-1").target == "expert"
    assert decide(table, signature="sig-2").target == "intern"


def test_a_canary_takes_its_share_of_sessions_and_each_session_stays_put():
    table = RoutingTable()
    table.apply(change("canary", share=0.2))
    sessions = [f"session-{i}" for i in range(4000)]
    first = {s: decide(table, session=s).target for s in sessions}
    share = sum(t == "intern" for t in first.values()) / len(sessions)
    assert 0.17 < share < 0.23
    assert all(decide(table, session=s).target == first[s] for s in sessions[:500])


# --- split signatures: the miner's matcher picks the sub-task -----------------------------

SEARCH, BOOK = "t1-search", "t1-book"


SPLIT_MATCHER = TaskMatcher(
    (SEARCH, BOOK), (0.0, 0.0), {"find": (2.0, -2.0), "book": (-2.0, 2.0)}
).to_dict()


def split_event(at: datetime = NOW, matcher: dict | None = SPLIT_MATCHER, **extra) -> TaskChanged:
    fields = {"task_id": "t1", "change": "split", "signature": "sig-1", "occurred_at": at}
    return TaskChanged(**{**fields, "matcher": matcher, **extra})


def ask(text: str) -> dict:
    return {"messages": [{"role": "user", "content": "hello"}, {"role": "user", "content": text}]}


def split_table() -> RoutingTable:
    table = RoutingTable()
    table.apply(change("full", task_id=SEARCH, target="intern-search"))
    table.apply(change("shadow", task_id=BOOK, target="intern-book"))
    table.apply_task(split_event())
    return table


def test_a_split_signature_routes_each_call_to_its_sub_task():
    table = split_table()
    search = table.decide("sig-1", "acme", "s1", "big-model", request=ask("find me a flight"))
    book = table.decide("sig-1", "acme", "s1", "big-model", request=ask("Book it, please"))
    assert (search.target, search.model, search.task_id) == ("intern", "intern-search", SEARCH)
    assert (book.target, book.task_id, book.shadow_model) == ("expert", BOOK, "intern-book")


def test_a_split_call_without_a_route_or_without_its_request_goes_to_the_expert():
    table = RoutingTable()
    table.apply(change("full", task_id=SEARCH))
    table.apply_task(split_event())
    unrouted = table.decide("sig-1", "acme", "s1", "big-model", request=ask("book it"))
    assert (unrouted.target, unrouted.task_id, unrouted.reason) == (
        "expert",
        BOOK,
        "task not routed",
    )
    assert decide(table).reason == "split task: no request to match"


def test_the_signature_is_one_task_again_when_its_task_comes_without_a_matcher():
    table = split_table()
    table.apply_task(split_event(NOW - timedelta(seconds=1), change="updated", matcher=None))
    assert "sig-1" in table.matchers, "an older event does not undo the split"
    table.apply_task(
        TaskChanged(task_id=BOOK, change="updated", signature="sig-1", occurred_at=NOW)
    )
    assert "sig-1" in table.matchers, "a sub-task's own event leaves the matcher alone"
    table.apply(change("full", NOW + timedelta(seconds=2), target="intern-t1"))
    table.apply_task(split_event(NOW + timedelta(seconds=3), change="merged", matcher=None))
    assert table.matchers == {}
    assert decide(table).model == "intern-t1"


def test_an_unreadable_matcher_is_ignored():
    table = RoutingTable()
    table.apply_task(split_event(matcher={"features": "bert", "task_ids": ["a", "b"]}))
    assert table.matchers == {} and table.revision == 0
