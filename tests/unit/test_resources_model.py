"""LabWorker model: wire format, defaults, validation messages, conditions."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from controller.labworker.model import FINALIZER, LabWorker
from controller.labworker.phase import DesiredPhase, Phase
from controller.resources import (
    Condition,
    ObjectMeta,
    condition_is_true,
    find_condition,
    format_timestamp,
    now_rfc3339,
    parse_timestamp,
    set_condition,
    validation_errors,
)

T0 = "2024-05-01T12:00:00.000Z"
T1 = "2024-05-01T12:05:00.000Z"
T2 = "2024-05-01T12:10:00.000Z"


def stored_worker() -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {
            "name": "ccna-worker-01",
            "namespace": "emea",
            "uid": "3f1c2a9e-8d4b-4f7a-9c21-5b6e0d7f8a10",
            "labels": {"tier": "standard", "example.com/region": "eu-west-1"},
            "annotations": {"lab.neuroglia.io/owner": "ops@example.com"},
            "generation": 3,
            "creationTimestamp": T0,
            "finalizers": [FINALIZER],
        },
        "spec": {
            "labTrack": "ccna",
            "desiredPhase": "Draining",
            "instance": {
                "type": "m5zn.metal",
                "image": "ami-123",
                "volumeSizeGb": 200,
                "tags": {"team": "labs"},
            },
            "host": {"autoLicense": True, "licenseSecretRef": "cml", "maxConcurrentLabs": 8},
        },
        "status": {
            "phase": "Active",
            "observedGeneration": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "HostHealthy",
                    "message": "host answered",
                    "lastTransitionTime": T1,
                    "observedGeneration": 3,
                }
            ],
            "instanceId": "i-0abc",
            "address": "10.0.3.17",
            "hostVersion": "2.7.0",
            "licensed": True,
            "hostedLabs": 4,
            "lastHealthCheck": T2,
            "provisioningStartedAt": T0,
            "provisioningCompletedAt": T1,
            "errorCount": 0,
        },
    }


def minimal_manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {"name": "w1"},
        "spec": {"labTrack": "ccna", **spec},
    }


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        LabWorker.from_dict(document)
    return validation_errors(caught.value)


# --- wire format ---------------------------------------------------------------------------


def test_camel_case_round_trip_is_lossless() -> None:
    document = stored_worker()
    worker = LabWorker.from_dict(document)

    assert worker.spec.instance.volume_size_gb == 200
    assert worker.spec.desired_phase is DesiredPhase.DRAINING
    assert worker.status.phase is Phase.ACTIVE
    assert worker.to_storage_dict() == document
    assert LabWorker.from_dict(worker.to_dict()) == worker


def test_from_json_equals_from_dict() -> None:
    document = stored_worker()
    assert LabWorker.from_json(json.dumps(document)) == LabWorker.from_dict(document)


def test_python_field_names_are_accepted_too() -> None:
    meta = ObjectMeta(name="w1", creation_timestamp=T0)
    assert meta.model_dump(exclude_none=True)["creationTimestamp"] == T0


def test_resource_version_is_shown_but_never_stored() -> None:
    document = stored_worker()
    document["metadata"]["resourceVersion"] = 42
    worker = LabWorker.from_dict(document)

    assert worker.metadata.resource_version == 42
    # A string on the wire, as in Kubernetes; the int of older manifests is still read.
    assert worker.to_dict()["metadata"]["resourceVersion"] == "42"
    document["metadata"]["resourceVersion"] = "42"
    assert LabWorker.from_dict(document) == worker
    assert "resourceVersion" not in worker.to_storage_dict()["metadata"]
    stored = json.loads(worker.to_storage_json())
    assert "resourceVersion" not in stored["metadata"]
    assert stored == worker.to_storage_dict()


def test_storage_dict_leaves_out_unset_optionals() -> None:
    stored = LabWorker.from_dict(minimal_manifest()).to_storage_dict()
    assert "image" not in stored["spec"]["instance"]
    assert "phase" not in stored["status"]
    assert "uid" not in stored["metadata"]


def test_defaults() -> None:
    worker = LabWorker.from_dict({"metadata": {"name": "w1"}, "spec": {"labTrack": "devnet"}})

    assert worker.api_version == "lab.neuroglia.io/v1"
    assert worker.kind == "LabWorker"
    assert worker.metadata.namespace == "default"
    assert worker.metadata.namespaced_name == "default/w1"
    assert worker.metadata.generation == 0
    assert worker.spec.desired_phase is DesiredPhase.READY
    assert worker.spec.instance.type == "m5zn.metal"
    assert worker.spec.instance.volume_size_gb == 100
    assert worker.spec.instance.tags == {}
    assert worker.spec.host.auto_license is False
    assert worker.spec.host.license_secret_ref is None
    assert worker.spec.host.max_concurrent_labs == 20
    assert worker.status.phase is None
    assert worker.status.conditions == []
    assert worker.status.error_count == 0


def test_defaults_are_not_shared_between_objects() -> None:
    first = LabWorker.from_dict(minimal_manifest())
    second = LabWorker.from_dict(minimal_manifest())
    first.metadata.labels["tier"] = "premium"
    first.spec.instance.tags["team"] = "labs"
    assert second.metadata.labels == {}
    assert second.spec.instance.tags == {}


# --- validation ----------------------------------------------------------------------------


def test_volume_below_minimum_is_rejected_with_its_camel_case_path() -> None:
    assert errors_of(minimal_manifest(instance={"volumeSizeGb": 99})) == [
        "spec.instance.volumeSizeGb: Input should be greater than or equal to 100"
    ]


def test_volume_at_minimum_is_accepted() -> None:
    worker = LabWorker.from_dict(minimal_manifest(instance={"volumeSizeGb": 100}))
    assert worker.spec.instance.volume_size_gb == 100


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"labTrack": ""}, "spec.labTrack: String should have at least 1 character"),
        ({"labTrack": "   "}, "spec.labTrack: String should have at least 1 character"),
        ({"host": {"maxConcurrentLabs": 0}}, "spec.host.maxConcurrentLabs: Input should be"),
        ({"desiredPhase": "Active"}, "spec.desiredPhase: Input should be 'Ready', 'Draining'"),
    ],
)
def test_invalid_spec_values_are_rejected(spec: dict[str, Any], expected: str) -> None:
    (error,) = errors_of(minimal_manifest(**spec))
    assert error.startswith(expected)


def test_missing_lab_track_is_reported() -> None:
    document = minimal_manifest()
    del document["spec"]["labTrack"]
    assert errors_of(document) == ["spec.labTrack: Field required"]


@pytest.mark.parametrize(
    ("location", "field"),
    [
        (("spec",), "labTrak"),
        (("spec", "instance"), "volumeSize"),
        (("spec", "host"), "license"),
        (("metadata",), "label"),
        ((), "specs"),
    ],
)
def test_unknown_fields_outside_status_are_rejected(location: tuple[str, ...], field: str) -> None:
    document = minimal_manifest(instance={}, host={})
    target = document
    for part in location:
        target = target[part]
    target[field] = "x"
    path = ".".join((*location, field))
    assert f"{path}: unknown field (not part of the LabWorker schema)" in errors_of(document)


def test_unknown_status_fields_are_ignored() -> None:
    document = stored_worker()
    document["status"]["addedByNewerController"] = {"x": 1}
    document["status"]["conditions"][0]["severity"] = "Info"
    worker = LabWorker.from_dict(document)
    assert worker.status.phase is Phase.ACTIVE
    assert "addedByNewerController" not in worker.to_storage_dict()["status"]


def test_invalid_status_values_are_still_rejected() -> None:
    document = stored_worker()
    document["status"]["phase"] = "Sleeping"
    document["status"]["conditions"][0]["status"] = "Maybe"
    errors = errors_of(document)
    assert any(error.startswith("status.phase: Input should be 'Pending'") for error in errors)
    assert any(error.startswith("status.conditions[0].status:") for error in errors)


def test_wrong_kind_and_api_version_are_rejected() -> None:
    document = minimal_manifest()
    document["kind"] = "Pod"
    document["apiVersion"] = "v1"
    assert sorted(errors_of(document)) == [
        "apiVersion: Input should be 'lab.neuroglia.io/v1'",
        "kind: Input should be 'LabWorker'",
    ]


@pytest.mark.parametrize(
    "name",
    ["Worker-1", "worker_1", "-worker", "worker-", "", "a/b", "w" * 254, "wörker"],
)
def test_bad_names_are_rejected(name: str) -> None:
    document = minimal_manifest()
    document["metadata"]["name"] = name
    (error,) = errors_of(document)
    assert error.startswith("metadata.name: ")
    assert "DNS-1123 subdomain" in error


@pytest.mark.parametrize("name", ["w", "ccna-worker-01", "worker.emea.1", "w" * 253])
def test_good_names_are_accepted(name: str) -> None:
    document = minimal_manifest()
    document["metadata"]["name"] = name
    assert LabWorker.from_dict(document).metadata.name == name


@pytest.mark.parametrize("namespace", ["EMEA", "emea.west", "n" * 64, "-emea", ""])
def test_bad_namespaces_are_rejected(namespace: str) -> None:
    document = minimal_manifest()
    document["metadata"]["namespace"] = namespace
    (error,) = errors_of(document)
    assert error.startswith("metadata.namespace: ")
    assert "DNS-1123 label" in error


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"bad key": "x"}, "label key 'bad key'"),
        ({"Example.com/tier": "x"}, "invalid prefix"),
        ({"/tier": "x"}, "empty prefix"),
        ({"tier": "not ok"}, "label value 'not ok'"),
        ({"tier": "v" * 64}, "at most 63"),
    ],
)
def test_bad_labels_are_rejected(labels: dict[str, str], fragment: str) -> None:
    document = minimal_manifest()
    document["metadata"]["labels"] = labels
    (error,) = errors_of(document)
    assert error.startswith("metadata.labels: ")
    assert fragment in error


def test_empty_label_value_is_allowed() -> None:
    document = minimal_manifest()
    document["metadata"]["labels"] = {"example.com/canary": ""}
    assert LabWorker.from_dict(document).metadata.labels == {"example.com/canary": ""}


@pytest.mark.parametrize(
    "timestamp",
    ["2024-05-01 12:00:00Z", "2024-05-01T12:00:00+00:00", "2024-02-30T12:00:00Z", "yesterday"],
)
def test_bad_timestamps_are_rejected(timestamp: str) -> None:
    document = minimal_manifest()
    document["metadata"]["deletionTimestamp"] = timestamp
    (error,) = errors_of(document)
    assert error.startswith("metadata.deletionTimestamp: ")
    assert "RFC 3339" in error


def test_error_paths_quote_keys_that_are_not_identifiers() -> None:
    document = minimal_manifest(instance={"tags": {"example.com/team": 5}})
    assert errors_of(document) == [
        "spec.instance.tags['example.com/team']: Input should be a valid string"
    ]


def test_validation_does_not_mutate_its_input() -> None:
    document = stored_worker()
    snapshot = copy.deepcopy(document)
    LabWorker.from_dict(document).metadata.labels["new"] = "label"
    assert document == snapshot


# --- timestamps ----------------------------------------------------------------------------


def test_timestamps_are_fixed_width_utc_and_parse_back() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    text = format_timestamp(moment)
    assert text == "2024-05-01T12:00:00.123Z"
    assert parse_timestamp(text) == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert format_timestamp(datetime(2024, 5, 1, 12)) == "2024-05-01T12:00:00.000Z"


def test_now_is_a_valid_timestamp() -> None:
    assert parse_timestamp(now_rfc3339()).tzinfo is not None


def test_parse_timestamp_rejects_offsets() -> None:
    with pytest.raises(ValueError, match="RFC 3339 UTC"):
        parse_timestamp("2024-05-01T12:00:00+02:00")


# --- conditions ----------------------------------------------------------------------------


def test_new_condition_is_appended_with_now_as_transition_time() -> None:
    existing = set_condition([], "Licensed", "True", "Applied", "", 1, T0)
    updated = set_condition(existing, "Ready", "False", "Booting", "waiting", 2, T1)
    assert [condition.type for condition in updated] == ["Licensed", "Ready"]
    assert updated[1] == Condition(
        type="Ready",
        status="False",
        reason="Booting",
        message="waiting",
        last_transition_time=T1,
        observed_generation=2,
    )


def test_same_status_keeps_transition_time_but_updates_details() -> None:
    before = set_condition([], "Ready", "False", "Booting", "waiting for host", 1, T0)
    after = set_condition(before, "Ready", "False", "Licensing", "applying license", 2, T1)
    (condition,) = after
    assert condition.last_transition_time == T0
    assert (condition.reason, condition.message, condition.observed_generation) == (
        "Licensing",
        "applying license",
        2,
    )


def test_status_flip_moves_transition_time() -> None:
    before = set_condition([], "Ready", "False", "Booting", "", 1, T0)
    after = set_condition(before, "Ready", "True", "HostHealthy", "", 1, T1)
    assert after[0].last_transition_time == T1
    assert after[0].status == "True"


def test_set_condition_returns_a_new_list_and_keeps_order() -> None:
    original = set_condition([], "A", "True", "R", "", 1, T0)
    original = set_condition(original, "B", "True", "R", "", 1, T0)
    snapshot = list(original)
    updated = set_condition(original, "A", "False", "R2", "", 1, T1)
    assert original == snapshot
    assert updated is not original
    assert [condition.type for condition in updated] == ["A", "B"]
    assert updated[1] is original[1]


def test_conditions_cannot_be_mutated_in_place() -> None:
    (condition,) = set_condition([], "Ready", "True", "R", "", 1, T0)
    with pytest.raises(ValidationError):
        condition.status = "False"  # type: ignore[misc]


def test_find_condition_and_condition_is_true() -> None:
    conditions = set_condition([], "Ready", "True", "R", "", 1, T0)
    conditions = set_condition(conditions, "Licensed", "Unknown", "R", "", 1, T0)
    found = find_condition(conditions, "Licensed")
    assert found is not None and found.status == "Unknown"
    assert find_condition(conditions, "Missing") is None
    assert condition_is_true(conditions, "Ready")
    assert not condition_is_true(conditions, "Licensed")
    assert not condition_is_true(conditions, "Missing")


def test_conditions_round_trip_through_status() -> None:
    worker = LabWorker.from_dict(minimal_manifest())
    worker.status.conditions = set_condition([], "Ready", "True", "HostHealthy", "", 1, T0)
    stored = worker.to_storage_dict()
    assert stored["status"]["conditions"] == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "HostHealthy",
            "message": "",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        }
    ]
    assert LabWorker.from_dict(stored) == worker


@pytest.mark.parametrize("ref", ["../etc/passwd", "a/b", ".", "..", "-lead", "x" * 254, "tr ail"])
def test_a_license_secret_ref_is_a_plain_name_refused_at_apply_time(ref: str) -> None:
    doc = {"metadata": {"name": "w"}, "spec": {"labTrack": "t", "host": {"licenseSecretRef": ref}}}
    with pytest.raises(ValidationError):
        LabWorker.model_validate(doc)
