"""Pool templates: the hash, generated names, the worker made from a template, the model's
rules (selector, reserved annotation) and the status conditions."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from pydantic import ValidationError

from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.pool.kind import POOL
from controller.pool.model import TEMPLATE_HASH_ANNOTATION, LabWorkerPool, WorkerTemplate
from controller.pool.plan import WorkerView, plan
from controller.pool.status import (
    AVAILABLE,
    PROGRESSING,
    QUOTA_EXCEEDED,
    REPLICA_FAILURE,
    CreateFailure,
    next_status,
)
from controller.pool.template import (
    MAX_BASE_LENGTH,
    NAME_ALPHABET,
    is_current,
    new_worker,
    template_hash,
    worker_name,
)
from controller.resources import find_condition
from controller.resources.names import dns1123_label_error


def pool_doc(**spec: Any) -> dict[str, Any]:
    template = spec.pop(
        "template",
        {"metadata": {"labels": {"pool": "ccna"}}, "spec": {"labTrack": "ccna"}},
    )
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorkerPool",
        "metadata": {"name": "ccna-pool", "namespace": "emea", "uid": "pool-uid"},
        "spec": {"replicas": 2, "template": template, **spec},
    }


def template(**spec: Any) -> WorkerTemplate:
    return WorkerTemplate.model_validate(
        {"metadata": {"labels": {"pool": "ccna"}}, "spec": {"labTrack": "ccna", **spec}}
    )


# -- hash ------------------------------------------------------------------------------------


def test_hash_is_short_stable_and_follows_meaning_not_spelling() -> None:
    h = template_hash(template())
    assert re.fullmatch(r"[0-9a-f]{10}", h)
    assert template_hash(template()) == h
    # Defaults spelled out are the same template; key order does not matter either.
    spelled = template(desiredPhase="Ready", instance={"type": "m5zn.metal"}, host={})
    assert template_hash(spelled) == h
    assert template_hash(template(labTrack="ccnp")) != h
    assert template_hash(template(instance={"volumeSizeGb": 300})) != h
    relabelled = WorkerTemplate.model_validate(
        {"metadata": {"labels": {"pool": "ccna", "x": "y"}}, "spec": {"labTrack": "ccna"}}
    )
    assert template_hash(relabelled) != h


def test_hash_is_pinned_across_versions() -> None:
    """A changed hash function would roll every pool's workers on upgrade."""
    assert template_hash(template()) == "3f732d3f82"


# -- names -----------------------------------------------------------------------------------


def test_generated_names_are_pool_dash_five_characters() -> None:
    rng = random.Random(7)
    names = {worker_name("ccna-pool", rng.choice) for _ in range(200)}
    assert len(names) == 200
    for name in names:
        base, _, suffix = name.rpartition("-")
        assert base == "ccna-pool"
        assert len(suffix) == 5 and set(suffix) <= set(NAME_ALPHABET)


def test_a_long_pool_name_is_cut_to_keep_generated_names_dns_labels() -> None:
    long_name = "a" * 60 + "-" + "b" * 100
    name = worker_name(long_name)
    assert len(name) <= 63 and dns1123_label_error(name) is None
    cut_at_dash = "x" * (MAX_BASE_LENGTH - 1) + "-yyy"
    assert dns1123_label_error(worker_name(cut_at_dash)) is None


# -- the worker made from a template ---------------------------------------------------------


def test_new_worker_carries_labels_hash_and_a_controller_reference() -> None:
    pool = LabWorkerPool.model_validate(
        pool_doc(
            template={
                "metadata": {"labels": {"pool": "ccna"}, "annotations": {"team": "netacad"}},
                "spec": {"labTrack": "ccna", "instance": {"volumeSizeGb": 200}},
            }
        )
    )
    h = template_hash(pool.spec.template)
    worker = new_worker(pool, "ccna-pool-abcde", h)
    meta = worker.metadata
    assert (meta.name, meta.namespace) == ("ccna-pool-abcde", "emea")
    assert meta.labels == {"pool": "ccna"}
    assert meta.annotations == {"team": "netacad", TEMPLATE_HASH_ANNOTATION: h}
    ref = meta.controller_ref()
    assert ref is not None
    assert (ref.kind, ref.name, ref.uid, ref.block_owner_deletion) == (
        "LabWorkerPool",
        "ccna-pool",
        "pool-uid",
        True,
    )
    assert worker.spec == pool.spec.template.spec
    assert worker.spec is not pool.spec.template.spec
    assert is_current(worker, pool.spec.template, h)
    assert not is_current(worker, pool.spec.template, "0000000000")


def test_an_adopted_worker_without_a_hash_is_current_when_it_looks_made_from_the_template() -> None:
    t = template(instance={"volumeSizeGb": 200})
    h = template_hash(t)

    def orphan(**spec: Any) -> LabWorker:
        return LabWorker.model_validate(
            {
                "metadata": {"name": "w", "labels": {"pool": "ccna", "extra": "1"}},
                "spec": {"labTrack": "ccna", "instance": {"volumeSizeGb": 200}, **spec},
            }
        )

    assert is_current(orphan(), t, h)
    assert is_current(orphan(desiredPhase="Draining"), t, h)
    assert not is_current(orphan(labTrack="ccnp"), t, h)


