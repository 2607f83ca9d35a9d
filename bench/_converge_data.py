"""Fleet data for bench/converge.py: making, loading, dropping and checking workers.

Workers are made from manifests/samples/*.yaml exactly as `LabWorkerRepository.create` would
store them (uid, creationTimestamp, generation 1, empty status), so the controller does the
work a real `labctl apply` of a fleet would give it. Loading goes through `apply_batch`
(128 puts per transaction, several threads): 100k workers load in seconds, not minutes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker, LabWorkerStatus
from controller.resources import now_rfc3339
from controller.storage import MAX_BATCH_OPS, BatchPut, EtcdClient, EtcdStorageBackend
from controller.storage.codec import prefix_range_end

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "manifests" / "samples"

Document = dict[str, Any]


def _sample_documents() -> list[Document]:
    """The samples as the repository would create them, all asked to become Ready."""
    docs = []
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        for raw in yaml.safe_load_all(path.read_text()):
            if not raw or raw.get("kind", "LabWorker") != "LabWorker":
                continue  # pools and quotas live beside the worker samples
            raw.setdefault("spec", {})["desiredPhase"] = "Ready"  # the bench waits for Ready
            worker = LabWorker.model_validate(raw)
            meta = worker.metadata.model_copy(
                update={"creation_timestamp": now_rfc3339(), "generation": 1}
            )
            fresh = worker.model_copy(update={"metadata": meta, "status": LabWorkerStatus()})
            docs.append(fresh.to_storage_dict())
    if not docs:
        raise RuntimeError(f"no LabWorker samples in {SAMPLES_DIR}")
    return docs


def new_fleet(count: int) -> Callable[[int], tuple[str, Document]]:
    """`make(i)` → (key, document) of the i-th new worker, cycling through the samples."""
    samples = [json.dumps(d) for d in _sample_documents()]

    def make(i: int) -> tuple[str, Document]:
        doc: Document = json.loads(samples[i % len(samples)])
        return renamed(doc, i)

    return make


def replicas_of(template: Document) -> Callable[[int], tuple[str, Document]]:
    """`make(i)` → copies of one (converged) stored worker under new names and uids."""
    text = json.dumps(template)

    def make(i: int) -> tuple[str, Document]:
        return renamed(json.loads(text), i)

    return make


def renamed(doc: Document, i: int) -> tuple[str, Document]:
    meta = doc["metadata"]
    base = meta["name"].rsplit("-", 1)[0] if meta["name"][-1:].isdigit() else meta["name"]
    meta["name"] = f"{base}-{i:06d}"
    meta["uid"] = str(uuid.uuid4())
    meta.pop("resourceVersion", None)
    namespace = meta.setdefault("namespace", "default")
    return f"{namespace}/{meta['name']}", doc


def batches(count: int) -> Iterator[range]:
    for start in range(0, count, MAX_BATCH_OPS):
        yield range(start, min(start + MAX_BATCH_OPS, count))


def load(
    client: EtcdClient,
    prefix: str,
    count: int,
    make: Callable[[int], tuple[str, Document]],
    *,
    threads: int = 4,
) -> tuple[float, dict[str, int]]:
    """Store `count` workers under `prefix` in 128-put transactions.

    Returns (seconds, {key: mod_revision}): every put of one transaction shares its revision,
    so the revisions are known without reading anything back.
    """
    backend = EtcdStorageBackend(client, LABWORKER.prefix(prefix))

    def put(indices: range) -> dict[str, int]:
        docs = [make(i) for i in indices]
        revision = backend.apply_batch([BatchPut(key, doc) for key, doc in docs])
        return {key: revision for key, _ in docs}

    started = time.perf_counter()
    revisions: dict[str, int] = {}
    with ThreadPoolExecutor(threads) as pool:
        for part in pool.map(put, batches(count)):
            revisions.update(part)
    return time.perf_counter() - started, revisions


def drop(client: EtcdClient, prefix: str) -> None:
    """Delete a finished stage's keys and compact the history, so that later stages do not
    run against a bigger etcd than earlier ones did."""
    root = prefix.rstrip("/") + "/"
    revision = client.delete(root, prefix_range_end(root), timeout=120.0).revision
    client.compact(revision)


def stored_phases(client: EtcdClient, prefix: str) -> tuple[dict[str, int], Document | None]:
    """Phase counts straight from etcd (not the cache), and one stored document."""
    counts: dict[str, int] = {}
    sample: Document | None = None
    for page, _ in client.iter_prefix(LABWORKER.prefix(prefix), page_size=5000):
        for kv in page:
            doc = json.loads(kv.value)
            phase = (doc.get("status") or {}).get("phase") or "none"
            counts[phase] = counts.get(phase, 0) + 1
            if sample is None:
                sample = doc
    return counts, sample
