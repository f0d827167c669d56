"""A bad setting stops the process with a message that names the environment variable to
fix: the shared, un-prefixed one for a shared setting, the alias the user set for one with
several names, and prefix+name otherwise."""

from __future__ import annotations

import pytest

from interns.common.settings import load_settings
from interns.deployer.settings import DeployerSettings
from interns.expert.settings import ExpertSettings


def stopped_with(cls, monkeypatch, **environ: str) -> str:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(cls)
    return str(stopped.value)


def test_a_bad_shared_setting_names_its_shared_variable_not_the_prefixed_one(monkeypatch):
    message = stopped_with(
        DeployerSettings,
        monkeypatch,
        TRITON_CONTROL_KEY="too short!",
        TRITON_GRPC_TLS="maybe",
    )
    assert "setting TRITON_CONTROL_KEY:" in message
    assert "setting TRITON_GRPC_TLS:" in message
    assert "DEPLOYER_TRITON" not in message


def test_a_bad_prefixed_setting_still_names_the_prefixed_variable(monkeypatch):
    message = stopped_with(DeployerSettings, monkeypatch, DEPLOYER_CANARY_SHARES="[0.9, 0.1]")
    assert "setting DEPLOYER_CANARY_SHARES:" in message


@pytest.mark.parametrize("variable", ["EXPERT_MODEL_NAME", "EXPERT_MODEL"])
def test_a_setting_with_several_names_names_the_one_that_was_set(monkeypatch, variable):
    for name in ("EXPERT_MODEL_NAME", "EXPERT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    message = stopped_with(ExpertSettings, monkeypatch, **{variable: ""})
    assert f"setting {variable}:" in message


def test_a_bad_nested_setting_names_its_own_variable(monkeypatch):
    message = stopped_with(DeployerSettings, monkeypatch, DEPLOYER_GATE__MIN_AGREEMENT="lots")
    assert "setting DEPLOYER_GATE__MIN_AGREEMENT:" in message


def test_a_nested_setting_given_as_json_names_the_variable_and_the_field(monkeypatch):
    message = stopped_with(DeployerSettings, monkeypatch, DEPLOYER_GATE='{"min_agreement": "x"}')
    assert "setting DEPLOYER_GATE (field min_agreement):" in message


def test_a_bad_value_read_from_a_file_names_the_file_variable(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("short")
    monkeypatch.delenv("TRITON_CONTROL_KEY", raising=False)
    message = stopped_with(DeployerSettings, monkeypatch, TRITON_CONTROL_KEY_FILE=str(secret))
    assert "setting TRITON_CONTROL_KEY_FILE:" in message
