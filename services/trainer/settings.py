"""Trainer settings (prefix TRAINER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address the control gRPC server binds")
    port: int = Field(50053, description="gRPC port of the control API")
    ops_port: int = Field(19103, description="Port of /healthz, /readyz, /metrics")
    celery_broker_url: str = shared(
        "CELERY_BROKER_URL", "redis://127.0.0.1:16379/0", "Celery's broker (Redis)"
    )
    model_repository: str = Field(
        ".interns/model-repository", description="Triton model repository the trainer writes"
    )
    operator: str = Field("operator", description="Name recorded for changes made by hand")
