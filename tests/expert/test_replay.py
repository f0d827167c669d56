"""Loading recorded workloads and finding their answers (no HTTP)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from interns.expert.replay import (
    ReplayIndex,
    WorkloadError,
    WorkloadRecord,
    detect_format,
    load_workload,
)

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = Path(os.environ.get("INTERNS_WORKLOADS_DIR", REPO.parent / "shared" / "workloads"))
SGD = WORKLOADS / "sgd" / "sgd_service_calls_dev.jsonl"
BFCL_QUESTIONS = WORKLOADS / "bfcl" / "question"
BFCL_ANSWERS = WORKLOADS / "bfcl" / "possible_answer"


def require(path: Path) -> Path:
    """`path`, or a skip naming it when the shared workloads are not on this machine."""
    if not path.exists():
        pytest.skip(f"workload {path} not found (set INTERNS_WORKLOADS_DIR to the workloads dir)")
    return path


@pytest.fixture(scope="module")
def sgd_workload():
    return load_workload(require(SGD))


def log_line(messages: list[dict], answer: dict, **metadata) -> str:
    """One line of an OpenAI-format log."""
    response = {
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
    }
    line = {"request": {"model": "gpt-4o", "messages": messages}, "response": response}
    if metadata:
        line["metadata"] = metadata
    return json.dumps(line)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def test_sgd_conversation_gets_its_reference_tool_call(sgd_workload):
    raw = json.loads(SGD.read_text(encoding="utf-8").splitlines()[0])
    record = sgd_workload.records[0]
    index = ReplayIndex.from_records(sgd_workload)

    answer = index.answer({"messages": raw["messages"]})

    assert sgd_workload.format == "sgd"
    assert answer is not None
    (call,) = answer["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == raw["reference"]["name"]
    assert json.loads(call["function"]["arguments"]) == raw["reference"]["arguments"]
    assert record.finish_reason == "tool_calls"
    assert record.metadata["task_label"] == raw["task_label"]
    assert record.metadata["session_id"] == raw["dialogue_id"]
    tool_names = {tool["function"]["name"] for tool in record.request["tools"]}
    assert raw["reference"]["name"] in tool_names


def test_sgd_tool_call_ids_are_the_same_on_every_load(sgd_workload):
    again = load_workload(SGD)
    assert [r.answer for r in again.records[:50]] == [r.answer for r in sgd_workload.records[:50]]


def test_match_ignores_tools_whitespace_call_ids_and_argument_spacing(sgd_workload):
    index = ReplayIndex.from_records(sgd_workload)
    record = next(
        r for r in sgd_workload.records if any(m.get("tool_calls") for m in r.request["messages"])
    )
    messages = json.loads(json.dumps(record.request["messages"]))
    for message in messages:
        if message.get("content"):
            message["content"] = f"  {message['content']}\n"
        for call in message.get("tool_calls") or []:
            call["id"] = "call_from_another_run"
            arguments = json.loads(call["function"]["arguments"])
            call["function"]["arguments"] = json.dumps(dict(reversed(arguments.items())), indent=2)
        if message["role"] == "tool":
            message["tool_call_id"] = "call_from_another_run"

    assert index.answer({"messages": messages}) == record.answer
    messages[-1]["content"] += " Also, one more thing."
    assert index.answer({"messages": messages}) is None


def test_openai_log_skips_malformed_lines_and_reports_their_numbers(tmp_path):
    path = tmp_path / "calls.jsonl"
    lines = [
        log_line(user("What is 2+2?"), assistant("4"), session_id="s1", task_label="math"),
        "{this is not json",
        json.dumps({"request": {"messages": user("no response")}}),
        "",
        log_line(user("Capital of France?"), assistant("Paris"), session_id="s2"),
        json.dumps({"request": {"messages": []}, "response": {"choices": []}}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    workload = load_workload(path)
    index = ReplayIndex.from_records(workload)

    assert workload.format == "openai_log"
    assert workload.malformed_count == 3
    assert workload.malformed_lines == [2, 3, 6]
    assert len(workload) == 2
    assert index.answer({"messages": user("Capital of France?")})["content"] == "Paris"
    first = workload.records[0]
    assert first.metadata["session_id"] == "s1"
    assert first.metadata["task_label"] == "math"
    assert first.metadata["line"] == 1
    assert first.request["model"] == "gpt-4o"


def test_first_answer_wins_and_conflicts_are_counted(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text(
        "\n".join(
            [
                log_line(user("Pick a colour"), assistant("blue")),
                log_line(user("Pick a colour"), assistant("blue")),
                log_line(user(" Pick a colour "), assistant("red")),
            ]
        ),
        encoding="utf-8",
    )
    index = ReplayIndex.from_records(load_workload(path))

    assert len(index) == 1
    assert index.duplicates == 1
    assert index.conflicts == 1
    assert index.answer({"messages": user("Pick a colour")})["content"] == "blue"


def test_format_is_detected_from_content_not_file_name(tmp_path, sgd_workload):
    shutil.copy(SGD.parent / "sgd_tools.json", tmp_path / "sgd_tools.json")
    sgd_copy = tmp_path / "calls.log"
    sgd_copy.write_text("".join(SGD.read_text(encoding="utf-8").splitlines(True)[:3]))
    log = tmp_path / "dialogues.json"
    log.write_text(log_line(user("hi"), assistant("hello")) + "\n")

    assert detect_format(sgd_copy) == "sgd"
    assert detect_format(log) == "openai_log"
    assert [r.answer for r in load_workload(sgd_copy)] == [
        r.answer for r in sgd_workload.records[:3]
    ]


def test_unknown_format_is_an_error(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"text": "not a workload"}\nnot json either\n')
    with pytest.raises(WorkloadError, match="known workload format"):
        load_workload(path)


def test_bfcl_file_loads_and_answers():
    questions = require(BFCL_QUESTIONS / "BFCL_v4_live_simple.json")
    require(BFCL_ANSWERS / questions.name)
    raw = json.loads(questions.read_text(encoding="utf-8").splitlines()[0])

    workload = load_workload(questions)
    index = ReplayIndex.from_records(workload)
    answer = index.answer({"messages": raw["question"][0]})

    assert workload.format == "bfcl"
    assert workload.malformed_count == 0
    assert len(workload) > 200
    (call,) = answer["tool_calls"]
    assert call["function"]["name"] == "get_user_info"
    assert json.loads(call["function"]["arguments"]) == {"user_id": 7890, "special": "black"}
    record = workload.records[0]
    assert record.metadata["record_id"] == raw["id"]
    (tool,) = record.request["tools"]
    assert tool["type"] == "function"
    assert tool["function"]["parameters"]["type"] == "object"


def test_bfcl_optional_arguments_are_left_out_and_names_made_valid_for_openai():
    questions = require(BFCL_QUESTIONS / "BFCL_v4_multiple.json")
    require(BFCL_ANSWERS / questions.name)

    records = {r.metadata["record_id"]: r for r in load_workload(questions)}
    # Ground truth: triangle_properties.get, sides 5/4/3, get_area etc. accept "" (optional).
    (call,) = records["multiple_0"].answer["tool_calls"]

    assert call["function"]["name"] == "triangle_properties_get"
    assert json.loads(call["function"]["arguments"]) == {"side1": 5, "side2": 4, "side3": 3}
    tool_names = {t["function"]["name"] for t in records["multiple_0"].request["tools"]}
    assert "triangle_properties_get" in tool_names


def test_bfcl_answer_file_path_loads_the_same_records():
    answers = require(BFCL_ANSWERS / "BFCL_v4_live_parallel.json")
    require(BFCL_QUESTIONS / answers.name)

    by_answers = load_workload(answers)
    by_questions = load_workload(BFCL_QUESTIONS / answers.name)

    assert [r.answer for r in by_answers] == [r.answer for r in by_questions]
    assert len(by_answers.records[0].answer["tool_calls"]) == 2


def test_index_accepts_records_built_in_code():
    record = WorkloadRecord(
        request={"messages": user("ping")}, answer=assistant("pong"), metadata={"task_label": "t"}
    )
    index = ReplayIndex.from_records([record])

    entry = index.match({"messages": user("ping")})

    assert entry is not None
    assert entry.message == assistant("pong")
    assert entry.finish_reason == "stop"
