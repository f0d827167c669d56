"""Miner settings (prefix MINER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings


class MinerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MINER_", extra="ignore", populate_by_name=True)

    ops_port: int = Field(19105, description="Port of /healthz, /readyz, /metrics")
    interval_s: float = Field(10.0, description="Seconds between two mining passes")
    subclusters: bool = Field(
        True, description="Split signatures that hold several tasks by embedding clusters"
    )
    sample_size: int = Field(
        96, ge=20, description="Distinct messages per signature embedded to decide a split"
    )
