"""Task mining: signature groups, stable ids, incremental counts, task statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from interns.common.db import Task, Trace
from interns.common.signature import request_signature
from interns.miner.__main__ import task_events
from interns.miner.mining import (
    FULL_SHARE,
    MiningState,
    answer_shape,
    mine_new_traces,
    restore_tasks,
    task_id_for,
    upsert_tasks,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def _request(tools: list[str], system: str = "You are a travel agent.", user: str = "hi") -> dict:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if tools:
        body["tools"] = [_tool(t) for t in tools]
    return body


def _tool_answer(*names: str) -> dict:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
        for i, n in enumerate(names)
    ]
    # The shape the collector stores (TraceResponse), as the miner reads it from `traces`.
    return {"message": {"role": "assistant", "tool_calls": calls}, "finish_reason": "tool_calls"}


def _text_answer(text: str) -> dict:
    return {"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}


def _store(engine, traces: list[tuple[dict, dict]], start: int, cost: float = 0.01) -> None:
    with Session(engine) as session:
        for i, (request, response) in enumerate(traces, start=start):
            session.add(
                Trace(
                    trace_id=f"t{i}",
                    tenant_id="acme",
                    request=request,
                    response=response,
                    cost_usd=cost,
                    stored_at=T0 + timedelta(seconds=i),
                )
            )
        session.commit()


def _tasks(engine) -> dict[str, Task]:
    with Session(engine) as session:
        return {t.task_id: t for t in session.exec(select(Task)).all()}


FLIGHTS = _request(["BookFlight", "SearchFlight"])
HOTELS = _request(["BookHotel", "SearchHotel"])


def test_different_tool_sets_make_different_tasks():
    state = MiningState()
    flight = state.add(FLIGHTS, _tool_answer("SearchFlight"))
    hotel = state.add(HOTELS, _tool_answer("SearchHotel"))
    again = state.add(_request(["SearchFlight", "BookFlight"], user="other words"), None)

    assert flight != hotel
    assert again == flight, "tool order and user content do not change the task"
    assert flight == task_id_for(request_signature(FLIGHTS))
    assert state.tasks[flight].size == 2 and state.tasks[hotel].size == 1


def test_variable_parts_of_the_system_prompt_keep_one_task():
    state = MiningState()
    a = state.add(_request([], system="Today is 2026-11-01. Help user 1234."), None)
    b = state.add(_request([], system="Today is 2026-12-24. Help user 98."), None)
    c = state.add(_request([], system="You write poems."), None)
    assert a == b != c


def test_label_output_kind_and_consistency_on_a_small_set():
    state = MiningState()
    for _ in range(3):
        task_id = state.add(FLIGHTS, _tool_answer("SearchFlight"), cost_usd=0.5)
    state.add(FLIGHTS, _tool_answer("BookFlight"), cost_usd=0.5)
    state.add(FLIGHTS, _text_answer("Where to?"), cost_usd=0.5)
    for _ in range(5):
        state.add(HOTELS, _text_answer(json.dumps({"city": "Oslo", "nights": 2})))

    flights = state.tasks[task_id]
    assert flights.size == 5
    assert flights.output_kind == "tool_call"
    assert flights.consistency == pytest.approx(3 / 5)
    assert flights.expert_cost_usd == pytest.approx(2.5)
    assert flights.label == 'tools: BookFlight, SearchFlight | "You are a travel agent."'
    assert flights.traffic_share(state.total) == pytest.approx(0.5)
    # Half the traffic saturates the share factor: replaceability = consistency * weight.
    assert flights.replaceability(state.total) == pytest.approx(3 / 5)

    hotels = state.tasks[task_id_for(request_signature(HOTELS))]
    assert hotels.output_kind == "json"
    assert hotels.consistency == 1.0
    assert hotels.replaceability(state.total) == pytest.approx(0.9)
    assert answer_shape(_text_answer("not json")) == ("text", "text")


def test_a_tiny_task_is_less_replaceable_than_a_big_one():
    state = MiningState()
    for _ in range(99):
        big = state.add(FLIGHTS, _tool_answer("SearchFlight"))
    small = state.add(HOTELS, _tool_answer("SearchHotel"))
    assert state.tasks[small].traffic_share(state.total) < FULL_SHARE
    assert state.tasks[small].replaceability(state.total) == pytest.approx(0.01 / FULL_SHARE)
    assert state.tasks[big].replaceability(state.total) == 1.0


def test_incremental_mining_counts_only_new_traces_and_keeps_task_ids(engine):
    _store(engine, [(FLIGHTS, _tool_answer("SearchFlight"))] * 3, start=0)
    state = MiningState()
    assert mine_new_traces(engine, state) == {task_id_for(request_signature(FLIGHTS))}
    assert upsert_tasks(engine, state) == set(state.tasks)
    first = _tasks(engine)
    assert [t.size for t in first.values()] == [3]

    assert mine_new_traces(engine, state) == set(), "a pass without new traces changes nothing"

    _store(engine, [(FLIGHTS, _tool_answer("SearchFlight"))] * 2, start=3)
    _store(engine, [(HOTELS, _tool_answer("SearchHotel"))], start=5)
    changed = mine_new_traces(engine, state)
    discovered = upsert_tasks(engine, state)
    second = _tasks(engine)

    flights_id = next(iter(first))
    hotels_id = task_id_for(request_signature(HOTELS))
    assert changed == {flights_id, hotels_id}
    assert discovered == {hotels_id}
    events = {e.task_id: e for e in task_events(state, changed, discovered)}
    assert (events[hotels_id].change, events[flights_id].change) == ("discovered", "updated")
    assert events[hotels_id].signature == request_signature(HOTELS)
    assert events[flights_id].size == 5
    assert second[flights_id].size == 5
    assert second[flights_id].first_seen == first[flights_id].first_seen
    assert second[flights_id].traffic_share == pytest.approx(5 / 6)
    assert second[flights_id].expert_cost_usd == pytest.approx(0.05)
    assert second[hotels_id].size == 1
    with Session(engine) as session:
        assert all(t.task_id is None for t in session.exec(select(Trace)).all()), (
            "the miner never writes the trace tables"
        )


def test_a_restarted_miner_finds_the_same_tasks_and_announces_none_as_new(engine):
    _store(engine, [(FLIGHTS, _tool_answer("SearchFlight"))] * 2, start=0)
    first = MiningState()
    mine_new_traces(engine, first)
    upsert_tasks(engine, first)

    restarted = MiningState()
    changed = mine_new_traces(engine, restarted)
    discovered = upsert_tasks(engine, restarted)
    events = task_events(restarted, changed, discovered)

    assert set(restarted.tasks) == set(first.tasks)
    assert [t.size for t in _tasks(engine).values()] == [2]
    assert [e.change for e in events] == ["updated"]
    assert events[0].signature == request_signature(FLIGHTS)


# --- splits, merges, stable ids -----------------------------------------------------------

CITIES = ["Oslo", "Lima", "Paris", "Rome", "Cairo", "Tokyo", "Quito", "Accra", "Hanoi", "Bern"]


class CountingEmbed:
    """Two directions (asking to search, asking to book), and a count of the texts
    embedded: the miner must embed a bounded sample, each text once."""

    def __init__(self):
        self.texts: list[str] = []

    def __call__(self, texts: list[str]):
        import numpy as np

        self.texts += texts
        return np.array([[1.0, 0.01 * (len(t) % 5)] if "find" in t else [0.0, 1.0] for t in texts])


def _flight_traffic(start: int, count: int, book_answer: str = "BookFlight") -> list[tuple]:
    """Half searches, half bookings, in one signature (one tool set)."""
    traces = []
    for i in range(start, start + count):
        city = CITIES[i % 10]
        if i % 2:
            traces.append(
                (
                    _request(["BookFlight", "SearchFlight"], user=f"find flights to {city} #{i}"),
                    _tool_answer("SearchFlight"),
                )
            )
        else:
            traces.append(
                (
                    _request(["BookFlight", "SearchFlight"], user=f"book seat {i} to {city}"),
                    _tool_answer(book_answer),
                )
            )
    return traces


def _mine(state: MiningState, traces: list[tuple]) -> set[str]:
    changed = {state.add(request, response, 0.01) for request, response in traces}
    return changed | state.refine()


def test_a_signature_of_two_tasks_is_split_and_announced():
    embed = CountingEmbed()
    state = MiningState(embed=embed, sample_size=40)
    parent = task_id_for(request_signature(FLIGHTS))
    _mine(state, _flight_traffic(0, 100))

    children = {t.task_id: t for t in state.tasks.values() if t.parent_task_id == parent}
    assert len(children) == 2
    assert state.tasks[parent].status == "split" and state.tasks[parent].size == 0
    assert sorted(t.size for t in children.values()) == [50, 50]
    assert all(t.consistency == 1.0 for t in children.values()), "each sub-task answers one way"
    assert all(t.related_task_ids == [parent] for t in children.values())
    changes = state.take_changes()
    assert [(c.task_id, c.change, set(c.related_task_ids)) for c in changes] == [
        (parent, "split", set(children))
    ]
    assert len(embed.texts) == 40 == len(set(embed.texts)), "only the sample is embedded"

    search = state.task_of(_request(["SearchFlight", "BookFlight"], user="find flights to Nice"))
    book = state.task_of(_request(["SearchFlight", "BookFlight"], user="book seat 3 to Nice"))
    assert {search, book} == set(children)
    assert children[search].shapes == {"tools:SearchFlight": 50}

    events = {e.task_id: e for e in task_events(state, set(children), set(children), changes)}
    assert events[parent].change == "split"
    assert set(events[parent].related_task_ids) == set(children)
    assert events[parent].matcher is not None and events[parent].size == 0
    assert events[search].change == "discovered" and events[search].parent_task_id == parent
    assert events[search].matcher is None


def test_sub_task_ids_stay_as_traffic_grows_and_only_new_sample_texts_are_embedded():
    embed = CountingEmbed()
    state = MiningState(embed=embed, sample_size=40)
    _mine(state, _flight_traffic(0, 100))
    first_ids = {t for t, s in state.tasks.items() if s.parent_task_id}
    state.take_changes()
    embedded = len(embed.texts)

    _mine(state, _flight_traffic(100, 20))  # +20%: no decision is due
    assert len(embed.texts) == embedded
    _mine(state, _flight_traffic(120, 100))  # doubled: re-decided on a refreshed sample

    assert {t for t, s in state.tasks.items() if s.parent_task_id} == first_ids
    assert state.take_changes() == [], "the same split again is no change"
    assert 0 < len(embed.texts) - embedded <= 40
    assert len(set(embed.texts)) == len(embed.texts), "no text is embedded twice"
    assert sum(state.tasks[t].size for t in first_ids) == 220


def test_sub_tasks_merge_back_when_the_expert_answers_one_way_again():
    state = MiningState(embed=CountingEmbed(), sample_size=40)
    parent = task_id_for(request_signature(FLIGHTS))
    _mine(state, _flight_traffic(0, 60))
    children = {t for t, s in state.tasks.items() if s.parent_task_id}
    state.take_changes()

    # The expert now searches whatever is asked, three times as often as before.
    _mine(state, _flight_traffic(60, 600, book_answer="SearchFlight"))

    changes = state.take_changes()
    assert {(c.task_id, c.change, c.related_task_ids) for c in changes} == {
        (child, "merged", (parent,)) for child in children
    }
    assert state.tasks[parent].status == "active" and state.tasks[parent].size == 660
    assert all(state.tasks[c].status == "merged" and state.tasks[c].size == 0 for c in children)
    assert state.task_of(FLIGHTS) == parent


def test_a_restarted_miner_keeps_the_split_and_its_ids(engine):
    traces = _flight_traffic(0, 100) + [(HOTELS, _tool_answer("SearchHotel"))] * 60
    _store(engine, traces, start=0)
    first = MiningState(embed=CountingEmbed(), sample_size=40)
    mine_new_traces(engine, first)
    upsert_tasks(engine, first)
    stored = _tasks(engine)
    parent = task_id_for(request_signature(FLIGHTS))
    assert stored[parent].status == "split" and stored[parent].matcher is not None
    assert stored[parent].matcher_agreement >= 0.75
    children = {t for t, row in stored.items() if row.parent_task_id == parent}
    assert len(children) == 2 and all(stored[c].related_task_ids == [parent] for c in children)

    embed = CountingEmbed()
    restarted = MiningState(embed=embed, sample_size=40)
    restore_tasks(engine, restarted)
    mine_new_traces(engine, restarted)
    discovered = upsert_tasks(engine, restarted)

    assert discovered == set() and restarted.take_changes() == []
    assert embed.texts == [], "no decision is due: the split and the whole signature stand"
    assert {t: s.size for t, s in restarted.tasks.items()} == {
        t: s.size for t, s in first.tasks.items()
    }


def test_the_router_puts_each_call_in_the_sub_task_the_miner_counted_it_in():
    from interns.common.events import RolloutChanged
    from interns.router.routing import RoutingTable

    state = MiningState(embed=CountingEmbed(), sample_size=40)
    _mine(state, _flight_traffic(0, 100))
    changes = state.take_changes()
    table = RoutingTable()
    for event in task_events(state, set(state.tasks), set(state.tasks), changes):
        table.apply_task(event)
        table.apply(
            RolloutChanged(
                task_id=event.task_id,
                signature=event.signature,
                target=f"intern-{event.task_id}",
                mode="full",
                changed_by="controller",
            )
        )

    calls = [request for request, _ in _flight_traffic(1000, 40)]
    routed = [table.decide(request_signature(r), "acme", "s", "big", request=r) for r in calls]
    assert [d.task_id for d in routed] == [state.task_of(r) for r in calls]
    assert len({d.task_id for d in routed}) == 2
    assert all(d.target == "intern" and d.model == f"intern-{d.task_id}" for d in routed)
