"""Transport security of every gRPC server and client and every Kafka client, built from
`SecureSettings` (GRPC_TLS*, TRITON_GRPC_TLS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*,
KAFKA_SSL_*). Everything is off by default: plaintext on loopback for the local stack.

gRPC: with GRPC_TLS=true servers serve GRPC_TLS_CERT_FILE/KEY_FILE and, with
GRPC_TLS_CLIENT_AUTH=require, accept only clients whose certificate GRPC_TLS_CA_FILE signed;
clients check the server against GRPC_TLS_CA_FILE and show their own certificate when
they have one (mutual TLS). Kafka: the settings become FastStream's security object, and
the same keyword arguments for the plain aiokafka clients.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from interns.common import tracing
from interns.common.settings import SecureSettings


class TlsConfigError(ValueError):
    """TLS is on but a file it needs is missing or unreadable; the message names it."""


def _read(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TlsConfigError(f"{setting}: cannot read {path}: {error.strerror}") from None


# --- gRPC -------------------------------------------------------------------------------


def server_credentials(settings: SecureSettings) -> grpc.ServerCredentials | None:
    """The credentials of a gRPC server, or None when GRPC_TLS is off (plaintext)."""
    if not settings.grpc_tls:
        return None
    if settings.grpc_tls_cert_file is None or settings.grpc_tls_key_file is None:
        raise TlsConfigError("GRPC_TLS=true needs GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE")
    require = settings.grpc_tls_client_auth == "require"
    if require and settings.grpc_tls_ca_file is None:
        raise TlsConfigError("GRPC_TLS_CLIENT_AUTH=require needs GRPC_TLS_CA_FILE")
    return grpc.ssl_server_credentials(
        [
            (
                _read(settings.grpc_tls_key_file, "GRPC_TLS_KEY_FILE"),
                _read(settings.grpc_tls_cert_file, "GRPC_TLS_CERT_FILE"),
            )
        ],
        root_certificates=_read(settings.grpc_tls_ca_file, "GRPC_TLS_CA_FILE"),
        require_client_auth=require,
    )


def channel_credentials(settings: SecureSettings) -> grpc.ChannelCredentials | None:
    """The credentials of a gRPC client, or None when GRPC_TLS is off (plaintext)."""
    if not settings.grpc_tls:
        return None
    return _channel_credentials(settings)


def _channel_credentials(settings: SecureSettings) -> grpc.ChannelCredentials:
    has_cert = settings.grpc_tls_cert_file is not None and settings.grpc_tls_key_file is not None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.grpc_tls_ca_file, "GRPC_TLS_CA_FILE"),
        private_key=_read(settings.grpc_tls_key_file, "GRPC_TLS_KEY_FILE") if has_cert else None,
        certificate_chain=(
            _read(settings.grpc_tls_cert_file, "GRPC_TLS_CERT_FILE") if has_cert else None
        ),
    )


def _channel_options(
    settings: SecureSettings, options: Sequence[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    options = list(options)
    if settings.grpc_tls and settings.grpc_tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.grpc_tls_server_name))
    return options


def aio_channel(
    target: str, settings: SecureSettings, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A `grpc.aio` channel to `target`: TLS (mutual when this process has a certificate)
    if GRPC_TLS is on, plaintext otherwise."""
    credentials = channel_credentials(settings)
    options = _channel_options(settings, options)
    interceptors = tracing.client_interceptors() or None
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def sync_channel(
    target: str, settings: SecureSettings, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """The blocking-API twin of `aio_channel` (the CLI, probes)."""
    credentials = channel_credentials(settings)
    options = _channel_options(settings, options)
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def triton_client_options(settings: SecureSettings) -> dict[str, Any]:
    """Keyword arguments of tritonclient's `InferenceServerClient` (gRPC, sync or aio):
    empty when TRITON_GRPC_TLS is off."""
    if not settings.triton_grpc_tls:
        return {}
    options: dict[str, Any] = {"ssl": True}
    if settings.grpc_tls_ca_file is not None:
        _read(settings.grpc_tls_ca_file, "GRPC_TLS_CA_FILE")
        options["root_certificates"] = str(settings.grpc_tls_ca_file)
    if settings.grpc_tls_cert_file is not None and settings.grpc_tls_key_file is not None:
        options["private_key"] = str(settings.grpc_tls_key_file)
        options["certificate_chain"] = str(settings.grpc_tls_cert_file)
    if settings.grpc_tls_server_name:
        options["channel_args"] = [("grpc.ssl_target_name_override", settings.grpc_tls_server_name)]
    return options


# --- Kafka ------------------------------------------------------------------------------


def kafka_ssl_context(settings: SecureSettings) -> ssl.SSLContext | None:
    """The TLS context of Kafka clients, or None for the PLAINTEXT protocols."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    for path, name in (
        (settings.kafka_ssl_ca_file, "KAFKA_SSL_CA_FILE"),
        (settings.kafka_ssl_cert_file, "KAFKA_SSL_CERT_FILE"),
        (settings.kafka_ssl_key_file, "KAFKA_SSL_KEY_FILE"),
    ):
        _read(path, name)
    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    )
    if settings.kafka_ssl_cert_file is not None:
        context.load_cert_chain(
            str(settings.kafka_ssl_cert_file),
            str(settings.kafka_ssl_key_file) if settings.kafka_ssl_key_file else None,
        )
    return context


def kafka_security(settings: SecureSettings):
    """FastStream's security object for `KafkaBroker(security=...)`, None for PLAINTEXT.
    The one place Kafka's security settings are read; `kafka_client_options` derives the
    plain aiokafka arguments from it."""
    from faststream.security import (
        BaseSecurity,
        SASLPlaintext,
        SASLScram256,
        SASLScram512,
    )

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings)
    use_ssl = context is not None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    sasl = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.kafka_sasl_mechanism]
    return sasl(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=use_ssl,
    )


def kafka_client_options(settings: SecureSettings) -> dict[str, Any]:
    """Keyword arguments for `AIOKafkaProducer`, `AIOKafkaConsumer`, `AIOKafkaAdminClient`:
    the same security as `kafka_security` gives the FastStream brokers."""
    from faststream.kafka.security import parse_security

    return parse_security(kafka_security(settings))


def kafka_producer_config(settings: SecureSettings) -> dict[str, str]:
    """librdkafka's settings (confluent-kafka, the gateway's trace sender) for the same
    security as `kafka_security`; empty for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": protocol.lower()}
    if protocol.endswith("SSL"):
        # The wheel's OpenSSL is its own: "probe" finds the system's roots.
        config["ssl.ca.location"] = "probe"
        for path, name, key in (
            (settings.kafka_ssl_ca_file, "KAFKA_SSL_CA_FILE", "ssl.ca.location"),
            (settings.kafka_ssl_cert_file, "KAFKA_SSL_CERT_FILE", "ssl.certificate.location"),
            (settings.kafka_ssl_key_file, "KAFKA_SSL_KEY_FILE", "ssl.key.location"),
        ):
            if path is not None:
                _read(path, name)
                config[key] = str(path)
    if protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return config


def kafka_broker(settings, client_id: str, **options):
    """The FastStream `KafkaBroker` of a service: its bootstrap servers, security and, when
    tracing is on, trace context carried in each record's headers."""
    from faststream.kafka import KafkaBroker

    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        security=kafka_security(settings),
        middlewares=tracing.kafka_middlewares(),
        **options,
    )
