"""From a pool's template to a worker: its hash, a generated name, the LabWorker itself.

The hash is what tells an updated worker from an outdated one, so it must change exactly when
the template's meaning changes: it is taken over the template with default values left out
(`instance: {type: m5zn.metal}` and no `instance` at all are the same template), serialized
canonically (sorted keys, no whitespace), so it does not move with key order, with a field
spelled out at its default, or across processes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from controller.labworker.model import LabWorker
from controller.labworker.phase import DesiredPhase
from controller.pool.kind import POOL
from controller.pool.model import TEMPLATE_HASH_ANNOTATION, LabWorkerPool, WorkerTemplate
from controller.resources import ObjectMeta, OwnerReference

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""Kubernetes' generateName alphabet: lowercase alphanumerics without vowels (no words) and
without 0/1/3 (no look-alikes)."""
SUFFIX_LENGTH = 5
MAX_BASE_LENGTH = 63 - SUFFIX_LENGTH - 1
"""Generated names stay DNS-1123 labels (≤ 63 characters): they may become host names."""
HASH_LENGTH = 10


def template_hash(template: WorkerTemplate) -> str:
    """A stable, short hash of what the template means (see the module docstring)."""
    document = template.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def worker_name(pool_name: str, choice: Callable[[str], str] = secrets.choice) -> str:
    """`<pool>-<5 characters>`; a long pool name is cut so the result stays a DNS label."""
    base = pool_name[:MAX_BASE_LENGTH].rstrip("-.")
    suffix = "".join(choice(NAME_ALPHABET) for _ in range(SUFFIX_LENGTH))
    return f"{base}-{suffix}"


def new_worker(pool: LabWorkerPool, name: str, hash_: str) -> LabWorker:
    """The worker `pool`'s template describes, owned by the pool (controller reference)."""
    template = pool.spec.template
    owner: dict[str, Any] = POOL.owner_ref(pool)
    return LabWorker(
        metadata=ObjectMeta(
            name=name,
            namespace=pool.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations={**template.metadata.annotations, TEMPLATE_HASH_ANNOTATION: hash_},
            owner_references=[OwnerReference.model_validate(owner)],
        ),
        spec=template.spec.model_copy(deep=True),
    )


def is_current(worker: LabWorker, template: WorkerTemplate, hash_: str) -> bool:
    """Made from this template? By its hash annotation; a worker without one (an adopted
    orphan) is current when it already looks exactly like a worker made from the template —
    adopting it must not cost a cloud host for nothing."""
    recorded = worker.metadata.annotations.get(TEMPLATE_HASH_ANNOTATION)
    if recorded is not None:
        return recorded == hash_
    spec = worker.spec
    if spec.desired_phase is not DesiredPhase.READY:
        spec = spec.model_copy(update={"desired_phase": DesiredPhase.READY})
    labels, annotations = worker.metadata.labels, worker.metadata.annotations
    return (
        spec == template.spec
        and all(labels.get(k) == v for k, v in template.metadata.labels.items())
        and all(annotations.get(k) == v for k, v in template.metadata.annotations.items())
    )
