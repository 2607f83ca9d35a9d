"""`labctl` verbs for every registered kind, run as a process against a real etcd.

LabWorker and Event are always served; LabWorkerPool and LabQuota are exercised when their
packages are registered in controller.app (skipped with a reason otherwise). Objects whose
state only a controller writes (status, Events) are written here through the same
repositories the controller uses — no controller process is needed to test the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from controller.app import kind_registry, repositories
from controller.events.kind import EVENT
from controller.labworker.kind import LABWORKER
from controller.labworker.model import LabWorker
from controller.labworker.phase import Phase
from controller.resources import Condition, Kind, now_rfc3339
from controller.runtime.repository import RepositorySet
from controller.storage import EtcdClient, connect
from tests.e2e.harness import PREFIX, labctl, worker_manifest
from tests.etcdproc import EtcdProcess

Result = subprocess.CompletedProcess[str]
REGISTRY = kind_registry()
POOL: Kind[Any] | None = REGISTRY.by_kind("LabWorkerPool")
QUOTA: Kind[Any] | None = REGISTRY.by_kind("LabQuota")
needs_pool = pytest.mark.skipif(
    POOL is None, reason="LabWorkerPool is not registered in controller.app yet"
)
needs_quota = pytest.mark.skipif(
    QUOTA is None, reason="LabQuota is not registered in controller.app yet"
)


@pytest.fixture(scope="module")
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def repos(client: EtcdClient) -> RepositorySet:
    return repositories(client, PREFIX)


def ctl(etcd: EtcdProcess, *args: str, input: str | None = None) -> Result:
    res = labctl(etcd, *args, input=input, check=False)
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    return res


def ok(etcd: EtcdProcess, *args: str, input: str | None = None) -> str:
    res = ctl(etcd, *args, input=input)
    assert res.returncode == 0, (args, res.stderr)
    return res.stdout


def one_error(res: Result, *expected: str, code: int = 1) -> str:
    lines = res.stderr.splitlines()
    assert res.returncode == code, (res.returncode, res.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def docs(*items: dict[str, Any]) -> str:
    return "\n---\n".join(json.dumps(d) for d in items)


def names(stdout: str) -> list[str]:
    return stdout.split()


def event_doc(
    name: str, about: LabWorker | dict[str, Any], reason: str, *, count: int = 1, **extra: Any
) -> dict[str, Any]:
    involved = (
        about
        if isinstance(about, dict)
        else {
            "apiVersion": about.api_version,
            "kind": about.kind,
            "name": about.metadata.name,
            "namespace": about.metadata.namespace,
            "uid": about.metadata.uid,
        }
    )
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": involved["namespace"]},
        "involvedObject": involved,
        "reason": reason,
        "message": extra.get("message", f"{reason} for {involved['name']}"),
        "type": extra.get("type", "Normal"),
        "count": count,
        "firstTimestamp": extra.get("first", "2026-01-01T00:00:00Z"),
        "lastTimestamp": now_rfc3339(),
        "reportingController": "labworker-controller",
        "reportingInstance": "replica-a",
    }


def pool_doc(name: str, namespace: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabWorkerPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": {"pool": name}}, "spec": {"labTrack": "ccna"}},
        },
    }


def quota_doc(name: str, namespace: str, workers: int) -> dict[str, Any]:
    return {
        "apiVersion": "lab.neuroglia.io/v1",
        "kind": "LabQuota",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hard": {"labworkers": workers}},
    }


# -- LabWorker ---------------------------------------------------------------------------------


def test_labworkers_by_every_name_and_type_slash_name(shared_etcd: EtcdProcess) -> None:
    etcd, ns = shared_etcd, "names"
    unplaced = [worker_manifest("a"), worker_manifest("b")]
    for doc in unplaced:
        del doc["metadata"]["namespace"]  # apply -n places them
    out = ok(etcd, "apply", "-n", ns, "-f", "-", input=docs(*unplaced))
    assert out.splitlines() == [
        "labworker.lab.neuroglia.io/a created",
        "labworker.lab.neuroglia.io/b created",
    ]
    # Every name resolves alike (tests/unit/test_cli_targets.py walks all of them in-process);
    # here, end to end, a short name, the group-qualified plural and the kind in capitals.
    for name in ["lw", "labworkers.lab.neuroglia.io", "LabWorker"]:
        assert names(ok(etcd, "get", name, "-n", ns, "-o", "name")) == [
            "labworker.lab.neuroglia.io/a",
            "labworker.lab.neuroglia.io/b",
        ], name
    one = json.loads(ok(etcd, "get", "labworker/a", "-n", ns, "-o", "json"))
    assert one["kind"] == "LabWorker" and one["metadata"]["name"] == "a"
    both = json.loads(ok(etcd, "get", "lw/b", "labworkers/a", "-n", ns, "-o", "json"))
    assert both["kind"] == "List" and [i["metadata"]["name"] for i in both["items"]] == ["b", "a"]
    listed = yaml.safe_load(ok(etcd, "get", "lw", "a", "b", "-n", ns, "-o", "yaml"))
    assert listed["kind"] == "List" and len(listed["items"]) == 2

    table = ok(etcd, "get", "lw", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "PHASE", "TRACK", "DESIRED", "AGE"]
    assert table[1].split()[:4] == ["a", "<none>", "ccna", "Ready"]
    assert re.fullmatch(r"\d+s", table[1].split()[4])  # AGE, kubectl format: just created
    wide = ok(etcd, "get", "lw", "-o", "wide", "-A", "-l", "fleet=e2e").splitlines()
    assert wide[0].split()[:6] == ["NAMESPACE", "NAME", "PHASE", "TRACK", "DESIRED", "AGE"]
    assert wide[0].split()[6:] == ["INSTANCE", "ADDRESS", "LABS", "GEN", "OBSERVED"]
    assert [ns, "a"] in [row.split()[:2] for row in wide[1:]]

    text = ok(etcd, "describe", "labworker/a", "-n", ns).splitlines()
    assert text[0] == "Name:               a" and "  Lab Track:        ccna" in text
    assert text[-1] == "Events:             <none>"

    deleted = ok(etcd, "delete", "lw", "a", "-n", ns).strip()
    assert deleted == 'labworker.lab.neuroglia.io "a" deleted'
    deleted = ok(etcd, "delete", "labworker/b", "-n", ns).strip()
    assert deleted == 'labworker.lab.neuroglia.io "b" deleted'
    one_error(ctl(etcd, "get", "lw/a", "-n", ns), f'labworkers "a" not found in namespace {ns}')
    ok(etcd, "wait", "labworker/a", "lw/b", "-n", ns, "--for=delete", "--timeout=5s")


def test_get_names_some_missing_prints_the_rest_and_fails(shared_etcd: EtcdProcess) -> None:
    etcd = shared_etcd
    ok(etcd, "apply", "-f", "-", input=docs(worker_manifest("present", namespace="partial")))
    res = ctl(etcd, "get", "lw", "ghost", "-n", "partial", "present", "-o", "name")
    assert res.returncode == 1
    assert res.stdout.split() == ["labworker.lab.neuroglia.io/present"]
    assert res.stderr.splitlines() == ['error: labworkers "ghost" not found in namespace partial']
    res = ctl(etcd, "delete", "lw", "ghost", "present", "-n", "partial")
    assert res.returncode == 1 and "present" in res.stdout and "ghost" in res.stderr
    quiet = ctl(etcd, "get", "lw", "-n", "partial")
    assert (
        quiet.returncode == 0 and quiet.stderr.strip() == "No resources found in namespace partial."
    )


# -- Events ------------------------------------------------------------------------------------


def test_events_field_selector_and_describe_ends_with_the_objects_events(
    shared_etcd: EtcdProcess, repos: RepositorySet
) -> None:
    etcd, ns = shared_etcd, "events"
    ok(
        etcd,
        "apply",
        "-f",
        "-",
        input=docs(*(worker_manifest(n, namespace=ns) for n in ("a", "b", "quiet"))),
    )
    workers = repos.for_kind(LABWORKER)
    a, b = workers.get(ns, "a"), workers.get(ns, "b")
    assert a is not None and b is not None
    events = repos.for_kind(EVENT)
    about_a = event_doc("x", a, "X")["involvedObject"]
    for doc in (
        event_doc("a.1", a, "Provisioning"),
        event_doc(
            "a.2", a, "HostUnreachable", count=3, type="Warning", first="2026-01-01T00:00:00Z"
        ),
        event_doc("b.1", b, "Provisioning"),
        # same name, other kind: not a's event
        event_doc("p.1", {**about_a, "kind": "LabWorkerPool", "uid": "pool-uid"}, "Scaled"),
        # same name, an earlier incarnation (another uid): not a's event either
        event_doc("old.1", {**about_a, "uid": "gone"}, "Deleted"),
    ):
        events.create(events.validate(doc))

    def selected(selector: str, *extra: str) -> list[str]:
        return names(
            ok(etcd, "get", "ev", "-n", ns, "--field-selector", selector, "-o", "name", *extra)
        )

    assert selected("involvedObject.name=a") == [
        "event.lab.neuroglia.io/a.1",
        "event.lab.neuroglia.io/a.2",
        "event.lab.neuroglia.io/old.1",
        "event.lab.neuroglia.io/p.1",
    ]
    assert selected("involvedObject.name=a,reason!=Provisioning,type==Warning") == [
        "event.lab.neuroglia.io/a.2"
    ]
    assert selected(f"involvedObject.uid={b.metadata.uid}") == ["event.lab.neuroglia.io/b.1"]
    assert selected("metadata.name=b.1,metadata.namespace=events") == ["event.lab.neuroglia.io/b.1"]
    none = ctl(etcd, "get", "events", "-n", ns, "--field-selector", "involvedObject.name=zz")
    assert none.returncode == 0 and none.stdout == "" and "No resources found" in none.stderr
    one_error(
        ctl(etcd, "get", "ev", "-n", ns, "--field-selector", "spec.x=1"),
        "'spec.x' is not supported for events",
        "supported fields: involvedObject.name, involvedObject.uid, metadata.name",
    )
    one_error(ctl(etcd, "get", "ev", "--field-selector", "reason"), "invalid field selector")

    table = ok(etcd, "get", "events", "-n", ns).splitlines()
    assert table[0].split()[0] == "NAME" and table[0].split()[-1] == "AGE"
    assert len(table) == 6

    text = ok(etcd, "describe", "lw", "a", "-n", ns).splitlines()
    at = text.index("Events:")
    assert text[at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    rows = [line.split() for line in text[at + 3 :]]
    assert [r[1] for r in rows] == ["Provisioning", "HostUnreachable"]  # oldest first
    assert rows[0][0] == "Normal" and rows[0][3:5] == ["labworker-controller,", "replica-a"]
    assert rows[1][0] == "Warning" and "(x3" in rows[1] and "over" in rows[1]
    assert "Provisioning for a" in text[at + 3]
    assert [
        line.split()[1] for line in ok(etcd, "describe", "lw/b", "-n", ns).splitlines()[-1:]
    ] == ["Provisioning"]
    assert (
        ok(etcd, "describe", "lw", "quiet", "-n", ns).splitlines()[-1]
        == "Events:             <none>"
    )

    generic = ok(etcd, "describe", "ev/a.2", "-n", ns).splitlines()
    assert "Kind:               Event (lab.neuroglia.io/v1)" in generic
    assert "Involved Object:" in generic and "Reason:             HostUnreachable" in generic
    assert generic[-1] == "Events:             <none>"

    assert (
        ok(etcd, "delete", "ev", "b.1", "-n", ns).strip() == 'event.lab.neuroglia.io "b.1" deleted'
    )
    assert selected("involvedObject.name=b") == []


def test_apply_dispatches_each_document_by_kind(
    shared_etcd: EtcdProcess, repos: RepositorySet
) -> None:
    etcd, ns = shared_etcd, "mixed"
    ok(etcd, "apply", "-f", "-", input=docs(worker_manifest("w", namespace=ns)))
    w = repos.for_kind(LABWORKER).get(ns, "w")
    assert w is not None
    items: list[dict[str, Any]] = [
        worker_manifest("w2", namespace=ns),
        event_doc("w.1", w, "Noted"),
    ]
    if QUOTA is not None:
        items.append(quota_doc("q", ns, 10))
    if POOL is not None:
        items.append(pool_doc("p", ns, replicas=0))
    listed = {"apiVersion": "v1", "kind": "List", "items": items}
    first = ok(etcd, "apply", "-f", "-", input=json.dumps(listed)).splitlines()
    expected = ["labworker.lab.neuroglia.io/w2", "event.lab.neuroglia.io/w.1"]
    expected += ["labquota.lab.neuroglia.io/q"] if QUOTA is not None else []
    expected += ["labworkerpool.lab.neuroglia.io/p"] if POOL is not None else []
    assert first == [f"{e} created" for e in expected]
    again = ok(etcd, "apply", "-f", "-", input=json.dumps(listed)).splitlines()
    assert again == [f"{e} unchanged" for e in expected]
    items[0]["spec"]["labTrack"] = "devnet"
    changed = ok(etcd, "apply", "-f", "-", input=json.dumps(listed)).splitlines()
    assert changed[0] == "labworker.lab.neuroglia.io/w2 configured"
    assert changed[1:] == [f"{e} unchanged" for e in expected[1:]]
    stored = json.loads(ok(etcd, "get", "lw/w2", "-n", ns, "-o", "json"))
    assert stored["spec"]["labTrack"] == "devnet" and stored["metadata"]["generation"] == 2

    # A stale resourceVersion is refused for that document only; the others still apply.
    stale = {**stored, "metadata": {**stored["metadata"], "resourceVersion": 1}}
    res = ctl(etcd, "apply", "-f", "-", input=docs(stale, worker_manifest("w3", namespace=ns)))
    one_error(res, "labworker.lab.neuroglia.io/w2", "resourceVersion")
    assert res.stdout.strip() == "labworker.lab.neuroglia.io/w3 created"


def test_an_unknown_type_is_one_error_line_naming_the_known_types(shared_etcd: EtcdProcess) -> None:
    etcd = shared_etcd
    for args in (
        ("get", "workers"),
        ("get", "workers/x"),
        ("describe", "workers", "x"),
        ("delete", "workers", "x"),
        ("wait", "workers/x", "--for=delete"),
        ("scale", "workers", "x", "--replicas", "1"),
    ):
        line = one_error(ctl(etcd, *args), "doesn't have a resource type 'workers'")
        for kind in REGISTRY:
            assert kind.plural in line, (kind.plural, line)
        assert "labworkers (lw)" in line and "events (ev)" in line
    one_error(ctl(etcd, "get"), "you must specify the type of resource", code=2)
    one_error(ctl(etcd, "get", "lw/a", "b"), "expected TYPE/NAME", code=2)
    one_error(ctl(etcd, "get", "lw", "a", "-l", "x=y"), "cannot be combined with names", code=2)
    usage = one_error(ctl(etcd, "get", "lw", "-o", "table"), "argument -o/--output", code=2)
    assert "labctl get --help" in usage
    listed = ok(etcd, "api-resources").splitlines()
    assert listed[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert [line.split()[0] for line in listed[1:]] == sorted(k.plural for k in REGISTRY)


# -- wait --------------------------------------------------------------------------------------


def test_wait_for_phase_condition_and_delete(
    shared_etcd: EtcdProcess, repos: RepositorySet
) -> None:
    etcd, ns = shared_etcd, "waiting"
    ok(etcd, "apply", "-f", "-", input=docs(worker_manifest("w", namespace=ns)))

    def ready(w: LabWorker) -> None:
        w.status.phase = Phase.READY
        w.status.conditions = [
            Condition(
                type="Ready", status="True", reason="HostReady", last_transition_time=now_rfc3339()
            )
        ]

    repos.for_kind(LABWORKER).update_status(ns, "w", ready)
    for condition in ("phase=Ready", "condition=Ready", "condition=ready=true"):
        out = ok(etcd, "wait", "labworker/w", "-n", ns, f"--for={condition}", "--timeout=5s")
        assert out.strip() == "labworker.lab.neuroglia.io/w condition met", condition
    ok(etcd, "wait", "lw", "--all", "-n", ns, "--for=condition=Ready", "--timeout=5s")
    one_error(
        ctl(etcd, "wait", "lw/w", "-n", ns, "--for=condition=Ready=False", "--timeout=0.5s"),
        "timed out",
        "labworker.lab.neuroglia.io/w (Ready=True)",
    )
    one_error(
        ctl(etcd, "wait", "lw", "w", "-n", ns, "--for=condition=Licensed", "--timeout=0.5s"),
        "(no such condition)",
    )
    one_error(ctl(etcd, "wait", "lw/w", "--for=phase=Bogus"), "not a phase of labworkers", "Ready")
    one_error(ctl(etcd, "wait", "ev/x", "--for=phase=Ready"), "events have no status.phase")
    one_error(ctl(etcd, "wait", "lw/w", "--for=ready"), "expected delete, phase=", code=2)
    one_error(ctl(etcd, "wait", "lw/w", "--for=delete", "--timeout=soon"), "--timeout=soon", code=2)
    ok(etcd, "delete", "labworker", "w", "-n", ns)
    ok(etcd, "wait", "lw/w", "-n", ns, "--for=delete", "--timeout=5s")


# -- scale -------------------------------------------------------------------------------------


def test_scale_refuses_kinds_without_replicas_and_bad_counts(shared_etcd: EtcdProcess) -> None:
    etcd = shared_etcd
    one_error(
        ctl(etcd, "scale", "lw", "x", "--replicas", "2"),
        "labworkers cannot be scaled",
        "spec.replicas",
    )
    one_error(ctl(etcd, "scale", "ev/x", "--replicas", "2"), "events cannot be scaled")
    for bad in ("-1", "two", "1.5"):
        one_error(
            ctl(etcd, "scale", "lw", "x", "--replicas", bad), "--replicas", "integer >= 0", code=2
        )


@needs_pool
def test_scale_a_pool_is_a_spec_cas_bumping_generation_only_on_change(
    shared_etcd: EtcdProcess,
) -> None:
    etcd, ns = shared_etcd, "pools"
    assert ok(etcd, "apply", "-n", ns, "-f", "-", input=docs(pool_doc("ccna", ns))).strip() == (
        "labworkerpool.lab.neuroglia.io/ccna created"
    )

    def stored() -> dict[str, Any]:
        # Read straight from etcd: what `scale` wrote, not what `get` renders (tested above).
        raw = etcd.get_raw(f"{PREFIX}/lab-worker-pools/{ns}/ccna")
        assert raw is not None
        return dict(json.loads(raw))

    assert stored()["spec"]["replicas"] == 2 and stored()["metadata"]["generation"] == 1
    out = ok(etcd, "scale", "pool", "ccna", "--replicas", "3", "-n", ns)
    assert out.strip() == "labworkerpool.lab.neuroglia.io/ccna scaled"
    assert (stored()["spec"]["replicas"], stored()["metadata"]["generation"]) == (3, 2)
    ok(etcd, "scale", "labworkerpool/ccna", "--replicas", "3", "-n", ns)
    assert stored()["metadata"]["generation"] == 2  # unchanged: no write, no new generation
    ok(etcd, "scale", "lwp/ccna", "--replicas", "0", "-n", ns)
    assert (stored()["spec"]["replicas"], stored()["metadata"]["generation"]) == (0, 3)
    one_error(ctl(etcd, "scale", "pool", "ghost", "--replicas", "1", "-n", ns), "not found")

    for name in ("lwp", "labworkerpools.lab.neuroglia.io"):  # all names: test_cli_targets
        assert names(ok(etcd, "get", name, "-n", ns, "-o", "name")) == [
            "labworkerpool.lab.neuroglia.io/ccna"
        ]
    table = ok(etcd, "get", "pool", "-n", ns).splitlines()
    assert table[0].split()[0] == "NAME" and table[0].split()[-1] == "AGE"
    assert table[1].split()[0] == "ccna"
    text = ok(etcd, "describe", "pool/ccna", "-n", ns).splitlines()
    assert "Kind:               LabWorkerPool (lab.neuroglia.io/v1)" in text
    assert "Spec:" in text and "Status:" in text and "  Conditions:" in text
    assert text[-1] == "Events:             <none>"
    one_error(ctl(etcd, "wait", "pool/ccna", "--for=phase=Ready"), "have no status.phase")
    assert ok(etcd, "delete", "pool", "ccna", "-n", ns).strip() == (
        'labworkerpool.lab.neuroglia.io "ccna" deleted'
    )


# -- quotas ------------------------------------------------------------------------------------


@needs_quota
def test_a_create_refused_by_a_quota_is_one_error_line_and_the_rest_still_apply(
    shared_etcd: EtcdProcess,
) -> None:
    etcd, ns = shared_etcd, "quota"
    assert ok(etcd, "apply", "-f", "-", input=docs(quota_doc("limits", ns, 1))).strip() == (
        "labquota.lab.neuroglia.io/limits created"
    )
    res = ctl(
        etcd,
        "apply",
        "-f",
        "-",
        input=docs(
            worker_manifest("q1", namespace=ns),
            worker_manifest("q2", namespace=ns),
            quota_doc("other", ns, 5),
        ),
    )
    line = one_error(res, "<stdin> (document 2): ", "q2", "quota")
    assert "q1" not in line
    assert res.stdout.splitlines() == [
        "labworker.lab.neuroglia.io/q1 created",
        "labquota.lab.neuroglia.io/other created",
    ]
    assert names(ok(etcd, "get", "lw", "-n", ns, "-o", "name")) == ["labworker.lab.neuroglia.io/q1"]
    for name in ("quota", "labquota", "labquotas", "labquotas.lab.neuroglia.io"):
        assert "labquota.lab.neuroglia.io/limits" in ok(etcd, "get", name, "-n", ns, "-o", "name")
    described = ok(etcd, "describe", "quota/limits", "-n", ns).splitlines()
    assert "Spec:" in described and described[-1].startswith("Events:")
    assert ok(etcd, "delete", "quota", "limits", "other", "-n", ns).splitlines() == [
        'labquota.lab.neuroglia.io "limits" deleted',
        'labquota.lab.neuroglia.io "other" deleted',
    ]
