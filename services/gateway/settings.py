"""Gateway settings (prefix GATEWAY_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address the gRPC server binds")
    port: int = Field(50051, description="gRPC port")
    ops_port: int = Field(19101, description="Port of /healthz, /readyz, /metrics")
    router_addr: str = shared("ROUTER_ADDR", "127.0.0.1:50052", "The router's gRPC address")
    default_deadline_s: float = Field(60.0, description="Deadline of a call whose client set none")
    default_tenant: str = Field(
        "default", description="Tenant of calls until API keys per tenant are configured"
    )
    trace_queue_size: int = Field(
        10_000, description="Trace events held in memory while Kafka is slow or down"
    )
