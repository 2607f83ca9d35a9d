"""`labctl` against hostile input: bad files to apply, bad values planted in etcd with etcdctl.

The contract: never a traceback. A command about one object or one input fails with exactly
one `error: ...` line naming it and exit code 1; a listing shows every good object and one
`warning: ...` line per bad key, and exits 0.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controller.app import kind_registry
from tests.e2e.harness import (
    PREFIX,
    REPO,
    ControllerProcess,
    all_in_phase,
    apply,
    base_env,
    labctl,
    labctl_cmd,
    worker_manifest,
)
from tests.etcdproc import EtcdProcess, wait_until

KEYS = f"{PREFIX}/lab-workers/"
DEEP = b"[" * 50_000 + b"]" * 50_000
"""A 100 KB value nested 50,000 deep: json.loads raises RecursionError on it."""


Result = subprocess.CompletedProcess[str]


def error_lines(res: Result) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("error:")]


def assert_one_error(res: Result, *expected: str) -> str:
    """Exit 1, stderr is exactly one `error:` line containing every `expected`, no traceback."""
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert res.returncode == 1, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def stored_keys(etcd: EtcdProcess) -> list[str]:
    return etcd.etcdctl("get", KEYS, "--prefix", "--keys-only").split()


# -- values planted in etcd ------------------------------------------------------------------


def test_a_50000_deep_value_is_reported_once_and_hides_nothing(etcd: EtcdProcess) -> None:
    apply(etcd, [worker_manifest("good-1"), worker_manifest("good-2", namespace="emea")])
    etcd.put(KEYS + "default/deep", DEEP)

    listed = labctl(etcd, "get", "labworkers", "-A", "-o", "json", check=False)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    names = [w["metadata"]["name"] for w in json.loads(listed.stdout)["items"]]
    assert sorted(names) == ["good-1", "good-2"]
    (warning,) = listed.stderr.splitlines()
    assert warning.startswith("warning: default/deep: ") and "invalid-json" in warning

    for args in (
        ("get", "labworker", "deep"),
        ("wait", "labworker/deep", "--for=delete", "--timeout=1s"),
    ):
        assert_one_error(labctl(etcd, *args, check=False), "default/deep", "invalid-json")
    refused = labctl(etcd, "delete", "labworker", "deep", check=False)
    assert_one_error(refused, "default/deep", "invalid-json", "not deleted")
    assert etcd.get_raw(KEYS + "default/deep") == DEEP

    waited = labctl(etcd, "wait", "--all", "--for=phase=Ready", "--timeout=1s", check=False)
    assert waited.returncode == 1 and "Traceback" not in waited.stderr
    assert len(error_lines(waited)) == 1 and "timed out" in waited.stderr
    assert [line for line in waited.stderr.splitlines() if line.startswith("warning:")] == [
        warning
    ]  # reported once, although wait polled the list several times

    assert "deleted" in labctl(etcd, "delete", "labworker", "good-1").stdout


def test_a_value_copied_to_another_key_is_invalid_and_never_deleted_by_name(
    etcd: EtcdProcess,
) -> None:
    apply(etcd, [worker_manifest("name-b")])
    original = etcd.get_raw(KEYS + "default/name-b")
    assert original is not None
    etcd.put(KEYS + "default/name-a", original)  # etcdctl put to the wrong key

    assert_one_error(
        labctl(etcd, "get", "labworker", "name-a", check=False),
        "default/name-a",
        "key-mismatch",
        "metadata says default/name-b",
    )
    listed = labctl(etcd, "get", "labworkers")
    assert "name-b" in listed.stdout and "name-a" not in listed.stdout
    assert "key-mismatch" in listed.stderr and len(listed.stderr.splitlines()) == 1

    refused = labctl(etcd, "delete", "labworker", "name-a", check=False)
    assert_one_error(refused, "default/name-a", "key-mismatch", "not deleted")
    assert etcd.get_raw(KEYS + "default/name-a") == original
    assert etcd.get_raw(KEYS + "default/name-b") == original


def test_the_controller_converges_the_other_workers_around_a_deep_value(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    etcd.put(KEYS + "default/deep", DEEP)
    apply(etcd, [worker_manifest(f"w{i}") for i in range(5)])
    controller = ControllerProcess(etcd, tmp_path)
    try:
        controller.start().wait_ready()
        wait_until(lambda: all_in_phase(etcd, "Ready", 5), timeout=60, what="5 workers Ready")
        # The same value arriving through the watch, then more work behind it.
        etcd.put(KEYS + "emea/deep", DEEP)
        apply(etcd, [worker_manifest("w5"), worker_manifest("w6")])
        wait_until(lambda: all_in_phase(etcd, "Ready", 7), timeout=60, what="7 workers Ready")

        def invalid_counted() -> float:
            for line in controller.get("/metrics")[1].splitlines():
                if (
                    line.startswith("labctl_informer_invalid_objects_total{")
                    and "invalid-json" in line
                ):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        wait_until(lambda: invalid_counted() >= 2, what="both deep values counted as invalid")
        assert controller.alive()
        assert controller.get("/healthz")[0] == 200
    finally:
        controller.kill()
    sentences = [str(line.get("message", line.get("event", ""))) for line in controller.logs()]
    skipped = [s for s in sentences if "skipping" in s and "deep" in s]
    assert len(skipped) >= 2 and all("invalid-json" in event for event in skipped)
    assert not [line for line in controller.logs() if "Traceback" in json.dumps(line)]
    assert etcd.get_raw(KEYS + "default/deep") == DEEP  # never rewritten or deleted


# -- files given to apply --------------------------------------------------------------------


def _yaml_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\nmetadata: {name: bomb}\nspec: {labTrack: *a9}\n"


def _manifest(**metadata: object) -> str:
    doc = worker_manifest("hostile")
    doc["metadata"].update(metadata)
    return json.dumps(doc)


HOSTILE_FILES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    # name: (make the input under tmp, what the error line must say)
    "binary": (
        lambda d: _write(d / "a.yaml", b"\x7fELF\x02\x01\x01\x00" + bytes(range(1, 32)) * 8),
        ("a.yaml", "not valid YAML/JSON", "unacceptable character"),
    ),
    "invalid-utf8": (
        lambda d: _write(d / "a.yaml", b"metadata:\n  name: caf\xe9\n"),
        ("a.yaml", "not UTF-8", "0xe9"),
    ),
    "empty": (lambda d: _write(d / "a.yaml", b""), ("no documents to apply", "a.yaml")),
    "yaml-bomb": (
        lambda d: _write(d / "a.yaml", _yaml_bomb().encode()),
        ("a.yaml", "aliases expand it to more than"),
    ),
    "recursive-alias": (
        lambda d: _write(d / "a.yaml", b"metadata: &m\n  name: x\n  self: *m\n"),
        ("a.yaml", "refers to a node that contains it"),
    ),
    "deep-yaml": (
        lambda d: _write(d / "a.yaml", b"spec: " + DEEP + b"\n"),
        ("a.yaml", "nested more than 100 levels deep"),
    ),
    "deep-json": (
        lambda d: _write(d / "a.json", b'{"metadata": ' * 50_000 + b"1" + b"}" * 50_000),
        ("a.json", "nested more than 100 levels deep"),
    ),
    "50MB": (
        lambda d: _write(d / "a.yaml", b"# padding\n" * 5_000_000),
        ("a.yaml", "larger than 16 MiB"),
    ),
    "no-manifests": (
        lambda d: _write(d / "notes.txt", b"hello").parent,
        ("no .yaml, .yml or .json files",),
    ),
    "1MiB-annotation": (
        lambda d: _write(d / "a.json", _manifest(annotations={"note": "x" * 1024 * 1024}).encode()),
        ("a.json", "cannot be stored", "metadata.annotations.note", "262144 bytes"),
    ),
    "huge-label-key": (
        lambda d: _write(d / "a.json", _manifest(labels={"k" * 1000: "v"}).encode()),
        ("a.json", "invalid LabWorker", "metadata.labels", "characters long; at most 63"),
    ),
    "lone-surrogate": (
        lambda d: _write(
            d / "a.yaml",
            b'metadata: {name: s, annotations: {note: "\\ud800"}}\nspec: {labTrack: ccna}\n',
        ),
        ("a.yaml", "metadata.annotations.note", "not valid Unicode"),
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _run_labctl(etcd: EtcdProcess, args: list[str], stdin: bytes | None = None) -> Result:
    res = subprocess.run(
        [*labctl_cmd(), *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
        env=base_env(etcd),
        cwd=REPO,
    )
    return Result(res.args, res.returncode, res.stdout.decode(), res.stderr.decode())


def test_apply_of_each_hostile_input_is_one_error_line_and_writes_nothing(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    runs: dict[str, tuple[list[str], bytes | None, tuple[str, ...]]] = {
        case: (["apply", "-f", str(make(tmp_path / case))], None, expected)
        for case, (make, expected) in HOSTILE_FILES.items()
    }
    runs["binary-stdin"] = (
        ["apply", "-f", "-"],
        bytes(range(128, 256)) * 64,
        ("<stdin>", "not UTF-8"),
    )
    # Concurrently: each run is a fresh interpreter, and most of its time is start-up.
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(_run_labctl, etcd, args, stdin)
            for case, (args, stdin, _) in runs.items()
        }
    failures = {}
    for case, future in futures.items():
        try:
            line = assert_one_error(future.result(), *runs[case][2])
            assert len(line) < 600, line  # a 1 MiB value never makes a 1 MiB message
        except AssertionError as exc:
            failures[case] = str(exc)
    assert failures == {}
    assert stored_keys(etcd) == []


def test_a_health_port_already_in_use_is_one_error_line_not_a_bug_report(
    etcd: EtcdProcess,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run(
            [*labctl_cmd(), "run"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=base_env(etcd, HEALTH_PORT=str(port), METRICS_PORT="0", HTTP_HOST="127.0.0.1"),
            cwd=REPO,
        )
    assert "Traceback" not in res.stdout + res.stderr
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], res.stderr
    assert "already in use" in errors[0] and "HEALTH_PORT" in errors[0]
    assert "bug" not in errors[0]


# -- every other kind ----------------------------------------------------------------------------

VALID_DOCUMENTS: dict[str, dict[str, Any]] = {
    "LabWorkerPool": {
        "metadata": {"name": "pool"},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": {"pool": "p"}}, "spec": {"labTrack": "x"}},
        },
    },
    "LabQuota": {"metadata": {"name": "quota"}, "spec": {"hard": {"labworkers": 3}}},
    "Event": {
        "metadata": {"name": "event"},
        "involvedObject": {"apiVersion": "v", "kind": "K", "name": "n", "namespace": "ns"},
        "reason": "Ready",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "reportingController": "c",
        "reportingInstance": "i",
    },
}
"""A valid document of each kind besides LabWorker; each case below breaks one field."""

BAD_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "LabWorkerPool": (
        lambda d: d["spec"].update(replicas=-1),
        ("invalid LabWorkerPool", "spec.replicas", "greater than or equal to 0"),
    ),
    "LabQuota": (
        lambda d: d["spec"].update(hard={"labworkers": "3"}),
        ("invalid LabQuota", "spec.hard.labworkers"),
    ),
    "Event": (
        lambda d: d.update(count=0),
        ("invalid Event", "count", "greater than or equal to 1"),
    ),
}


def test_a_bad_manifest_of_any_kind_is_one_error_line_and_writes_nothing(
    etcd: EtcdProcess, tmp_path: Path
) -> None:
    registry = kind_registry()
    assert {k.kind for k in registry} >= {"LabWorker", *VALID_DOCUMENTS}
    runs: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for name, valid in VALID_DOCUMENTS.items():
        kind = registry.by_kind(name)
        assert kind is not None
        bad_label = copy.deepcopy(valid)
        bad_label["metadata"]["labels"] = {"k" * 1000: "v"}
        bad_field = copy.deepcopy(valid)
        break_field, expected = BAD_FIELDS[name]
        break_field(bad_field)
        base = {"apiVersion": kind.api_version, "kind": kind.kind}
        runs[f"{name}-label"] = (
            _write(
                tmp_path / f"{kind.plural}-label.json", json.dumps({**base, **bad_label}).encode()
            ),
            (f"invalid {name}", "metadata.labels", "characters long; at most 63"),
        )
        runs[name] = (
            _write(tmp_path / f"{kind.plural}.yaml", json.dumps({**base, **bad_field}).encode()),
            expected,
        )
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(_run_labctl, etcd, ["apply", "-f", str(path)])
            for case, (path, _) in runs.items()
        }
    failures = {}
    for case, future in futures.items():
        try:
            assert_one_error(future.result(), runs[case][0].name, *runs[case][1])
        except AssertionError as exc:
            failures[case] = str(exc)
    assert failures == {}
    assert etcd.etcdctl("get", PREFIX + "/", "--prefix", "--keys-only").split() == []


def test_a_value_planted_under_another_kind_is_reported_like_a_labworkers(
    etcd: EtcdProcess,
) -> None:
    keys = kind_registry().lookup("events").prefix(PREFIX)
    etcd.put(keys + "default/deep", DEEP)
    apply(etcd, [worker_manifest("w1")])

    listed = labctl(etcd, "get", "ev", "-o", "name", check=False)
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
    (warning,) = listed.stderr.splitlines()
    assert warning.startswith("warning: default/deep: ") and "invalid-json" in warning
    assert_one_error(labctl(etcd, "get", "ev/deep", check=False), "default/deep", "invalid-json")
    assert_one_error(
        labctl(etcd, "describe", "events", "deep", check=False), "default/deep", "invalid-json"
    )
    assert_one_error(
        labctl(etcd, "delete", "ev", "deep", check=False), "default/deep", "not deleted"
    )
    # describe lists the namespace's Events: the bad one is one warning, the page is whole
    described = labctl(etcd, "describe", "lw", "w1", check=False)
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[-1] == "Events:             <none>"
    assert [line.split(";")[0] for line in described.stderr.splitlines()] == [warning.split(";")[0]]
    assert etcd.get_raw(keys + "default/deep") == DEEP
