"""Trace-collector settings (prefix COLLECTOR_)."""

import phonenumbers
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings

# Public, so only for local use: whoever knows the key can test a guess (a phone number)
# against a placeholder. The collector warns at start when it runs with this one.
LOCAL_REDACTION_KEY = "interns-local-redaction-key-not-secret"


class CollectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COLLECTOR_", extra="ignore", populate_by_name=True
    )

    ops_port: int = Field(19104, description="Port of /healthz, /readyz, /metrics")
    group_id: str = Field("interns-trace-collector", description="Kafka consumer group")
    batch_size: int = Field(2_000, description="Most traces written in one transaction")
    batch_timeout_ms: int = Field(200, description="Longest wait to fill a batch")
    fetch_bytes_per_partition: int = Field(
        4 * 1024 * 1024,
        description="Most bytes fetched from one partition at a time: a batch holds what "
        "the fetches brought, and traces are about 6 KB (Kafka's default, 1 MiB, is about "
        "170 of them)",
    )
    database_retry_s: float = Field(
        60.0,
        description="How long a batch's write is retried while the database is unavailable "
        "before the batch goes back to Kafka (to be read again); below max.poll.interval",
    )
    gc_threshold: int = Field(
        100_000,
        description="Allocations between runs of Python's cyclic garbage collector",
    )
    redaction_key: SecretStr = Field(
        SecretStr(LOCAL_REDACTION_KEY),
        min_length=16,
        description="Secret of the PII placeholders' HMAC; the same on every collector "
        "instance, or the same value gets different placeholders",
    )
    redaction_remembered_chars: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="Characters of the last texts (messages, tool calls' arguments) whose "
        "PII findings are kept in memory, so that a text seen again (every call of a "
        "session carries the messages before it) is not scanned again; 0 scans every "
        "text every time",
    )
    redaction_phone_regions: str = Field(
        "US",
        description="Regions (comma-separated, e.g. 'US,GB') whose national format phone "
        "numbers without a country code are redacted; each region added finds more numbers "
        "and more look-alikes (zip codes, barcodes)",
    )

    @field_validator("redaction_phone_regions")
    @classmethod
    def _known_regions(cls, value: str) -> str:
        regions = [region.strip().upper() for region in value.split(",") if region.strip()]
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if not regions or unknown:
            raise ValueError(f"unknown phone regions: {unknown or value!r}")
        return ",".join(regions)

    @property
    def phone_regions(self) -> tuple[str, ...]:
        return tuple(self.redaction_phone_regions.split(","))
