"""docker-compose.yml: every container's root filesystem is read-only, so whatever a service
writes must be on a volume; and the model repository is writable by the training workers
only (Triton and the trainer read it)."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WRITERS = {"trainer-worker", "trainer-worker-cpu", "model-repository-init"}


def mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every volume of a service."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found.append((source, target, mode == ["ro"]))
        else:
            found.append((volume.get("source"), volume["target"], bool(volume.get("read_only"))))
    return found


def test_only_the_training_workers_write_the_model_repository():
    users = {name for name, s in SERVICES.items() for m in mounts(s) if m[0] == "model-repository"}
    assert {"triton", "trainer", "trainer-worker"} <= users
    for name in users - WRITERS:
        writable = [m for m in mounts(SERVICES[name]) if m[0] == "model-repository" and not m[2]]
        assert not writable, f"{name} mounts the model repository writable"


def test_the_workers_write_their_job_folders_and_models_on_volumes():
    for name in ("trainer-worker", "trainer-worker-cpu"):
        service = SERVICES[name]
        assert service["read_only"] is True
        environment = service["environment"]
        writable = {target for _, target, read_only in mounts(service) if not read_only}
        for setting in ("TRAINER_WORKDIR", "TRAINER_MODEL_REPOSITORY"):
            assert environment[setting] in writable, f"{name}: {setting} is not on a volume"
