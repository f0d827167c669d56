"""The replay expert over HTTP, as an OpenAI client sees it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest

from interns.expert.app import build_app
from interns.expert.replay import ReplayIndex, WorkloadRecord, load_workload
from interns.expert.settings import ExpertSettings

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = Path(os.environ.get("INTERNS_WORKLOADS_DIR", REPO.parent / "shared" / "workloads"))
SGD = WORKLOADS / "sgd" / "sgd_service_calls_dev.jsonl"


@pytest.fixture(scope="module")
def sgd():
    if not SGD.is_file():
        pytest.skip(f"workload {SGD} not found (set INTERNS_WORKLOADS_DIR to the workloads dir)")
    workload = load_workload(SGD)
    return workload, ReplayIndex.from_records(workload)


def client_for(index: ReplayIndex, **settings) -> httpx.AsyncClient:
    # Explicit values, so that EXPERT_* variables of the shell running the tests do not leak in.
    settings = {"workload": SGD, "latency_ms": 0, "model_name": "replay-expert", **settings}
    app = build_app(index, ExpertSettings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://expert")


def sse_chunks(text: str) -> list:
    """The data of each Server-Sent Event, `[DONE]` included as a string."""
    events = [event for event in text.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events), events
    return [
        data if data == "[DONE]" else json.loads(data)
        for data in (event.removeprefix("data: ") for event in events)
    ]


async def test_sgd_conversation_gets_its_reference_tool_call(sgd):
    workload, index = sgd
    raw = json.loads(SGD.read_text(encoding="utf-8").splitlines()[0])
    async with client_for(index) as client:
        response = await client.post("/v1/chat/completions", json=workload.records[0].request)

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "replay-expert"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == raw["reference"]["name"]
    assert json.loads(call["function"]["arguments"]) == raw["reference"]["arguments"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_agent_sending_fewer_tools_still_gets_the_answer(sgd):
    workload, index = sgd
    request = {**workload.records[0].request, "tools": [], "temperature": 0}
    async with client_for(index) as client:
        response = await client.post("/v1/chat/completions", json=request)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"] == workload.records[0].answer


async def test_stream_reassembles_to_the_same_tool_call(sgd):
    workload, index = sgd
    request = workload.records[0].request
    async with client_for(index) as client:
        unary = (await client.post("/v1/chat/completions", json=request)).json()
        response = await client.post(
            "/v1/chat/completions",
            json={**request, "stream": True, "stream_options": {"include_usage": True}},
        )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_chunks(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                calls[call.pop("index")] = call
    assert [calls[i] for i in sorted(calls)] == unary["choices"][0]["message"]["tool_calls"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == unary["usage"]


async def test_stream_of_a_text_answer_joins_back_to_its_content():
    text = "Paris is the capital of France.\nIt has 2.1 million people."
    index = ReplayIndex.from_records(
        [
            WorkloadRecord(
                request={"messages": [{"role": "user", "content": "Capital of France?"}]},
                answer={"role": "assistant", "content": text},
            )
        ]
    )
    async with client_for(index) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Capital of France?"}], "stream": True},
        )

    events = sse_chunks(response.text)
    assert events[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in events[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == text
    assert len([d for d in deltas if d.get("content")]) > 1
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in events[-2]


async def test_unknown_conversation_is_404_no_recorded_answer(sgd):
    _, index = sgd
    async with client_for(index) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": "never recorded"}]},
        )

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "no_recorded_answer"
    assert error["type"] == "invalid_request_error"
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "x"}, "messages"),
        ({"model": "x", "messages": []}, "messages"),
        ({"model": "x", "messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"model": "x", "messages": "hi"}, "messages"),
    ],
)
async def test_malformed_body_is_400_naming_the_field(sgd, body, param):
    _, index = sgd
    async with client_for(index) as client:
        response = await client.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param in error["message"]


async def test_body_that_is_not_json_is_400(sgd):
    _, index = sgd
    async with client_for(index) as client:
        response = await client.post(
            "/v1/chat/completions",
            content=b'{"messages": [',
            headers={"content-type": "application/json"},
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert "JSON" in error["message"]


async def test_latency_is_added_to_each_answer(sgd):
    workload, index = sgd
    async with client_for(index, latency_ms=150) as client:
        started = time.monotonic()
        response = await client.post("/v1/chat/completions", json=workload.records[0].request)
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.150


async def test_ops_endpoints(sgd):
    workload, index = sgd
    async with client_for(index, model_name="demo-expert") as client:
        await client.post("/v1/chat/completions", json=workload.records[0].request)
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        models = await client.get("/v1/models")
        metrics = await client.get("/metrics")

    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["records"] == len(index)
    assert [m["id"] for m in models.json()["data"]] == ["demo-expert"]
    assert 'interns_expert_requests_total{outcome="answered",service="expert"}' in metrics.text


async def test_not_ready_without_records():
    async with client_for(ReplayIndex()) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["records"] == 0


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERNS_WORKLOADS_DIR", str(tmp_path))
    monkeypatch.setenv("EXPERT_PORT", "19999")
    monkeypatch.setenv("EXPERT_LATENCY_MS", "25.5")
    monkeypatch.setenv("EXPERT_MODEL", "router-side-name")

    settings = ExpertSettings()

    assert settings.workload == tmp_path / "sgd" / "sgd_service_calls_dev.jsonl"
    assert settings.port == 19999
    assert settings.latency_ms == 25.5
    assert settings.model_name == "router-side-name"

    monkeypatch.setenv("EXPERT_WORKLOAD", str(tmp_path / "calls.jsonl"))
    assert ExpertSettings().workload == tmp_path / "calls.jsonl"


def test_default_workload_is_relative_to_the_working_directory(monkeypatch, tmp_path):
    for name in ("INTERNS_WORKLOADS_DIR", "EXPERT_WORKLOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    expected = (tmp_path / ".." / "shared" / "workloads" / "sgd").resolve()
    assert ExpertSettings().workload == expected / "sgd_service_calls_dev.jsonl"
