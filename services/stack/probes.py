"""Health probes: is a part up and ready? Each returns (healthy, detail)."""

from __future__ import annotations

import socket

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interns.common.settings import SecureSettings
from interns.common.tls import sync_channel
from interns.stack.components import Probe


def probe_tcp(target: str, timeout: float = 1.0) -> tuple[bool, str]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True, "accepting connections"
    except OSError as error:
        return False, str(error)


def probe_http(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        return False, str(error) or type(error).__name__
    return response.status_code == 200, f"HTTP {response.status_code}"


def probe_grpc(target: str, timeout: float = 2.0, service: str = "") -> tuple[bool, str]:
    with sync_channel(target, SecureSettings()) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return False, f"{error.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def probe_redis(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout).ping()
    except redis.RedisError as error:
        return False, str(error)
    return True, "PONG"


def probe_celery(url: str, timeout: float = 1.0) -> tuple[bool, str]:
    from interns.trainer.celery_app import make_celery

    try:
        replies = make_celery(url).control.ping(timeout=timeout)
    except Exception as error:  # the broker itself is down
        return False, str(error)
    if not replies:
        return False, "no worker answered"
    return True, ", ".join(name for reply in replies for name in reply)


PROBES = {
    "tcp": probe_tcp,
    "http": probe_http,
    "grpc": probe_grpc,
    "redis": probe_redis,
    "celery": probe_celery,
}


def check(probe: Probe) -> tuple[bool, str]:
    return PROBES[probe.kind](probe.target)
