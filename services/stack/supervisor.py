"""Starting, watching and stopping the local stack's processes.

`up` records every process it starts (pid and start time) in `<state>/stack.json`;
`down` stops exactly those, and never a process that merely reused a recorded pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from sqlalchemy.exc import SQLAlchemyError

from interns.common.api_keys import create_key, verify_key
from interns.common.db import make_engine, redact_url, upgrade_database
from interns.common.events import TOPIC_PARTITIONS
from interns.stack.components import Component, Probe, build_components, prepare_triton_backends
from interns.stack.probes import check
from interns.stack.settings import StackSettings

Report = Callable[[str], None]


class StackError(RuntimeError):
    """The stack cannot be brought up (or down); the message says what and where to look."""


@dataclass
class Running:
    """A process `up` started."""

    name: str
    pid: int
    create_time: float
    log: str
    address: str
    probe_kind: str
    probe_target: str

    @property
    def probe(self) -> Probe:
        return Probe(self.probe_kind, self.probe_target)

    def process(self) -> psutil.Process | None:
        """The process, if it still runs and is the one we started."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > 1.0:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.NoSuchProcess:
            return None


def state_file(settings: StackSettings) -> Path:
    return settings.state_dir / "stack.json"


def load_state(settings: StackSettings) -> list[Running]:
    path = state_file(settings)
    if not path.exists():
        return []
    return [Running(**entry) for entry in json.loads(path.read_text())]


def save_state(settings: StackSettings, running: list[Running]) -> None:
    path = state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in running], indent=2))


def find_busy_ports(components: list[Component], host: str) -> list[str]:
    """A message for every port of `components` that something else already listens on."""
    busy = []
    for component in components:
        for port in component.ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port.number))
                except OSError:
                    busy.append(
                        f"port {port.number} ({port.label}) on {host} is already in use;"
                        f" free it or choose another with {port.setting}"
                    )
    return busy


def database_unreachable(url: str, error: SQLAlchemyError) -> StackError:
    """A StackError naming the database (password hidden) and why it failed."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return StackError(f"database {redact_url(url)} is unreachable: {reason}")


def migrate_database(url: str) -> None:
    try:
        upgrade_database(url)
    except SQLAlchemyError as error:
        raise database_unreachable(url, error) from None


LOCAL_TENANT = "local"


def ensure_local_api_key(database_url: str, path: Path) -> bool:
    """Makes sure `path` holds a valid API key of tenant `local`, for the demo and for
    people trying the stack: the key already there is kept while it is valid, otherwise a
    new one is created. The file is readable by its owner only. True when a key was
    created."""
    engine = make_engine(database_url)
    try:
        if path.exists():
            found = verify_key(engine, path.read_text().strip())
            if found is not None and found.tenant_id == LOCAL_TENANT:
                path.chmod(0o600)
                return False
        created = create_key(engine, LOCAL_TENANT, "local development", "interns up")
    except SQLAlchemyError as error:
        raise database_unreachable(database_url, error) from None
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # Created with mode 0600 from the start: the key is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(created.key + "\n")
    return True


async def _create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(topic, num_partitions=partitions, replication_factor=1)
            for topic, partitions in TOPIC_PARTITIONS.items()
            if topic not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def create_topics(bootstrap: str) -> None:
    """Creates every project topic (with its partition count) that does not exist yet."""
    asyncio.run(_create_topics(bootstrap))


def start_process(component: Component, logs: Path) -> Running:
    log_path = logs / f"{component.name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            component.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **component.env},
            start_new_session=True,  # its own process group: `down` stops its children too
            preexec_fn=functools.partial(os.nice, component.nice) if component.nice else None,
        )
    return Running(
        component.name,
        process.pid,
        psutil.Process(process.pid).create_time(),
        str(log_path),
        component.address,
        component.probe.kind,
        component.probe.target,
    )


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join("    " + line for line in text)


def wait_healthy(running: Running, deadline: float) -> None:
    while True:
        if running.process() is None:
            raise StackError(
                f"{running.name} exited during start; its log {running.log} ends with:\n"
                + _log_tail(running.log)
            )
        healthy, detail = check(running.probe)
        if healthy:
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{running.name} was not healthy in time ({detail}); see {running.log}:\n"
                + _log_tail(running.log)
            )
        time.sleep(0.2)


def up(settings: StackSettings, report: Report) -> list[Running]:
    """Starts the whole stack and waits until every part is healthy. On any failure it
    stops what it started and raises StackError."""
    if any(r.process() for r in load_state(settings)):
        raise StackError("the stack is already running: see 'interns status', or 'interns down'")
    components = build_components(settings)
    busy = find_busy_ports(components, settings.host)
    if busy:
        raise StackError("\n".join(busy))
    state = settings.state_dir
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (state / "model-repository").mkdir(exist_ok=True)
    prepare_triton_backends(state)
    database_url = settings.resolved_database_url
    report(f"database: migrating {redact_url(database_url)}")
    migrate_database(database_url)
    created = ensure_local_api_key(database_url, settings.api_key_file)
    kept = "new" if created else "kept"
    report(f"API key of tenant {LOCAL_TENANT!r}: {kept}, in {settings.api_key_file}")

    running: list[Running] = []
    deadline = time.monotonic() + settings.start_timeout_s
    try:
        infrastructure = [c for c in components if c.infrastructure]
        services = [c for c in components if not c.infrastructure]
        for component in infrastructure:
            running.append(start_process(component, logs))
            save_state(settings, running)
        for item in running:
            wait_healthy(item, deadline)
            report(f"{item.name}: healthy at {item.address}")
            if item.name == "kafka":
                create_topics(item.address)
                report("kafka: topics ready")
        for component in services:
            running.append(start_process(component, logs))
            save_state(settings, running)
        for item in running[len(infrastructure) :]:
            wait_healthy(item, deadline)
            report(f"{item.name}: healthy at {item.address}")
    except BaseException:
        stop_all(running)
        save_state(settings, [])
        raise
    return running


def stop_all(running: list[Running], timeout: float = 20.0) -> list[tuple[str, str]]:
    """Stops the processes in reverse start order: SIGTERM to each process group, then
    SIGKILL to whatever still runs after `timeout` seconds."""
    outcomes = []
    for item in reversed(running):
        process = item.process()
        if process is None:
            outcomes.append((item.name, "not running"))
            continue
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            outcomes.append((item.name, "not running"))
            continue
        try:
            process.wait(timeout)
            outcomes.append((item.name, "stopped"))
        except psutil.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            outcomes.append((item.name, f"killed after {timeout:.0f}s"))
    return list(reversed(outcomes))


def down(settings: StackSettings) -> list[tuple[str, str]]:
    """Stops exactly what `up` started."""
    outcomes = stop_all(load_state(settings))
    save_state(settings, [])
    return outcomes


@dataclass
class PartStatus:
    name: str
    healthy: bool
    detail: str
    address: str
    pid: int | None
    log: str


def status(settings: StackSettings) -> list[PartStatus]:
    rows = []
    for item in load_state(settings):
        process = item.process()
        if process is None:
            rows.append(PartStatus(item.name, False, "not running", item.address, None, item.log))
            continue
        healthy, detail = check(item.probe)
        rows.append(PartStatus(item.name, healthy, detail, item.address, item.pid, item.log))
    return rows
