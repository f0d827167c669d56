"""`interns models` and `interns rollouts` (list, promote, rollback, pin, unpin, history)
against the real control API (gRPC, in process) and database; every change is published
and lands in the audit trail with the operator's name and reason."""

from __future__ import annotations

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from interns.cli.main import app
from interns.common.db import ModelVersion, Task
from interns.trainer.control import ControlPlane
from tests.servers import control_api_in_thread


@pytest.fixture
def control_api(engine, monkeypatch, tmp_path):
    with Session(engine) as session:
        session.add(Task(task_id="weather", signature="sig", output_kind="tool_call"))
        for version, status in ((1, "serving"), (2, "rolled_back")):
            session.add(
                ModelVersion(
                    model="intern-weather",
                    version=version,
                    task_id="weather",
                    base_model="tiny",
                    status=status,
                    scores={"exact_match": 0.9 + version / 100},
                )
            )
        session.commit()
    published = []

    async def publish(event):
        published.append(event)

    with control_api_in_thread(ControlPlane(engine, publish)) as address:
        monkeypatch.setenv("TRAINER_ADDR", address)
        monkeypatch.setenv("DATABASE_URL", str(engine.url))
        yield published


def run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def test_models_lists_versions_with_their_rollout_status(control_api):
    listed = run("models", "--task", "weather")
    assert listed.exit_code == 0, listed.output
    assert "serving" in listed.output and "rolled_back" in listed.output
    assert "exact_match 0.92" in listed.output


def test_promote_rollback_and_pin_change_the_route_with_an_audit_trail(control_api):
    assert "no task is routed yet" in run("rollouts").output
    promoted = run(
        "rollouts", "promote", "weather", "--model", "intern-weather", "--version", "1",
        "--mode", "canary", "--share", "0.25", "--reason", "try it",
    )  # fmt: skip
    assert promoted.exit_code == 0, promoted.output
    assert "intern-weather v1" in promoted.output and "canary 25%" in promoted.output
    assert run("rollouts", "promote", "weather", "--model", "intern-weather",
               "--version", "1", "--mode", "full").exit_code == 0  # fmt: skip
    rolled = run("rollouts", "rollback", "weather", "--reason", "too early")
    assert rolled.exit_code == 0 and "canary 25%" in rolled.output
    pinned = run("rollouts", "pin", "weather", "--reason", "incident 42")
    assert pinned.exit_code == 0 and "expert (pinned)" in pinned.output
    refused = run("rollouts", "promote", "weather", "--model", "intern-weather",
                  "--version", "1", "--mode", "full")  # fmt: skip
    assert refused.exit_code != 0 and "pinned to the expert" in refused.output
    assert [(e.mode, e.pinned, e.changed_by) for e in control_api] == [
        ("canary", False, "operator:ann"),
        ("full", False, "operator:ann"),
        ("canary", False, "operator:ann"),
        ("off", True, "operator:ann"),
    ]
    history = run("rollouts", "history", "weather")
    assert history.exit_code == 0, history.output
    for reason in ("incident 42", "too early", "try it"):
        assert reason in history.output
    assert run("rollouts").output.count("operator:ann") == 1


def test_bad_input_is_refused_before_any_call(control_api):
    bad_mode = run("rollouts", "promote", "weather", "--model", "m", "--version", "1",
                   "--mode", "half")  # fmt: skip
    assert bad_mode.exit_code != 0 and "--mode: must be one of" in bad_mode.output
    no_share = run("rollouts", "promote", "weather", "--model", "m", "--version", "1",
                   "--mode", "canary")  # fmt: skip
    assert no_share.exit_code != 0 and "--share" in no_share.output
    unknown = run("rollouts", "promote", "weather", "--model", "m", "--version", "9")
    assert unknown.exit_code != 0 and "no model 'm' version 9" in unknown.output
    assert control_api == []
