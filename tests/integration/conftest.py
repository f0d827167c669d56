"""The integration tier: the real local stack (Tansu, Triton, Redis, SQLite, every
service as its own process), started once on free ports in a temporary state folder and
stopped at the end."""

from __future__ import annotations

import pytest

from interns.stack.settings import StackSettings
from interns.stack.supervisor import down, up
from tests.conftest import free_port

PORT_FIELDS = [name for name in StackSettings.model_fields if name.endswith("_port")]


def stack_settings(state_dir, **overrides) -> StackSettings:
    ports = {name: free_port() for name in PORT_FIELDS}
    return StackSettings(
        state_dir=state_dir,
        database_url="",
        expert_base_url="",
        trainer_addr="",
        api_key="",
        **{**ports, **overrides},
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory, weather_log):
    settings = stack_settings(tmp_path_factory.mktemp("stack"), workload=str(weather_log))
    running = up(settings, report=print)
    yield settings, running
    outcomes = dict(down(settings))
    # `down` stops exactly what `up` started, each within its grace period.
    assert outcomes == {item.name: "stopped" for item in running}, outcomes
    assert not any(item.process() for item in running)


@pytest.fixture(scope="session")
def api_key(stack) -> str:
    """The local development key (tenant `local`) that `up` wrote to the state folder."""
    settings, _ = stack
    return settings.api_key_file.read_text().strip()


@pytest.fixture(scope="session")
def auth(api_key) -> tuple[tuple[str, str], ...]:
    """gRPC metadata that authenticates a call to the gateway with the local key."""
    return (("authorization", f"Bearer {api_key}"),)
