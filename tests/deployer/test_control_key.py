"""The deploy controller's Triton control key: read like every secret (TRITON_CONTROL_KEY
or TRITON_CONTROL_KEY_FILE), masked, checked at start, and sent as the gRPC header Triton
expects on its restricted protocols."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from interns.deployer.settings import DeployerSettings
from interns.deployer.triton import control_headers


def test_the_key_comes_from_a_file_and_never_prints(tmp_path, monkeypatch):
    secret = tmp_path / "key"
    secret.write_text("0123456789abcdef-XYZ\n")
    monkeypatch.delenv("TRITON_CONTROL_KEY", raising=False)
    monkeypatch.setenv("TRITON_CONTROL_KEY_FILE", str(secret))
    settings = DeployerSettings()
    assert settings.triton_control_key.get_secret_value() == "0123456789abcdef-XYZ"
    assert "0123456789abcdef" not in repr(settings)


def test_a_key_triton_cannot_take_stops_the_controller(monkeypatch):
    monkeypatch.setenv("TRITON_CONTROL_KEY", "too-short")
    with pytest.raises(ValidationError, match="TRITON_CONTROL_KEY needs at least 16"):
        DeployerSettings()


def test_the_header_is_triton_s_grpc_form_and_absent_without_a_key():
    assert control_headers("k" * 16) == {"triton-grpc-protocol-interns-control": "k" * 16}
    assert control_headers("") == {}
