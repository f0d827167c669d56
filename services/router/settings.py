"""Router settings (prefix ROUTER_; the expert's under EXPERT_)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared
from interns.router.costs import Price


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address the gRPC server binds")
    port: int = Field(50052, description="gRPC port")
    ops_port: int = Field(19102, description="Port of /healthz, /readyz, /metrics")
    triton_grpc_addr: str = shared("TRITON_GRPC_ADDR", "127.0.0.1:18001", "Triton's gRPC address")
    expert_base_url: str = shared(
        "EXPERT_BASE_URL", "http://127.0.0.1:18080/v1", "OpenAI-compatible base URL of the expert"
    )
    expert_model: str = shared("EXPERT_MODEL", "replay-expert", "The expert's model name")
    expert_api_key: SecretStr = shared(
        "EXPERT_API_KEY", SecretStr(""), "API key sent to the expert (or EXPERT_API_KEY_FILE)"
    )
    expert_timeout_s: float = shared("EXPERT_TIMEOUT_S", 60.0, "Upper bound of one expert call")
    expert_max_attempts: int = shared(
        "EXPERT_MAX_ATTEMPTS", 4, "Attempts per call on 429, 5xx and connection errors"
    )
    expert_prices: dict[str, Price] = shared(
        "EXPERT_PRICES",
        {"default": Price(prompt_per_million=2.5, completion_per_million=10.0)},
        "Price table, JSON: {model: {prompt_per_million, completion_per_million}};"
        " 'default' prices models not listed",
    )
    intern_timeout_s: float = Field(2.0, description="Longest wait for an intern's answer")
    breaker_failures: int = Field(
        5, description="Failures in a row after which a model is not called for a while"
    )
    breaker_open_s: float = Field(30.0, description="How long a tripped model is left alone")
    shadow_concurrency: int = Field(16, description="Shadow calls in flight at most")
    check_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of intern-served calls the expert also answers (sampled checks"
        " of live agreement, published to interns.shadow.v1); 0: none",
    )
