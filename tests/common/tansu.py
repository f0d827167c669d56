"""A real Kafka-protocol broker (Tansu, memory storage): on a free port for the tests that
cross a Kafka hop (`tansu_broker`), or on a fixed port, killed, frozen and started again at
will, with the trace topic made (`Broker`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from interns.common.events import TraceRecorded
from interns.stack.components import tansu_binary
from tests.conftest import free_port

TRACE_PARTITIONS = 4


def broker_command(address: str) -> list[str]:
    """Tansu listening on `address` (`host:port`), its log in memory."""
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        f"tcp://{address}",
        "--advertised-listener-url",
        f"tcp://{address}",
        "--storage-engine",
        "memory://tansu/",
    ]


@contextlib.contextmanager
def tansu_broker(log_path: Path) -> Iterator[str]:
    """Starts Tansu, yields its `host:port` once it listens, stops it at the end."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            broker_command(address),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                assert process.poll() is None, f"Tansu exited at start: see {log_path}"
                assert time.monotonic() < deadline, "Tansu did not listen in time"
                time.sleep(0.05)
            yield address
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Broker:
    """A Tansu process (memory storage) on a fixed port, killed and started at will."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.command = broker_command(self.address)
        self.log = log_path.open("ab")
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=self.log, stderr=asyncio.subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            assert self.process.returncode is None, "the broker exited at start"
            assert time.monotonic() < deadline, "the broker did not listen in time"
            await asyncio.sleep(0.02)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(TraceRecorded.topic, TRACE_PARTITIONS, 1)])
        except TopicAlreadyExistsError:
            pass  # a producer's metadata request may have created it first
        finally:
            await admin.close()

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()

    def freeze(self, frozen: bool) -> None:
        self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.freeze(False)
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 10)
        self.log.close()
