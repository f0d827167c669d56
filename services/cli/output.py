"""What every CLI command shares: the consoles, the error exit, the control API client,
and how times are shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from rich.console import Console

from interns.common.settings import load_settings
from interns.stack.settings import StackSettings

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Prints `message` as an error; raise the result to end the command with code 1."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


@contextmanager
def control_api() -> Iterator:
    """A ControlService stub at TRAINER_ADDR; a failed call ends the command with its
    message (which names the bad field)."""
    import grpc

    from interns.api.v1 import control_pb2_grpc
    from interns.common.settings import SecureSettings
    from interns.common.tls import sync_channel

    address = load_settings(StackSettings).resolved_trainer_addr
    try:
        with sync_channel(address, SecureSettings()) as channel:
            yield control_pb2_grpc.ControlServiceStub(channel)
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise fail(
                f"the control API at {address} is unreachable: start the stack with"
                " 'interns up', or set TRAINER_ADDR"
            ) from None
        raise fail(error.details()) from None


def when(seconds: int) -> str:
    """A Unix time as a UTC minute, '-' for none."""
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
