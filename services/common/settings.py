"""Settings shared by every service.

Shared infrastructure has one spelling everywhere (`KAFKA_BOOTSTRAP_SERVERS`,
`DATABASE_URL`, ...); each service adds its own fields under its own prefix.
Nothing here is built at import time: a service builds its settings in `__main__`.

Secrets (passwords, keys) are `SecretStr`: they print as `**********`. Every setting can
also be read from a file: `<NAME>_FILE=/run/secrets/x` reads NAME from that file (trailing
newline dropped), as container orchestrators mount secrets. `load_settings` hands the
secret values to the log filter (`interns.common.logging`), which masks them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from interns.common.logging import settings_loaded


def shared(name: str, default, description: str):
    """A field read from the un-prefixed, project-wide environment variable `name`."""
    return Field(default, validation_alias=AliasChoices(name), description=description)


def env_names(settings_cls: type[BaseSettings], field: str, info: FieldInfo) -> list[str]:
    """The environment variables a field is read from: its shared names, or prefix+name."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{settings_cls.model_config.get('env_prefix', '')}{field}".upper()]


class FileSettingsSource(PydanticBaseSettingsSource):
    """`<NAME>_FILE` variables: the value of NAME is the content of that file."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for name in env_names(self.settings_cls, field_name, field):
            path = os.environ.get(f"{name}_FILE")
            if path:
                return Path(path).read_text().rstrip("\r\n"), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, field_name)
            if value is not None:
                values[key] = value
        return values


class FileSecretsSettings(BaseSettings):
    """Settings that also read NAME from the file that `<NAME>_FILE` names, as the services
    read their secrets: a value given outright wins over NAME, which wins over NAME_FILE."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            FileSettingsSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )


class SecureSettings(FileSecretsSettings):
    """Transport security shared by every process that speaks gRPC or Kafka (the services
    and the CLI), one spelling everywhere; all off by default (plaintext on loopback)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    grpc_tls: bool = shared(
        "GRPC_TLS", False, "TLS on every gRPC server and on the clients of the services' APIs"
    )
    grpc_tls_cert_file: Path | None = shared(
        "GRPC_TLS_CERT_FILE",
        None,
        "PEM certificate (chain) of this process: served, and "
        "shown to servers that require client certificates",
    )
    grpc_tls_key_file: Path | None = shared(
        "GRPC_TLS_KEY_FILE", None, "PEM private key of GRPC_TLS_CERT_FILE"
    )
    grpc_tls_ca_file: Path | None = shared(
        "GRPC_TLS_CA_FILE",
        None,
        "PEM CA bundle that signs the peers' certificates (clients: "
        "the servers'; servers with client auth: the clients'); unset: the system's roots",
    )
    grpc_tls_client_auth: Literal["none", "require"] = shared(
        "GRPC_TLS_CLIENT_AUTH",
        "none",
        "'require': servers accept only clients whose "
        "certificate GRPC_TLS_CA_FILE signed (mutual TLS)",
    )
    grpc_tls_server_name: str = shared(
        "GRPC_TLS_SERVER_NAME",
        "",
        "Name the clients expect in the servers' certificates, "
        "when it is not the host of the address",
    )
    triton_grpc_tls: bool = shared(
        "TRITON_GRPC_TLS", False, "TLS to Triton's gRPC port (same CA and client certificate)"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = shared(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "How Kafka clients connect"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = shared(
        "KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism (SASL_* protocols)"
    )
    kafka_sasl_username: str = shared("KAFKA_SASL_USERNAME", "", "SASL user name")
    kafka_sasl_password: SecretStr = shared("KAFKA_SASL_PASSWORD", SecretStr(""), "SASL password")
    kafka_ssl_ca_file: Path | None = shared(
        "KAFKA_SSL_CA_FILE", None, "PEM CA bundle of the brokers (SSL, SASL_SSL); unset: system's"
    )
    kafka_ssl_cert_file: Path | None = shared(
        "KAFKA_SSL_CERT_FILE", None, "PEM client certificate, when the brokers require one"
    )
    kafka_ssl_key_file: Path | None = shared(
        "KAFKA_SSL_KEY_FILE", None, "PEM private key of KAFKA_SSL_CERT_FILE"
    )


class ServiceSettings(SecureSettings):
    """Fields every service has. Subclasses set `env_prefix` and add their own."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = shared(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092", "Kafka brokers, host:port[,host:port]"
    )
    database_url: str = shared(
        "DATABASE_URL",
        "sqlite:///.interns/interns.db",
        "SQLAlchemy URL of the database (its password is masked in logs)",
    )
    log_level: str = shared("LOG_LEVEL", "INFO", "Log level")
    log_format: str = shared("LOG_FORMAT", "json", "'json' for machines or 'console' for people")
    ops_host: str = Field(
        "127.0.0.1", description="Address of the /healthz, /readyz, /metrics server"
    )
    ops_port: int = Field(0, description="Port of the /healthz, /readyz, /metrics server")


def secret_values(settings: BaseSettings) -> list[str]:
    """The secret strings in `settings`: every SecretStr, and the database URL's password."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
        elif name.endswith("database_url") and isinstance(value, str) and value:
            try:
                password = make_url(value).password
            except Exception:  # not a URL: nothing to mask
                password = None
            if password:
                found.append(str(password))
    return found


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def env_name_of(settings_cls: type[BaseSettings], key: str) -> str:
    """The environment variable behind `key`, a field or one of its names as a validation
    error locates it: of the field's variables, the one set in the environment (the user's
    spelling of a setting with several names), else its first."""
    environ = {name.upper() for name in os.environ}
    for field, info in settings_cls.model_fields.items():
        names = env_names(settings_cls, field, info)
        if key == field or key in names:
            return next((name for name in names if name.upper() in environ), names[0])
    return f"{settings_cls.model_config.get('env_prefix', '')}{key}".upper()


def variable_of(settings_cls: type[BaseSettings], loc: tuple) -> str:
    """The environment variable a validation error at `loc` is about: a nested setting's
    own variable (DEPLOYER_GATE__MIN_SAMPLES) unless the whole was given as JSON
    (DEPLOYER_GATE, then the field), and NAME_FILE when the value came from a file."""
    if not loc:
        return "?"
    environ = {name.upper() for name in os.environ}
    name = env_name_of(settings_cls, str(loc[0]))
    nested = [str(part) for part in loc[1:]]
    if nested:
        own = "__".join([name, *(part.upper() for part in nested)])
        if own in environ or own + "_FILE" in environ or name not in environ:
            name = own
        else:
            return f"{name} (field {'.'.join(nested)})"
    if name not in environ and name + "_FILE" in environ:
        return name + "_FILE"
    return name


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Builds `cls` from the environment; a missing or bad setting stops the process
    with a message that names the environment variable."""
    try:
        settings = cls()
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            lines.append(f"setting {variable_of(cls, problem['loc'])}: {problem['msg']}")
        sys.exit("invalid configuration:\n  " + "\n  ".join(lines))
    except OSError as error:  # a NAME_FILE that cannot be read
        sys.exit(f"invalid configuration: cannot read {error.filename}: {error.strerror}")
    settings_loaded(settings.model_dump(mode="json"), secret_values(settings))
    return settings
