"""LabQuota's resource names and limits: only the two forms, only whole numbers ≥ 0."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from controller.quota.keys import (
    HARD_KEY_PATTERN,
    INSTANCE_TYPE_MAX_LENGTH,
    LABWORKERS,
    hard_key_error,
    instance_type_of,
    keys_of_instance,
    type_key,
)
from controller.quota.kind import LABQUOTA
from controller.quota.model import LabQuota
from controller.resources import validation_errors


def quota(hard: Any) -> LabQuota:
    return LabQuota.model_validate(
        {"metadata": {"name": "team-a", "namespace": "team-a"}, "spec": {"hard": hard}}
    )


def errors(hard: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        quota(hard)
    return validation_errors(info.value)


@pytest.mark.parametrize(
    "key",
    [
        "labworkers",
        "labworkers/m5zn.metal",
        "labworkers/c7gd.16xlarge",
        "labworkers/u-6tb1.metal",
        "labworkers/Standard_D2s_v3",
        "labworkers/x",
        "labworkers/" + "a" * INSTANCE_TYPE_MAX_LENGTH,
    ],
)
def test_valid_keys(key: str) -> None:
    assert hard_key_error(key) is None
    assert re.fullmatch(HARD_KEY_PATTERN, key), "the schema pattern must agree with the check"
    assert quota({key: 1}).spec.hard == {key: 1}


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("labworker", "is not a quota resource: use 'labworkers' (all workers) or"),
        ("pods", "is not a quota resource"),
        ("lab-workers/m5zn.metal", "is not a quota resource"),
        ("labworkers/", "the instance type after 'labworkers/' is empty"),
        ("labworkers/a/b", "'a/b' is not an instance type"),
        ("labworkers/a b", "'a b' is not an instance type"),
        ("labworkers/-a", "starting and ending with a letter or digit"),
        ("labworkers/" + "a" * (INSTANCE_TYPE_MAX_LENGTH + 1), "characters long; at most 128"),
    ],
)
def test_invalid_keys_are_refused_with_the_two_forms_spelled_out(key: str, says: str) -> None:
    error = hard_key_error(key)
    assert error is not None and says in error
    assert not re.fullmatch(HARD_KEY_PATTERN, key)
    (line,) = errors({key: 1})
    assert line.startswith("spec.hard: ") and says in line


@pytest.mark.parametrize("value", [-1, "3", 3.5, True, None])
def test_limits_are_whole_numbers_not_below_zero(value: Any) -> None:
    (line,) = errors({"labworkers": value})
    assert line.startswith("spec.hard.labworkers: ")


def test_zero_is_a_limit_and_an_empty_map_limits_nothing() -> None:
    assert quota({"labworkers": 0}).spec.hard == {"labworkers": 0}
    assert quota({}).spec.hard == {}
    assert LabQuota.model_validate({"metadata": {"name": "q"}}).spec.hard == {}


def test_spec_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError) as info:
        LabQuota.model_validate({"metadata": {"name": "q"}, "spec": {"hrad": {}}})
    assert "spec.hrad: unknown field" in validation_errors(info.value)[0]


def test_stored_json_round_trips() -> None:
    q = quota({"labworkers": 3, "labworkers/m5zn.metal": 1})
    again = LabQuota.model_validate_json(q.to_storage_json())
    assert again.spec.hard == {"labworkers": 3, "labworkers/m5zn.metal": 1}
    assert q.to_dict()["spec"] == {"hard": {"labworkers": 3, "labworkers/m5zn.metal": 1}}


def test_a_worker_uses_one_of_the_total_and_one_of_its_type() -> None:
    assert keys_of_instance("m5zn.metal") == (LABWORKERS, "labworkers/m5zn.metal")
    assert type_key("c5.metal") == "labworkers/c5.metal"
    assert instance_type_of("labworkers/c5.metal") == "c5.metal"
    assert instance_type_of("labworkers") is None


def test_kind_names() -> None:
    assert LABQUOTA.names() == {
        "labquotas",
        "labquota",
        "quota",
        "labquotas.lab.neuroglia.io",
    }
    assert LABQUOTA.prefix("/root") == "/root/lab-quotas/"
