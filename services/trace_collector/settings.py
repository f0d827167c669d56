"""Trace-collector settings (prefix COLLECTOR_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings


class CollectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COLLECTOR_", extra="ignore", populate_by_name=True
    )

    ops_port: int = Field(19104, description="Port of /healthz, /readyz, /metrics")
    group_id: str = Field("interns-trace-collector", description="Kafka consumer group")
    batch_size: int = Field(500, description="Most traces written in one transaction")
    batch_timeout_ms: int = Field(200, description="Longest wait to fill a batch")
