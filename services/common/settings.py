"""Settings shared by every service.

Shared infrastructure has one spelling everywhere (`KAFKA_BOOTSTRAP_SERVERS`,
`DATABASE_URL`, ...); each service adds its own fields under its own prefix.
Nothing here is built at import time: a service builds its settings in `__main__`.
"""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


def shared(name: str, default, description: str):
    """A field read from the un-prefixed, project-wide environment variable `name`."""
    return Field(default, validation_alias=AliasChoices(name), description=description)


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `env_prefix` and add their own."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = shared(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092", "Kafka brokers, host:port[,host:port]"
    )
    database_url: str = shared(
        "DATABASE_URL", "sqlite:///.interns/interns.db", "SQLAlchemy URL of the database"
    )
    log_level: str = shared("LOG_LEVEL", "INFO", "Log level")
    log_format: str = shared("LOG_FORMAT", "json", "'json' for machines or 'console' for people")
    ops_host: str = Field(
        "127.0.0.1", description="Address of the /healthz, /readyz, /metrics server"
    )
    ops_port: int = Field(0, description="Port of the /healthz, /readyz, /metrics server")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Builds `cls` from the environment; a missing or bad setting stops the process
    with a message that names the environment variable."""
    try:
        return cls()
    except ValidationError as error:
        prefix = cls.model_config.get("env_prefix", "")
        lines = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            info = cls.model_fields.get(field)
            alias = info.validation_alias if info else None
            env = (
                alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{field}".upper()
            )
            lines.append(f"setting {env}: {problem['msg']}")
        sys.exit("invalid configuration:\n  " + "\n  ".join(lines))
