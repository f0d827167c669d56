"""`interns tasks` shows what the miner wrote, through the real control API."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from typer.testing import CliRunner

from interns.api.v1 import control_pb2_grpc
from interns.cli.main import app
from interns.miner.mining import MiningState, upsert_tasks
from interns.trainer.control import ControlPlane
from interns.trainer.grpc_service import ControlServicer
from tests.miner.test_mining import FLIGHTS, HOTELS, _text_answer, _tool_answer


@pytest.fixture
def control_api(engine):
    """The trainer's ControlService on a free port, on its own event loop thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def publish(change):
        pass

    async def start():
        server = grpc.aio.server()
        control_pb2_grpc.add_ControlServiceServicer_to_server(
            ControlServicer(ControlPlane(engine, publish), "test"), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def run(address: str, *args: str):
    env = {"TRAINER_ADDR": address, "COLUMNS": "250"}
    return CliRunner().invoke(app, ["tasks", *args], env=env)


def test_tasks_lists_the_mined_tasks_biggest_first(engine, control_api):
    state = MiningState()
    for _ in range(3):
        flights = state.add(FLIGHTS, _tool_answer("SearchFlight"))
    hotels = state.add(HOTELS, _text_answer("Which city?"))
    upsert_tasks(engine, state)

    result = run(control_api)

    assert result.exit_code == 0, result.output
    assert result.output.index(flights) < result.output.index(hotels)
    flights_row = next(line for line in result.output.splitlines() if flights in line)
    assert "75.0%" in flights_row and "tool_call" in flights_row
    assert "BookFlight, SearchFlight" in flights_row


def test_tasks_show_gives_one_task_and_names_an_unknown_one(engine, control_api):
    state = MiningState()
    hotels = state.add(HOTELS, _text_answer("Which city?"))
    upsert_tasks(engine, state)

    shown = run(control_api, "show", hotels)
    missing = run(control_api, "show", "task-nope")

    assert shown.exit_code == 0, shown.output
    assert hotels in shown.output and "text" in shown.output and "100.0%" in shown.output
    assert missing.exit_code == 1
    assert "task-nope" in missing.output


def test_tasks_with_none_mined_says_so(control_api):
    result = run(control_api)
    assert result.exit_code == 0
    assert "no tasks mined yet" in result.output
