"""Miner settings (prefix MINER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings


class MinerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MINER_", extra="ignore", populate_by_name=True)

    ops_port: int = Field(19105, description="Port of /healthz, /readyz, /metrics")
    interval_s: float = Field(10.0, description="Seconds between two mining passes")
