"""A real Kafka-protocol broker (Tansu, memory storage) on a free port, for the tests of
the common modules that cross a Kafka hop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from interns.stack.components import tansu_binary
from tests.conftest import free_port


@contextlib.contextmanager
def tansu_broker(log_path: Path) -> Iterator[str]:
    """Starts Tansu, yields its `host:port` once it listens, stops it at the end."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://{address}",
                "--advertised-listener-url",
                f"tcp://{address}",
                "--storage-engine",
                "memory://tansu/",
            ],
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
