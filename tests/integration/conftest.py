"""The integration tier: the real local stack (Tansu, Triton, Redis, SQLite, every
service as its own process), started once on free ports in a temporary state folder and
stopped at the end."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest
import tritonclient.grpc as triton

from interns.bench.processes import stack_ports
from interns.deployer.triton import control_headers
from interns.stack.components import triton_control_key
from interns.stack.settings import StackSettings
from interns.stack.supervisor import down, up


def stack_settings(state_dir, **overrides) -> StackSettings:
    ports = stack_ports()
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


@dataclass
class StackTriton:
    """The stack's Triton: its settings, the control key and a gRPC client."""

    settings: StackSettings
    key: str
    client: triton.InferenceServerClient

    @property
    def headers(self) -> dict[str, str]:
        """The headers of a model-control call (load, unload, repository index)."""
        return control_headers(self.key)

    def load(self, name: str, timeout_s: float = 120) -> None:
        """Loads model `name` from the repository and waits until it is ready."""
        self.client.load_model(name, headers=self.headers, client_timeout=timeout_s)
        assert self.client.is_model_ready(name)

    def plant(self, name: str, model: str, config: str = "") -> None:
        """Writes version 1 of python-backend model `name` to the model repository: its
        `model.py` and its `config.pbtxt` (empty: the load passes the whole config)."""
        folder = self.settings.state_dir.resolve() / "model-repository" / name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(config)
        (folder / "1" / "model.py").write_text(textwrap.dedent(model))


@pytest.fixture(scope="module")
def stack_triton(stack):
    settings, _ = stack
    client = triton.InferenceServerClient(f"{settings.host}:{settings.triton_grpc_port}")
    yield StackTriton(settings, triton_control_key(settings), client)
    client.close()
