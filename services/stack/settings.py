"""Local stack settings (prefix INTERNS_): the state folder and every port."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from interns.common.settings import FileSecretsSettings, shared


class StackSettings(FileSecretsSettings):
    model_config = SettingsConfigDict(env_prefix="INTERNS_", extra="ignore", populate_by_name=True)

    state_dir: Path = Field(Path(".interns"), description="Logs, pids, database, model repository")
    host: str = Field("127.0.0.1", description="Address every part listens on")
    kafka_port: int = 19092
    redis_port: int = 16379
    triton_http_port: int = 18000
    triton_grpc_port: int = 18001
    triton_metrics_port: int = 18002
    expert_port: int = 18080
    gateway_port: int = 50051
    gateway_ops_port: int = 19101
    gateway_http_port: int = 18090
    router_port: int = 50052
    router_ops_port: int = 19102
    trainer_port: int = 50053
    trainer_ops_port: int = 19103
    collector_ops_port: int = 19104
    miner_ops_port: int = 19105
    deployer_ops_port: int = 19106
    start_timeout_s: float = Field(120.0, description="Longest wait for the stack to be healthy")
    background_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Scheduling priority (nice) of the background parts (trace-collector, "
        "miner, trainer and its worker): on one machine they take the CPU the calls being "
        "served leave, and catch up when traffic eases; 0 puts them level with serving",
    )
    deployer: bool = Field(
        False,
        description="Start the deploy controller, which rolls registered versions out (and"
        " back) by itself; off by default locally, where tests and operators promote by hand",
    )
    database_url: str = shared(
        "DATABASE_URL", "", "SQLAlchemy URL; the SQLite file in the state folder when empty"
    )
    expert_base_url: str = shared(
        "EXPERT_BASE_URL", "", "An external expert; the replay expert is started when empty"
    )
    workload: str = Field("", description="Workload the replay expert answers from")
    trainer_addr: str = shared(
        "TRAINER_ADDR", "", "The control API (host:port); the local stack's trainer when empty"
    )
    kafka_bootstrap_servers: str = shared(
        "KAFKA_BOOTSTRAP_SERVERS", "", "Kafka brokers (host:port,...); the local broker when empty"
    )
    api_key: str = Field(
        "", description="API key the demo sends; the local key file (state folder) when empty"
    )
    triton_control_key: SecretStr = shared(
        "TRITON_CONTROL_KEY",
        SecretStr(""),
        "Key of Triton's model control, given to Triton and the deploy controller only (also"
        " TRITON_CONTROL_KEY_FILE); the key file in the state folder when empty",
    )

    @field_validator("triton_control_key")
    @classmethod
    def _control_key(cls, key: SecretStr) -> SecretStr:
        # Imported here: every CLI command builds these settings, few need tritonclient.
        from interns.deployer.triton import check_control_key

        check_control_key(key.get_secret_value())
        return key

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.state_dir / 'interns.db').resolve()}"

    @property
    def resolved_trainer_addr(self) -> str:
        return self.trainer_addr or f"{self.host}:{self.trainer_port}"

    @property
    def resolved_kafka_bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.host}:{self.kafka_port}"

    @property
    def api_key_file(self) -> Path:
        """Where `up` writes the local development key of tenant `local`."""
        return self.state_dir / "api-key"

    @property
    def triton_control_key_file(self) -> Path:
        """Where `up` keeps the generated Triton control key (TRITON_CONTROL_KEY unset)."""
        return self.state_dir / "triton-control-key"
