"""Cached values packed against a dictionary of their kind come back byte for byte."""

from __future__ import annotations

import json

from controller.runtime.packing import ValuePacker


def worker(name: str, phase: str) -> bytes:
    doc = {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorker",
        "metadata": {"name": name, "namespace": "emea", "uid": f"uid-{name}", "generation": 1},
        "spec": {"labTrack": "ccna", "desiredPhase": "Ready", "instance": {"type": "m5zn.metal"}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def test_values_round_trip_and_similar_ones_pack_small() -> None:
    packer = ValuePacker()
    first = worker("w-000001", "Ready")
    values = [first, worker("w-000002", "Ready"), worker("w-000003", "Pending"), b"", b"\xff\x00"]
    packed = [packer.pack(v) for v in values]
    assert [packer.unpack(p) for p in packed] == values
    # A value like the dictionary costs a small fraction of its size.
    assert len(packed[1]) * 4 < len(values[1])


def test_the_dictionary_is_the_first_value_and_never_changes() -> None:
    packer = ValuePacker()
    a = packer.pack(worker("a", "Ready"))
    packer.pack(b'{"something": "else entirely"}' * 50)
    assert packer.unpack(a) == worker("a", "Ready")
