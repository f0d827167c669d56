"""Secrets come from the environment or from files, print as stars, reach the Kafka
clients that need them, and never reach the log, even at DEBUG."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from pydantic import SecretStr

from interns.common.settings import SecureSettings, load_settings
from interns.common.tls import (
    TlsConfigError,
    kafka_broker,
    kafka_client_options,
    kafka_producer_config,
)
from interns.router.settings import RouterSettings
from tests.common.tansu import tansu_broker
from tests.common.test_tls import make_ca
from tests.conftest import free_port

EXPERT_KEY = "sk-expert-0f9a7c1e5b"
KAFKA_PASSWORD = "kafka-pw-77d1c3"
DB_PASSWORD = "pg-pw-4e2b9a"


def test_a_secret_is_read_from_its_file_and_prints_as_stars(tmp_path, monkeypatch):
    key_file = tmp_path / "expert-key"
    key_file.write_text(EXPERT_KEY + "\n")
    monkeypatch.setenv("EXPERT_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", KAFKA_PASSWORD)
    settings = load_settings(RouterSettings)
    assert settings.expert_api_key.get_secret_value() == EXPERT_KEY
    assert settings.kafka_sasl_password.get_secret_value() == KAFKA_PASSWORD
    shown = repr(settings) + str(settings.model_dump()) + settings.model_dump_json()
    assert EXPERT_KEY not in shown and KAFKA_PASSWORD not in shown


def test_the_variable_wins_over_its_file(tmp_path, monkeypatch):
    key_file = tmp_path / "expert-key"
    key_file.write_text("from-the-file")
    monkeypatch.setenv("EXPERT_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("EXPERT_API_KEY", "from-the-variable")
    assert load_settings(RouterSettings).expert_api_key.get_secret_value() == "from-the-variable"


def test_an_unreadable_secret_file_stops_the_service_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPERT_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit) as stopped:
        load_settings(RouterSettings)
    assert "missing" in str(stopped.value)


async def test_sasl_over_tls_settings_reach_the_kafka_clients(tmp_path):
    ca, _, _ = make_ca(tmp_path, "kafka-ca")
    settings = SecureSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="interns",
        kafka_sasl_password=SecretStr(KAFKA_PASSWORD),
        kafka_ssl_ca_file=ca.cert,
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "interns",
        KAFKA_PASSWORD,
    )
    # The CA is loaded into the context the clients verify the brokers with.
    subjects = [
        dict(item[0] for item in cert["subject"]) for cert in options["ssl_context"].get_ca_certs()
    ]
    assert {"commonName": "kafka-ca"} in subjects
    # aiokafka takes them as they are (it refuses inconsistent ones at construction) ...
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **options)
    assert producer.client._security_protocol == "SASL_SSL"
    assert producer.client._sasl_mechanism == "SCRAM-SHA-256"

    # ... and so do the services' FastStream brokers, built by the same function.
    class Service(SecureSettings):
        kafka_bootstrap_servers: str = "127.0.0.1:1"

    broker = kafka_broker(Service(**settings.model_dump()), "interns-test")
    consumer_options = broker.config.builder.keywords
    assert consumer_options["security_protocol"] == "SASL_SSL"
    assert consumer_options["sasl_plain_password"] == KAFKA_PASSWORD

    # ... and the gateway's trace sender (librdkafka), which checks them when it is built.
    config = kafka_producer_config(settings)
    assert config == {
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(ca.cert),
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "interns",
        "sasl.password": KAFKA_PASSWORD,
    }
    Producer({"bootstrap.servers": "127.0.0.1:1", **config})


def test_a_missing_kafka_certificate_is_named(tmp_path):
    settings = SecureSettings(
        kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "missing-ca.pem"
    )
    with pytest.raises(TlsConfigError, match="KAFKA_SSL_CA_FILE"):
        kafka_producer_config(settings)


def test_plaintext_kafka_by_default():
    assert kafka_client_options(SecureSettings()) == {}
    assert kafka_producer_config(SecureSettings()) == {}


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_service_at_debug_never_logs_its_secrets(tmp_path):
    """The router, started as its own process at DEBUG with every kind of secret set,
    logs its configuration (so the secrets had every chance to leak), serves, stops,
    and no secret is in what it wrote."""
    password_file = tmp_path / "kafka-password"
    password_file.write_text(KAFKA_PASSWORD)
    with tansu_broker(tmp_path / "tansu.log") as bootstrap:
        env = {
            **os.environ,
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "json",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SASL_USERNAME": "interns",
            "KAFKA_SASL_PASSWORD_FILE": str(password_file),
            "EXPERT_API_KEY": EXPERT_KEY,
            "EXPERT_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "DATABASE_URL": f"postgresql+psycopg://interns:{DB_PASSWORD}@127.0.0.1:1/interns",
            "ROUTER_PORT": str(free_port()),
            "ROUTER_OPS_PORT": str(free_port()),
        }
        with (tmp_path / "router.log").open("wb") as log:
            router = subprocess.Popen(
                [sys.executable, "-m", "interns.router"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 60
                while b"router serving" not in (tmp_path / "router.log").read_bytes():
                    assert router.poll() is None, (tmp_path / "router.log").read_text()
                    assert time.monotonic() < deadline, "the router did not start in time"
                    time.sleep(0.2)
            finally:
                router.send_signal(signal.SIGTERM)
                router.wait(30)
    written = (tmp_path / "router.log").read_text()
    for secret in (EXPERT_KEY, KAFKA_PASSWORD, DB_PASSWORD):
        assert secret not in written
    configuration = next(
        json.loads(line)
        for line in written.splitlines()
        if line.startswith("{") and json.loads(line).get("event") == "configuration"
    )
    assert configuration["level"] == "debug"
    logged = configuration["settings"]
    assert logged["database_url"] == "postgresql+psycopg://interns:***@127.0.0.1:1/interns"
    assert logged["expert_api_key"] == logged["kafka_sasl_password"] == "**********"
