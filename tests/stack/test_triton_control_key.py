"""`interns up` restricts Triton's model control to a key that only Triton and the deploy
controller get: made once in the state folder (owner-only) unless TRITON_CONTROL_KEY is
given, never handed to the router or the other services."""

from __future__ import annotations

import stat

import pytest

from interns.deployer.triton import CONTROL_HEADER, CONTROL_PROTOCOLS
from interns.stack.components import build_components, triton_control_key
from interns.stack.settings import StackSettings

RULE_PREFIX = f"{','.join(CONTROL_PROTOCOLS)}:{CONTROL_HEADER}="


def settings_in(tmp_path, monkeypatch, **values) -> StackSettings:
    for name in ("TRITON_CONTROL_KEY", "TRITON_CONTROL_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    return StackSettings(state_dir=tmp_path / "state", deployer=True, **values)


def test_the_key_is_made_once_for_its_owner_only_and_kept(tmp_path, monkeypatch):
    settings = settings_in(tmp_path, monkeypatch)
    key = triton_control_key(settings)
    assert len(key) >= 32
    assert stat.S_IMODE(settings.triton_control_key_file.stat().st_mode) == 0o600
    assert triton_control_key(settings) == key
    assert [p.name for p in settings.triton_control_key_file.parent.iterdir()] == [
        "triton-control-key"
    ]


def test_triton_and_the_deploy_controller_get_the_key_and_no_other_part(tmp_path, monkeypatch):
    settings = settings_in(tmp_path, monkeypatch)
    components = {c.name: c for c in build_components(settings)}
    key = settings.triton_control_key_file.read_text().strip()

    command = components["triton"].command
    assert f"--grpc-restricted-protocol={RULE_PREFIX}{key}" in command
    assert f"--http-restricted-api={RULE_PREFIX}{key}" in command
    assert components["deployer"].env["TRITON_CONTROL_KEY"] == key
    for name, component in components.items():
        if name in ("triton", "deployer"):
            continue
        assert not any(key in value for value in component.env.values()), name
        assert not any(key in part for part in component.command), name


def test_a_given_key_is_used_and_nothing_is_written(tmp_path, monkeypatch):
    given = "k" * 24
    settings = settings_in(tmp_path, monkeypatch, triton_control_key=given)
    components = {c.name: c for c in build_components(settings)}
    assert f"--grpc-restricted-protocol={RULE_PREFIX}{given}" in components["triton"].command
    assert components["deployer"].env["TRITON_CONTROL_KEY"] == given
    assert not settings.triton_control_key_file.exists()


def test_the_key_is_read_from_a_file_and_a_bad_one_is_refused(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("f" * 20 + "\n")
    monkeypatch.delenv("TRITON_CONTROL_KEY", raising=False)
    monkeypatch.setenv("TRITON_CONTROL_KEY_FILE", str(secret))
    assert StackSettings().triton_control_key.get_secret_value() == "f" * 20

    monkeypatch.delenv("TRITON_CONTROL_KEY_FILE")
    with pytest.raises(ValueError, match="at least 16 characters"):
        StackSettings(triton_control_key="short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        StackSettings(triton_control_key="a:b=c," * 4)


def test_an_emptied_key_file_stops_the_stack_instead_of_opening_triton(tmp_path, monkeypatch):
    settings = settings_in(tmp_path, monkeypatch)
    settings.triton_control_key_file.parent.mkdir(parents=True)
    settings.triton_control_key_file.write_text("\n")
    with pytest.raises(ValueError, match="empty; delete it"):
        build_components(settings)
