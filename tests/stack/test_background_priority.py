"""On one machine the background parts (collecting, mining, training) run at a lower
scheduling priority than the parts that serve calls, so a busy worker or a collector
catching up never slows a call down."""

from __future__ import annotations

import time

import psutil

from interns.stack.components import Component, build_components
from interns.stack.probes import Probe
from interns.stack.settings import StackSettings
from interns.stack.supervisor import start_process, stop_all

BACKGROUND = {"trace-collector", "miner", "trainer", "trainer-worker"}


def test_background_parts_are_niced_and_serving_parts_are_not(tmp_path):
    settings = StackSettings(state_dir=tmp_path / "state", deployer=True)
    niceness = {c.name: c.nice for c in build_components(settings)}
    assert {name for name, nice in niceness.items() if nice} == BACKGROUND
    assert {niceness[name] for name in BACKGROUND} == {10}
    for serving in ("kafka", "triton", "gateway", "router", "expert", "deployer"):
        assert niceness[serving] == 0, serving

    level = StackSettings(state_dir=tmp_path / "state", background_nice=0)
    assert not any(c.nice for c in build_components(level))


def test_a_started_process_runs_at_its_priority_and_its_children_too(tmp_path):
    component = Component(
        "sleeper",
        ["sh", "-c", "sleep 30 & sleep 30"],
        Probe("tcp", "127.0.0.1:1"),
        "-",
        nice=7,
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    running = start_process(component, logs)
    try:
        process = psutil.Process(running.pid)
        base = psutil.Process().nice()
        assert process.nice() == base + 7
        deadline = time.monotonic() + 5
        while not process.children() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {child.nice() for child in process.children()} == {base + 7}
    finally:
        stop_all([running])
