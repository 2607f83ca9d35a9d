"""The committed JSON Schema and sample manifests must agree with the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.app import kind_registry
from controller.labworker.kind import LABWORKER
from controller.resources.schema import MANIFESTS, SCHEMA_BASE, main, render_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "manifests" / "labworker.schema.json"
SAMPLES = sorted((REPO_ROOT / "manifests" / "samples").glob("*.yaml"))


def load_sample(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path.name} must hold one mapping"
    return document


@pytest.mark.parametrize("kind", list(kind_registry()), ids=lambda kind: kind.kind)
def test_committed_schema_is_fresh(kind: Any) -> None:
    path = MANIFESTS / kind.schema_file
    assert path.read_text(encoding="utf-8") == render_schema(kind), (
        f"manifests/{kind.schema_file} is stale: run `python -m controller.resources.schema`"
    )


def test_default_directory_holds_the_committed_schema() -> None:
    assert MANIFESTS / LABWORKER.schema_file == SCHEMA_PATH  # type: ignore[operator]


def test_schema_is_deterministic_and_identified() -> None:
    rendered = render_schema(LABWORKER)
    assert rendered == render_schema(LABWORKER)
    assert rendered.endswith("}\n")
    schema = json.loads(rendered)
    assert schema["$id"] == SCHEMA_BASE + "labworker.schema.json"
    assert schema["title"] == "LabWorker"
    assert schema["$defs"]["InstanceSpec"]["properties"]["volumeSizeGb"]["minimum"] == 100


def test_check_flags_a_stale_file_and_passes_a_fresh_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "labworker.schema.json"
    assert main(["--check", str(tmp_path)]) == 1
    assert "is missing" in capsys.readouterr().err

    assert main([str(tmp_path)]) == 0
    assert target.read_text(encoding="utf-8") == render_schema(LABWORKER)
    assert main(["--check", str(tmp_path)]) == 0

    target.write_text(render_schema(LABWORKER).replace('"minimum": 100', '"minimum": 50'), "utf-8")
    assert main(["--check", str(tmp_path)]) == 1
    assert "is stale" in capsys.readouterr().err


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 3


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_sample_is_a_valid_object_without_status(path: Path) -> None:
    document = load_sample(path)
    assert "status" not in document, "samples declare intent; status belongs to the controller"
    kind = kind_registry().by_kind(document.get("kind", ""))
    assert kind is not None, f"{path.name}: unknown kind {document.get('kind')!r}"
    kind.model.from_dict(document)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_sample_is_valid_against_the_committed_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = load_sample(path)
    kind = kind_registry().by_kind(document["kind"])
    assert kind is not None and kind.schema_file
    schema = json.loads((MANIFESTS / kind.schema_file).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(document)


def test_samples_name_distinct_objects() -> None:
    identities = [
        (doc["kind"], doc["metadata"].get("namespace", "default"), doc["metadata"]["name"])
        for doc in map(load_sample, SAMPLES)
    ]
    assert len(set(identities)) == len(identities)