# -- the model's rules -----------------------------------------------------------------------


def test_selector_defaults_to_the_template_labels() -> None:
    pool = LabWorkerPool.model_validate(pool_doc())
    assert str(pool.spec.label_selector()) == "pool=ccna"
    assert pool.spec.scale_down.value == "Graceful"
    assert pool.spec.max_unavailable == 1


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"selector": "pool=ccnp"}, "do not match"),
        ({"selector": "pool in (a,"}, "selector"),
        ({"template": {"spec": {"labTrack": "ccna"}}}, "non-empty selector"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"maxUnavailable": 0}, "greater than or equal to 1"),
        ({"scaleDown": "Sometimes"}, "Graceful"),
        (
            {
                "template": {
                    "metadata": {
                        "labels": {"pool": "ccna"},
                        "annotations": {TEMPLATE_HASH_ANNOTATION: "x"},
                    },
                    "spec": {"labTrack": "ccna"},
                }
            },
            "the pool writes it",
        ),
        (
            {
                "template": {
                    "metadata": {"labels": {"pool": "ccna"}},
                    "spec": {"labTrack": "ccna", "desiredPhase": "Stopped"},
                }
            },
            "desiredPhase must be Ready",
        ),
    ],
)
def test_an_inconsistent_pool_is_invalid(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        LabWorkerPool.model_validate(pool_doc(**spec))


def test_a_selector_with_set_operators_matching_the_template_is_valid() -> None:
    pool = LabWorkerPool.model_validate(pool_doc(selector="pool in (ccna,ccnp),!legacy"))
    assert pool.spec.label_selector().matches({"pool": "ccna"})


def test_kind_names_and_columns() -> None:
    assert {"labworkerpools", "labworkerpool", "lwp", "pool"} <= POOL.names()
    assert POOL.segment == "lab-worker-pools"
    pool = LabWorkerPool.model_validate(pool_doc())
    headers = [c.name for c in POOL.columns if not c.wide]
    assert headers == ["DESIRED", "CURRENT", "READY", "ACTIVE", "UP-TO-DATE"]
    assert [c.value(pool) for c in POOL.columns if not c.wide] == ["2", "0", "0", "0", "0"]


# -- status ----------------------------------------------------------------------------------


def view(name: str, phase: Phase, **kw: Any) -> WorkerView:
    return WorkerView(name=name, uid=name, phase=phase, **kw)


def test_status_counts_and_conditions_and_an_unchanged_pool_computes_an_equal_status() -> None:
    pool = LabWorkerPool.model_validate(pool_doc(replicas=3))
    p = plan(
        [view("a", Phase.READY), view("b", Phase.ACTIVE, hosted_labs=2), view("c", Phase.STARTING)],
        3,
    )
    status = next_status(
        pool.status,
        p,
        replicas=3,
        max_unavailable=1,
        generation=4,
        failure=None,
        now="2024-01-01T00:00:00.000Z",
    )
    assert (status.replicas, status.ready_replicas, status.active_replicas) == (3, 2, 1)
    assert status.observed_generation == 4
    available = find_condition(status.conditions, AVAILABLE)
    progressing = find_condition(status.conditions, PROGRESSING)
    assert available is not None and available.status == "True"
    assert progressing is not None and progressing.reason == "WaitingForWorkers"
    again = next_status(
        status,
        p,
        replicas=3,
        max_unavailable=1,
        generation=4,
        failure=None,
        now="2024-01-01T00:05:00.000Z",
    )
    assert again == status  # no write for a pool that did not change


def test_a_quota_refusal_shows_as_replica_failure_until_resolved() -> None:
    pool = LabWorkerPool.model_validate(pool_doc(replicas=2))
    p = plan([], 2)
    failing = next_status(
        pool.status,
        p,
        replicas=2,
        max_unavailable=1,
        generation=1,
        failure=CreateFailure(QUOTA_EXCEEDED, "exceeded quota emea-hosts"),
        now="2024-01-01T00:00:00.000Z",
    )
    failure = find_condition(failing.conditions, REPLICA_FAILURE)
    assert failure is not None and failure.reason == QUOTA_EXCEEDED
    available = find_condition(failing.conditions, AVAILABLE)
    assert available is not None and available.status == "False"
    resolved = next_status(
        failing,
        plan([view("a", Phase.READY), view("b", Phase.READY)], 2),
        replicas=2,
        max_unavailable=1,
        generation=1,
        failure=None,
        now="2024-01-01T00:01:00.000Z",
    )
    assert find_condition(resolved.conditions, REPLICA_FAILURE) is None
    progressing = find_condition(resolved.conditions, PROGRESSING)
    assert progressing is not None and (progressing.status, progressing.reason) == (
        "False",
        "Complete",
    )
