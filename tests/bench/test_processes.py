"""Ports for the processes a benchmark or a test starts."""

from __future__ import annotations

import socket

from interns.bench.processes import free_ports, stack_ports
from interns.stack.settings import StackSettings


def test_free_ports_are_distinct_and_free():
    ports = free_ports(64)
    assert len(set(ports)) == 64
    for port in ports:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))


def test_every_stack_port_setting_gets_its_own_port():
    ports = stack_ports()
    assert set(ports) == {name for name in StackSettings.model_fields if name.endswith("_port")}
    assert len(set(ports.values())) == len(ports)
