"""Export into the Triton repository: layout, whole folders, version numbers never reused."""

from __future__ import annotations

import pytest

from interns.common.intern_contract import config_pbtxt
from interns.trainer.export import export_version, model_name, next_version


@pytest.fixture
def trained(tmp_path):
    model = tmp_path / "work" / "model"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"x" * 1000)
    (model / "config.json").write_text("{}")
    return model


def test_a_version_folder_holds_the_adapter_and_the_model(tmp_path, trained):
    repository = tmp_path / "repo"
    exported = export_version(trained, repository, "intern-t1", 1)
    folder = repository / "intern-t1"
    assert (folder / "config.pbtxt").read_text() == config_pbtxt("intern-t1")
    assert "dynamic_batching" in (folder / "config.pbtxt").read_text()
    assert "class TritonPythonModel" in (folder / "1" / "model.py").read_text()
    assert (folder / "1" / "model" / "weights.bin").stat().st_size == 1000
    assert exported.size_bytes == 1002
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt"]


def test_versions_grow_past_folders_and_registered_numbers(tmp_path, trained):
    repository = tmp_path / "repo"
    assert next_version(repository, "intern-t1") == 1
    export_version(trained, repository, "intern-t1", 1)
    export_version(trained, repository, "intern-t1", 2)
    assert next_version(repository, "intern-t1") == 3
    # Version 5 was registered (rejected: never exported); 3 and 4 were reserved.
    assert next_version(repository, "intern-t1", [5, 3, 4]) == 6


def test_exporting_again_keeps_a_complete_version_and_refuses_a_foreign_folder(tmp_path, trained):
    repository = tmp_path / "repo"
    first = export_version(trained, repository, "intern-t1", 1)
    assert export_version(trained, repository, "intern-t1", 1) == first
    (repository / "intern-t1" / "2").mkdir()
    with pytest.raises(FileExistsError, match="not reused"):
        export_version(trained, repository, "intern-t1", 2)


def test_model_names_are_valid_triton_names():
    assert model_name("task-3f2a") == "intern-task-3f2a"
    assert model_name("a/b c") == "intern-a-b-c"
    with pytest.raises(ValueError):
        model_name("///")
