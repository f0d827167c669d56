"""Deploy-controller settings (prefix DEPLOYER_; the gate nests as DEPLOYER_GATE__<FIELD>,
per-task gates as DEPLOYER_TASK_GATES, JSON)."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared
from interns.deployer.gating import Gate
from interns.deployer.triton import check_control_key


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class DeployerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEPLOYER_", extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    ops_port: int = Field(19106, description="Port of /healthz, /readyz, /metrics")
    triton_grpc_addr: str = shared("TRITON_GRPC_ADDR", "127.0.0.1:18001", "Triton's gRPC address")
    triton_control_key: SecretStr = shared(
        "TRITON_CONTROL_KEY",
        SecretStr(""),
        "Key of Triton's model control (its restricted protocols; also TRITON_CONTROL_KEY_FILE);"
        " empty: none sent, for a Triton started without the restriction",
    )
    trainer_addr: str = shared(
        "TRAINER_ADDR", "127.0.0.1:50053", "The control API, asked for new versions on drift"
    )
    canary_shares: list[float] = Field(
        [0.1, 0.5], description="Canary steps between shadow and full, JSON list in (0, 1)"
    )
    gate: Gate = Field(default_factory=Gate, description="Every task's gate (DEPLOYER_GATE__*)")
    task_gates: dict[str, Gate] = Field(
        default_factory=dict, description="Gates of particular tasks, JSON {task_id: gate}"
    )
    stage_timeout_s: float = Field(
        600.0, gt=0, description="A stage without enough samples by then is rolled back"
    )
    watch_window: int = Field(
        200, ge=1, description="Latest comparisons a serving version is judged on"
    )
    tick_s: float = Field(0.5, gt=0, description="Seconds between two looks at the rollouts")
    warmup_requests: int = Field(3, ge=0, description="Stored calls replayed to warm a version")
    load_timeout_s: float = Field(600.0, gt=0, description="Longest wait for Triton to load")
    drain_grace_s: float = Field(
        10.0,
        gt=0,
        description="A version the route left is unloaded once this long has passed and"
        " Triton counted no call to it over the last such period",
    )
    max_batch_size: int = Field(8, ge=1, description="Triton config of the loaded interns")
    instances: int = Field(1, ge=1, description="Triton instances per intern version")
    lease_ttl_s: float = Field(
        10.0, gt=0, description="The active controller's lease; another replica takes over after"
    )
    instance_id: str = Field(default_factory=_instance_id, description="This replica's name")
    compare_metric: str = Field(
        "exact_match", description="Offline score a new version must beat the serving one on"
    )
    drift_every_s: float = Field(300.0, gt=0, description="Seconds between two drift checks")
    drift_agreement_drop: float = Field(
        0.05, ge=0, le=1, description="Drop of live agreement that asks for a new version"
    )
    drift_max_fallback_rate: float = Field(
        0.05, ge=0, le=1, description="Fallback rate of a serving intern that asks for one"
    )
    drift_max_expert_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of a served task's calls the expert may still answer (calls the"
        " intern defers aside) before a new version is asked for",
    )
    drift_deferral_rise: float = Field(
        0.1,
        ge=0,
        le=1,
        description="How much more of a served task's calls its intern may defer than it"
        " deferred in its evaluation (1 - coverage) before a new version is asked for",
    )
    drift_cooldown_s: float = Field(3600.0, ge=0, description="Least time between two requests")

    @field_validator("triton_control_key")
    @classmethod
    def _control_key(cls, key: SecretStr) -> SecretStr:
        check_control_key(key.get_secret_value())
        return key

    @field_validator("canary_shares")
    @classmethod
    def _shares(cls, shares: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in shares) or shares != sorted(shares):
            raise ValueError("canary shares must grow and lie strictly between 0 and 1")
        return shares

    def gate_of(self, task_id: str) -> Gate:
        return self.task_gates.get(task_id, self.gate)
