"""The demo on the real local stack, on a workload the code has never seen: an OpenAI-format
log written here (a currency agent), an 8-minute budget and tiny training steps. The loop
runs by itself: the miner finds the task, the trainer trains an intern for it, the deploy
controller rolls it out, and the demo writes its report within its budget. The gates are
opened (two training steps make no good intern): the test is about the loop, not quality."""

from __future__ import annotations

import io
import json
import random

import pytest
from rich.console import Console

from interns.cli.demo import run_demo
from tests.integration.conftest import stack_settings

# The demo replays for its budget less the stack's start and stop reserves (150 s).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "PEN", "NOK"]
CONVERT_TOOL = {
    "type": "function",
    "function": {
        "name": "ConvertCurrency",
        "description": "Convert an amount of money from one currency to another",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "source": {"type": "string"},
                "target": {"type": "string"},
            },
            "required": ["amount", "source", "target"],
        },
    },
}


def currency_log(path, n: int = 80) -> None:
    rng = random.Random(7)
    lines = []
    for i in range(n):
        amount = rng.randint(5, 900)
        source, target = rng.sample(CURRENCIES, 2)
        lines.append(
            {
                "request": {
                    "model": "gpt-test",
                    "messages": [
                        {"role": "system", "content": "You are a travel money assistant."},
                        {"role": "user", "content": f"How much is {amount} {source} in {target}?"},
                    ],
                    "tools": [CONVERT_TOOL],
                },
                "response": {
                    "id": f"chatcmpl-{i}",
                    "model": "gpt-test",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "tool_calls",
                            "message": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "id": f"call_{i}",
                                        "type": "function",
                                        "function": {
                                            "name": "ConvertCurrency",
                                            "arguments": json.dumps(
                                                {
                                                    "amount": amount,
                                                    "source": source,
                                                    "target": target,
                                                }
                                            ),
                                        },
                                    }
                                ],
                            },
                        }
                    ],
                    "usage": {"prompt_tokens": 60, "completion_tokens": 20, "total_tokens": 80},
                },
                "metadata": {"session_id": f"money-{i}"},
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_the_demo_runs_the_loop_on_an_unseen_workload_within_its_budget(tmp_path, monkeypatch):
    workload = tmp_path / "currency.jsonl"
    currency_log(workload)
    # Tiny training and open gates, through the services' own settings (the plan passes
    # them on and reports them).
    opened = {
        "TRAINER_TRAINING__MAX_STEPS": "2",
        "TRAINER_TRAINING__BATCH_SIZE": "2",
        "TRAINER_MAX_EXAMPLES": "30",
        "TRAINER_GATE__TOOL_CALL": "0",
        "TRAINER_GATE__SELECTIVE": "false",
        "TRAINER_GATE__MIN_EVAL_EXAMPLES": "1",
        "DEPLOYER_GATE__MIN_AGREEMENT": "0",
        "DEPLOYER_GATE__MAX_FALLBACK_RATE": "1",
        "DEPLOYER_GATE__MIN_SAMPLES": "3",
    }
    for name, value in opened.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    settings = stack_settings(out / "state")
    output = io.StringIO()
    console = Console(file=output, width=200)

    report = run_demo(settings, workload, out, console, minutes=8, serve_rate=4, live=False)

    printed = output.getvalue()
    assert "finishes in at most 8 minutes" in printed
    assert "intern(s) of 2 steps" in printed
    assert report["ok"], report["errors"]
    assert report["duration_s"] <= 8 * 60
    assert report["answered"] == report["calls"] > 80  # one pass and more
    assert report["traces_stored"] == report["answered"]
    # The loop ran by itself: the miner found the task, the trainer's policy started a job.
    assert report["tasks_found"] >= 1
    jobs = [job for task in report["tasks"].values() for job in task["jobs"]]
    assert jobs, "no training job was started"
    assert all(job["base_model"] for job in jobs)
    assert any(job["status"] == "succeeded" for job in jobs), jobs
    # Evaluated, registered (the gate is open), loaded into Triton and put in shadow by the
    # deploy controller; every promotion is judged against the gate the plan set.
    assert report["versions_registered"] >= 1
    (task,) = [task for task in report["tasks"].values() if task["jobs"]]
    modes = [change["mode"] for change in task["rollouts"]]
    assert "shadow" in modes, task["rollouts"]
    assert all(change["changed_by"] == "controller" for change in task["rollouts"])
    assert not any(p["below_gate"] for p in report["promotions"])
    # The report: figures, goals with verdicts, both files.
    for key in ("intern_share", "intern_agreement", "duration_s", "share_over_time"):
        assert key in report
    assert report["share_over_time"]["series"]
    assert len(report["goals"]) == 4
    assert all(("PASS" in printed or "FAIL" in printed) for _ in report["goals"])
    saved = json.loads((out / "report.json").read_text())
    assert saved["calls"] == report["calls"]
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4 and "<script" not in html
    # The demo's stack is gone.
    assert not json.loads((settings.state_dir / "stack.json").read_text())
