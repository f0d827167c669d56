"""Replay expert settings (prefix EXPERT_; the workloads folder under INTERNS_WORKLOADS_DIR)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from interns.common.settings import shared

# Relative to the working directory: the repo sits next to the shared data folder.
DEFAULT_WORKLOADS_DIR = "../shared/workloads"
DEFAULT_WORKLOAD = Path("sgd") / "sgd_service_calls_dev.jsonl"


class ExpertSettings(BaseSettings):
    """Where the replay expert listens, what it replays and how slowly."""

    # extra="ignore": the router's own EXPERT_BASE_URL, EXPERT_API_KEY... share the prefix.
    model_config = SettingsConfigDict(env_prefix="EXPERT_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address the HTTP server binds")
    port: int = Field(18080, ge=0, le=65535, description="HTTP port (0: any free port)")
    workloads_dir: Path = shared(
        "INTERNS_WORKLOADS_DIR", Path(DEFAULT_WORKLOADS_DIR), "Folder of the recorded workloads"
    )
    workload: Path = Field(
        None,
        validate_default=True,
        description="Workload file to replay; default: sgd/sgd_service_calls_dev.jsonl "
        "under the workloads folder",
    )
    latency_ms: float = Field(0.0, ge=0, description="Delay added to every answer, in ms")
    # EXPERT_MODEL is what the router sends as `model`; accepting it keeps both sides in step.
    model_name: str = Field(
        "replay-expert",
        min_length=1,
        validation_alias=AliasChoices("EXPERT_MODEL_NAME", "EXPERT_MODEL", "model_name"),
        description="Model name the expert reports in answers and /v1/models",
    )
    log_level: str = shared("LOG_LEVEL", "INFO", "Log level")
    log_format: str = shared("LOG_FORMAT", "json", "'json' for machines or 'console' for people")

    @field_validator("workload", mode="before")
    @classmethod
    def _default_workload(cls, value: Any, info: ValidationInfo) -> Any:
        """An unset workload is the SGD dev file in the workloads folder."""
        if value in (None, ""):
            workloads_dir = Path(info.data.get("workloads_dir", DEFAULT_WORKLOADS_DIR))
            return workloads_dir / DEFAULT_WORKLOAD
        return value

    @field_validator("workload", "workloads_dir", mode="after")
    @classmethod
    def _resolve(cls, value: Path) -> Path:
        """Relative paths are taken from the working directory at start-up."""
        return value.expanduser().resolve()
