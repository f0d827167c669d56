"""TLS on the gRPC servers and clients, with real certificates made in the test: a TLS
server refuses plaintext, mutual TLS admits only clients whose certificate the CA signed,
and the real serving path (client -> gateway -> router -> expert) works over mutual TLS."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interns.api.v1 import gateway_pb2_grpc, router_pb2_grpc
from interns.common import tls
from interns.common.grpc_server import GrpcServer
from interns.common.settings import SecureSettings
from interns.gateway.calls import Gateway
from interns.gateway.grpc_service import GatewayServicer
from interns.gateway.router_client import RemoteRouter
from interns.router.grpc_service import RouterServicer
from interns.router.routing import RoutingTable
from interns.router.serving import Router, RouterConfig
from tests.gateway.recording import RecordingPublisher
from tests.gateway.test_gateway_service import weather_request
from tests.servers import open_admission, replay_expert


@dataclass
class Identity:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key) -> Identity:
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(cert_path, key_path)


def make_ca(folder: Path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(folder, name, cert, key), cert, key


def issue(folder: Path, stem: str, ca_cert, ca_key, *, server: bool) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    # A service's certificate serves and also identifies it to the services it calls.
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usage.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(folder, stem, builder.sign(ca_key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: Identity
    server: Identity
    client: Identity
    stranger: Identity  # a client certificate another CA signed


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca(folder, "interns-ca")
    _, other_cert, other_key = make_ca(folder, "other-ca")
    return Pki(
        ca=ca,
        server=issue(folder, "server", ca_cert, ca_key, server=True),
        client=issue(folder, "client", ca_cert, ca_key, server=False),
        stranger=issue(folder, "stranger", other_cert, other_key, server=False),
    )


def server_settings(pki: Pki, client_auth: str = "none") -> SecureSettings:
    return SecureSettings(
        grpc_tls=True,
        grpc_tls_cert_file=pki.server.cert,
        grpc_tls_key_file=pki.server.key,
        grpc_tls_ca_file=pki.ca.cert,
        grpc_tls_client_auth=client_auth,
    )


def client_settings(pki: Pki, identity: Identity | None) -> SecureSettings:
    return SecureSettings(
        grpc_tls=True,
        grpc_tls_ca_file=pki.ca.cert,
        grpc_tls_cert_file=identity.cert if identity else None,
        grpc_tls_key_file=identity.key if identity else None,
    )


async def health_of(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return response.status


async def test_a_tls_server_refuses_a_plaintext_client(pki):
    credentials = tls.server_credentials(server_settings(pki))
    async with GrpcServer("test", "127.0.0.1:0", [], grace=0, credentials=credentials) as server:
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.insecure_channel(target) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_of(plaintext)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # The same server answers a client that speaks TLS and trusts the CA.
        async with tls.aio_channel(target, client_settings(pki, None)) as secure:
            assert await health_of(secure) == health_pb2.HealthCheckResponse.SERVING


async def test_a_client_that_does_not_trust_the_servers_ca_gives_up(pki):
    credentials = tls.server_credentials(server_settings(pki))
    async with GrpcServer("test", "127.0.0.1:0", [], grace=0, credentials=credentials) as server:
        # The stranger's certificate is its own CA: the server's chain does not lead to it.
        wrong_ca = SecureSettings(grpc_tls=True, grpc_tls_ca_file=pki.stranger.cert)
        async with tls.aio_channel(f"127.0.0.1:{server.port}", wrong_ca) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_of(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_admits_only_clients_the_ca_signed(pki):
    credentials = tls.server_credentials(server_settings(pki, client_auth="require"))
    async with GrpcServer("test", "127.0.0.1:0", [], grace=0, credentials=credentials) as server:
        target = f"127.0.0.1:{server.port}"
        for identity in (None, pki.stranger):
            async with tls.aio_channel(target, client_settings(pki, identity)) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await health_of(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with tls.aio_channel(target, client_settings(pki, pki.client)) as channel:
            assert await health_of(channel) == health_pb2.HealthCheckResponse.SERVING


def test_tls_without_its_files_stops_with_a_message_naming_the_setting(pki, tmp_path):
    with pytest.raises(tls.TlsConfigError, match="GRPC_TLS_CERT_FILE"):
        tls.server_credentials(SecureSettings(grpc_tls=True))
    with pytest.raises(tls.TlsConfigError, match="GRPC_TLS_CA_FILE"):
        tls.server_credentials(
            SecureSettings(
                grpc_tls=True,
                grpc_tls_cert_file=pki.server.cert,
                grpc_tls_key_file=pki.server.key,
                grpc_tls_client_auth="require",
            )
        )
    with pytest.raises(tls.TlsConfigError, match="GRPC_TLS_KEY_FILE"):
        tls.server_credentials(
            SecureSettings(
                grpc_tls=True,
                grpc_tls_cert_file=pki.server.cert,
                grpc_tls_key_file=tmp_path / "missing.key",
            )
        )


def test_tls_is_off_by_default():
    settings = SecureSettings()
    assert tls.server_credentials(settings) is None
    assert tls.channel_credentials(settings) is None
    assert tls.triton_client_options(settings) == {}


async def test_triton_clients_get_the_ca_and_client_certificate(pki):
    settings = SecureSettings(
        triton_grpc_tls=True,
        grpc_tls_ca_file=pki.ca.cert,
        grpc_tls_cert_file=pki.client.cert,
        grpc_tls_key_file=pki.client.key,
    )
    options = tls.triton_client_options(settings)
    assert options == {
        "ssl": True,
        "root_certificates": str(pki.ca.cert),
        "private_key": str(pki.client.key),
        "certificate_chain": str(pki.client.cert),
    }
    import tritonclient.grpc.aio as triton

    client = triton.InferenceServerClient("127.0.0.1:1", **options)  # reads the files
    await client.close()


async def test_the_serving_path_works_over_mutual_tls(pki, weather_log):
    """client -> gateway -> router, each hop mutual TLS, the router requiring client
    certificates: the expert's answer comes back through both."""
    server_tls = tls.server_credentials(server_settings(pki, client_auth="require"))
    # Each service shows the same certificate as server and as client, as a pod would.
    service_identity = SecureSettings(
        grpc_tls=True,
        grpc_tls_ca_file=pki.ca.cert,
        grpc_tls_cert_file=pki.server.cert,
        grpc_tls_key_file=pki.server.key,
    )
    async with replay_expert(weather_log) as expert:
        table = RoutingTable()
        router = Router(table, expert, RouterConfig("replay"))
        router_server = GrpcServer(
            "router", "127.0.0.1:0", ["interns.api.v1.RouterService"], 1, server_tls
        )
        router_pb2_grpc.add_RouterServiceServicer_to_server(
            RouterServicer(router, table), router_server.server
        )
        async with router_server:
            router_channel = tls.aio_channel(f"127.0.0.1:{router_server.port}", service_identity)
            publisher = RecordingPublisher()
            gateway = Gateway(
                RemoteRouter(router_pb2_grpc.RouterServiceStub(router_channel)),
                publisher,
                10.0,
                open_admission(),
            )
            gateway_server = GrpcServer(
                "gateway", "127.0.0.1:0", ["interns.api.v1.GatewayService"], 1, server_tls
            )
            gateway_pb2_grpc.add_GatewayServiceServicer_to_server(
                GatewayServicer(gateway), gateway_server.server
            )
            async with gateway_server:
                target = f"127.0.0.1:{gateway_server.port}"
                async with tls.aio_channel(target, client_settings(pki, pki.client)) as channel:
                    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
                    response = await stub.CreateChatCompletion(weather_request("Lima"), timeout=10)
                async with grpc.aio.insecure_channel(target) as plaintext:
                    with pytest.raises(grpc.aio.AioRpcError):
                        await gateway_pb2_grpc.GatewayServiceStub(plaintext).CreateChatCompletion(
                            weather_request("Lima"), timeout=5
                        )
            await router_channel.close()
    assert response.output.message.tool_calls[0].function.name == "GetWeather"
    assert response.route.target == "expert"
    assert len(publisher.traces) == 1
