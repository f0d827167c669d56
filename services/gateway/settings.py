"""Gateway settings (prefix GATEWAY_)."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared


class TenantRateLimit(BaseModel):
    """One tenant's own rate limit, in GATEWAY_TENANT_RATE_LIMITS."""

    rps: float = Field(gt=0, description="Calls a second, on average")
    burst: int = Field(ge=1, description="Calls at once above the average")


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address the gRPC server binds")
    port: int = Field(50051, description="gRPC port")
    ops_port: int = Field(19101, description="Port of /healthz, /readyz, /metrics")
    http_host: str = Field(
        "127.0.0.1", description="Address the OpenAI-compatible HTTP server binds"
    )
    http_port: int = Field(
        18090, description="Port of the OpenAI-compatible API (base URL http://<host>:<port>/v1)"
    )
    http_max_body_bytes: int = Field(
        8 * 1024 * 1024,
        gt=0,
        description="Largest HTTP request body; a larger one gets 413 before it is read "
        "(GATEWAY_MAX_REQUEST_BYTES still applies after)",
    )
    expert_model: str = shared(
        "EXPERT_MODEL", "replay-expert", "The expert's model name, listed by GET /v1/models"
    )
    trace_publishing: bool = Field(
        True, description="Publish a trace per call; off only to measure what publishing costs"
    )
    router: Literal["remote", "embedded"] = Field(
        "remote",
        description="remote: call the router service at ROUTER_ADDR over gRPC (router replicas "
        "scale on their own); embedded: run the router in the gateway's process, configured "
        "by the router's own settings (ROUTER_*, EXPERT_*, TRITON_GRPC_ADDR), without the "
        "gRPC hop (less CPU and latency per call; the local stack's choice)",
    )
    router_addr: str = shared(
        "ROUTER_ADDR", "127.0.0.1:50052", "The router's gRPC address (GATEWAY_ROUTER=remote)"
    )
    default_deadline_s: float = Field(60.0, description="Deadline of a call whose client set none")
    require_api_key: bool = Field(
        True, description="Refuse calls without an API key (UNAUTHENTICATED)"
    )
    default_tenant: str = Field(
        "default", description="Tenant of calls without a key when GATEWAY_REQUIRE_API_KEY=false"
    )
    api_key_cache_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a checked API key is remembered: a revoked key works at most "
        "this long; 0 reads the database on every call",
    )
    rate_limit_rps: float = Field(
        500.0, gt=0, description="Calls a second per tenant, per gateway replica"
    )
    rate_limit_burst: int = Field(
        1000, ge=1, description="Calls a tenant may make at once above its rate"
    )
    tenant_rate_limits: dict[str, TenantRateLimit] = Field(
        default_factory=dict,
        description='Own limits of some tenants, as JSON: {"acme": {"rps": 50, "burst": 100}}',
    )
    max_request_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Largest request (serialized protobuf); the gRPC server itself refuses "
        "messages above 8 MiB",
    )
    max_messages: int = Field(256, gt=0, description="Most messages in a request")
    max_tools: int = Field(128, gt=0, description="Most tools in a request")
    trace_queue_size: int = Field(
        10_000, description="Trace events held in memory while Kafka is slow or down"
    )
    spill_dir: Path = Field(
        Path(".interns/spill"),
        description="Folder of the durable trace spill: traces wait there while Kafka is down "
        "or slow, and across restarts, until Kafka has them",
    )
    spill_max_bytes: int = Field(
        1 << 30,
        gt=0,
        description="Most bytes of traces in the spill; beyond it new traces are dropped and "
        "counted in interns_traces_dropped_total",
    )
    trace_linger_ms: int = Field(
        200,
        ge=0,
        le=5_000,
        description="Time a trace waits in the producer to go out with others: fewer, larger "
        "requests cost the gateway, Kafka and the collector less CPU; nobody waits for a trace",
    )
    trace_compression: Literal["snappy", "zstd", "lz4", "gzip", "none"] = Field(
        "snappy",
        description="Compression of the trace record batches sent to Kafka: a trace's JSON "
        "shrinks about 7 times with snappy (16 with zstd, for more of the gateway's CPU); "
        "fewer bytes cost the gateway, the broker and the collector less than sending it whole",
    )
    trace_send_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Time Kafka has to acknowledge a batch of traces before they go to the spill",
    )
    trace_confirm_group: str = shared(
        "COLLECTOR_GROUP_ID",
        "interns-trace-collector",
        "The trace-collector's consumer group: traces Kafka acknowledged are held until it "
        "has committed past them, and sent again if the broker lost them; empty: not held",
    )
    trace_hold_max_bytes: int = Field(
        32 << 20,
        gt=0,
        description="Most bytes of acknowledged traces held until the collector confirms "
        "them; beyond it the oldest are released (counted in "
        "interns_traces_released_unconfirmed_total)",
    )
