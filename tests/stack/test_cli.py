"""`interns up` refuses clearly, before starting anything, when it cannot succeed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from interns.stack.settings import StackSettings
from tests.conftest import free_port


def interns(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    ports = {
        f"INTERNS_{name.upper()}": str(free_port())
        for name in StackSettings.model_fields
        if name.endswith("_port")
    }
    return subprocess.run(
        [sys.executable, "-m", "interns.cli", *args],
        env={**os.environ, "COLUMNS": "200", **ports, "INTERNS_STATE_DIR": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_busy_port_is_named_with_the_setting_that_moves_it(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = interns("up", env={"INTERNS_GATEWAY_PORT": str(port)}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"port {port} (gateway gRPC)" in result.stderr
    assert "INTERNS_GATEWAY_PORT" in result.stderr
    assert not (tmp_path / "stack.json").exists()


def test_an_unreachable_database_is_named_without_its_password(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql://interns:s3cret@127.0.0.1:{free_port()}/interns"
    result = interns("up", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 1
    assert "is unreachable" in result.stderr
    assert "interns:***@127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_status_of_a_stack_that_is_not_running_says_so(tmp_path):
    result = interns("status", env={}, cwd=tmp_path)
    assert result.returncode == 1
    assert "not running" in result.stdout


def test_creating_a_key_for_an_empty_tenant_names_the_option(tmp_path):
    result = interns("keys", "create", "--tenant", " ", env={}, cwd=tmp_path)
    assert result.returncode == 1
    assert "--tenant: must not be empty" in result.stderr


def test_listing_keys_without_a_control_api_says_where_it_looked(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    result = interns("keys", "list", env={"TRAINER_ADDR": address}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"the control API at {address} is unreachable" in result.stderr
    assert "TRAINER_ADDR" in result.stderr
