"""Every kubectl-style verb of `labctl`, in-process (`main([...])`) against a shared etcd.

The 20 commands a kubectl user types most, run on every kind where they make sense
(test_kubectl_users_top_commands), then each verb's flags and failure modes. Subprocesses
only where the process boundary is the point: `get -w` (a stream interrupted by Ctrl-C),
`edit` with a scripted $EDITOR and a concurrent writer, completion loaded in bash, the
traceparent a traced write records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.app import repositories
from controller.cli import main
from controller.labworker.kind import LABWORKER
from controller.observability.propagation import TRACEPARENT_ANNOTATION
from controller.resources import Condition, now_rfc3339
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, http_get, wait_until

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/labctl-verbs"
GROUP = "lab.neuroglia.io"


def worker(name: str, ns: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "LabWorker",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"labTrack": "ccna"},
    }


def pool(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "LabWorkerPool",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"pool": name}}, "spec": {"labTrack": "ccna"}},
        },
    }


def quota(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "LabQuota",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hard": {"labworkers": 50}},
    }


def event(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": f"{GROUP}/v1",
            "kind": "LabWorker",
            "name": "w",
            "namespace": ns,
            "uid": "u",
        },
        "reason": "Tested",
        "message": "a test event",
        "type": "Normal",
        "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "reportingController": "labworker-controller",
        "reportingInstance": "replica-a",
    }


KINDS = {"lw": worker, "pool": pool, "quota": quota, "ev": event}


@pytest.fixture
def env(shared_etcd: EtcdProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("ETCD", "OTEL_", "LABCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ETCD_ENDPOINTS", shared_etcd.endpoint)
    monkeypatch.setenv("ETCD_PREFIX", PREFIX)
    monkeypatch.setenv("LABCTL_CONFIG", str(tmp_path / "labctl.yaml"))
    return tmp_path


@pytest.fixture(scope="module")
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    yield c
    c.close()


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Ran({self.code}, out={self.out!r}, err={self.err!r})"


def ctl(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> Ran:
    capsys.readouterr()
    old = sys.stdin
    if stdin is not None:
        import io

        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return Ran(int(exited.value.code or 0), out, err)


def ok(capsys: pytest.CaptureFixture[str], *args: str, stdin: str | None = None) -> str:
    ran = ctl(capsys, *args, stdin=stdin)
    assert ran.code == 0, (args, ran)
    return ran.out


def manifest(tmp: Path, *docs: dict[str, Any]) -> str:
    path = tmp / f"m{abs(hash(json.dumps(docs)))}.yaml"
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    return str(path)


# -- the 20 commands, on every kind -----------------------------------------------------------

TOP_COMMANDS = [
    "apply -f",
    "apply --dry-run=server",
    "diff -f",
    "get",
    "get -o wide",
    "get -o yaml",
    "get -o json",
    "get -o name",
    "get -l / --show-labels",
    "describe",
    "label",
    "annotate",
    "patch --type merge",
    "edit (scripted EDITOR: see test_edit_*)",
    "explain",
    "api-resources",
    "scale (pool)",
    "wait --for",
    "delete",
    "config use-context / get-contexts, version, completion",
]


@pytest.mark.parametrize("short", sorted(KINDS))
def test_kubectl_users_top_commands(
    short: str, env: Path, capsys: pytest.CaptureFixture[str], client: EtcdClient
) -> None:
    ns = f"top-{short}"
    doc = KINDS[short](f"{short}-one", ns)
    name = doc["metadata"]["name"]
    path = manifest(env, doc)
    qualified = f"{doc['kind'].lower()}.{GROUP}/{name}"
    assert ok(capsys, "apply", "-f", path, "--dry-run=server").strip() == (
        f"{qualified} created (server dry run)"
    )
    assert ctl(capsys, "get", short, name, "-n", ns).code == 1  # the dry run wrote nothing
    assert ctl(capsys, "diff", "-f", path).code == 1  # differences: it does not exist yet
    assert ok(capsys, "apply", "-f", path).strip() == f"{qualified} created"
    assert ok(capsys, "apply", "-f", path).strip() == f"{qualified} unchanged"
    assert ctl(capsys, "diff", "-f", path).code == 0
    table = ok(capsys, "get", short, "-n", ns).splitlines()
    assert table[0].startswith("NAME") and "AGE" in table[0] and table[1].startswith(name)
    assert ok(capsys, "get", short, "-n", ns, "-o", "wide").splitlines()[1].startswith(name)
    assert (
        yaml.safe_load(ok(capsys, "get", short, name, "-n", ns, "-o", "yaml"))["kind"]
        == doc["kind"]
    )
    got = json.loads(ok(capsys, "get", short, name, "-n", ns, "-o", "json"))
    assert isinstance(got["metadata"]["resourceVersion"], str)
    assert ok(capsys, "get", short, "-n", ns, "-o", "name").strip() == qualified
    assert "Name:" in ok(capsys, "describe", short, name, "-n", ns)
    generation = got["metadata"]["generation"]
    assert ok(capsys, "label", short, name, "tier=gold", "-n", ns).strip() == f"{qualified} labeled"
    labelled = ok(capsys, "get", short, "-n", ns, "-l", "tier=gold", "--show-labels")
    assert "tier=gold" in labelled.splitlines()[1]
    assert (
        ok(capsys, "annotate", short, name, "note=hi", "-n", ns).strip() == f"{qualified} annotated"
    )
    after = json.loads(ok(capsys, "get", short, name, "-n", ns, "-o", "json"))
    assert after["metadata"]["generation"] == generation  # metadata never bumps generation
    assert after["metadata"]["annotations"]["note"] == "hi"
    if short != "ev":
        spec_patch = {
            "lw": {"spec": {"labTrack": "ccnp"}},
            "pool": {"spec": {"replicas": 3}},
            "quota": {"spec": {"hard": {"labworkers": 60}}},
        }[short]
        assert ok(capsys, "patch", short, name, "-n", ns, "-p", json.dumps(spec_patch)).strip() == (
            f"{qualified} patched"
        )
        patched = json.loads(ok(capsys, "get", short, name, "-n", ns, "-o", "json"))
        assert patched["metadata"]["generation"] == generation + 1
    assert "FIELDS:" in ok(capsys, "explain", short)
    assert doc["kind"] in ok(capsys, "api-resources")
    if short == "pool":
        assert (
            ok(capsys, "scale", "pool", name, "--replicas=5", "-n", ns).strip()
            == f"{qualified} scaled"
        )
    assert ok(
        capsys, "delete", short, name, "-n", ns
    ).strip() == f"{qualified.replace('/', ' ')} deleted".replace(f" {name}", f' "{name}"')
    if short != "ev":  # objects with finalizers wait for their controller; events go now
        return
    assert ok(capsys, "wait", f"{short}/{name}", "--for=delete", "-n", ns, "--timeout=10s")


# -- parsing ---------------------------------------------------------------------------------


def test_flags_anywhere_and_all_namespaces_with_a_name(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "apply", "-f", manifest(env, worker("w1", "emea"), worker("w1", "apac")))
    assert (
        ok(capsys, "get", "lw", "-n", "emea", "w1", "-o", "name").strip() == f"labworker.{GROUP}/w1"
    )
    everywhere = ok(capsys, "get", "lw", "w1", "-A").splitlines()
    assert everywhere[0].startswith("NAMESPACE")
    assert sorted(line.split()[0] for line in everywhere[1:]) == ["apac", "emea"]
    missing = ctl(capsys, "get", "lw", "nope", "-A")
    assert (
        missing.code == 1
        and missing.err.strip() == 'error: labworkers "nope" not found in any namespace'
    )
    bad = ctl(capsys, "get", "lw", "--output", "tabel")
    assert bad.code == 2 and bad.err.count("\n") == 1 and bad.err.startswith("error: ")
    version = ctl(capsys, "--version")
    assert version.code == 0 and version.out.startswith("labctl ")


def test_get_output_formats_sorting_and_field_selectors(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = "formats"
    docs = [worker("b", ns), worker("a", ns), worker("c", ns)]
    docs[2]["spec"]["labTrack"] = "devnet"
    ok(capsys, "apply", "-f", manifest(env, *docs))
    names = ok(
        capsys,
        "get",
        "lw",
        "-n",
        ns,
        "-o",
        'jsonpath={range .items[*]}{.metadata.name}{"\\n"}{end}',
    )
    assert names.split() == ["a", "b", "c"]
    by_track = ok(
        capsys,
        "get",
        "lw",
        "-n",
        ns,
        "--sort-by",
        ".spec.labTrack",
        "--no-headers",
        "-o",
        "custom-columns=NAME:.metadata.name,TRACK:.spec.labTrack",
    )
    assert [line.split() for line in by_track.splitlines()] == [
        ["a", "ccna"],
        ["b", "ccna"],
        ["c", "devnet"],
    ]
    for selector in ("spec.labTrack=devnet", "labTrack=devnet"):
        assert ok(
            capsys, "get", "lw", "-n", ns, "--field-selector", selector, "-o", "name"
        ).split() == [f"labworker.{GROUP}/c"]
    one = ok(capsys, "get", "lw", "a", "-n", ns, "-o", "jsonpath={.spec.labTrack}")
    assert one == "ccna"
    bad = ctl(capsys, "get", "lw", "-n", ns, "--sort-by", ".items[?(@.x)]")
    assert bad.code == 2 and bad.err.startswith("error: JSONPath")


# -- apply: dry runs, diff, preconditions ------------------------------------------------------


def test_apply_precondition_dry_runs_and_diff(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = "precondition"
    ok(capsys, "apply", "-f", manifest(env, worker("w", ns)))
    stored = json.loads(ok(capsys, "get", "lw", "w", "-n", ns, "-o", "json"))
    changed = {**stored, "spec": {**stored["spec"], "labTrack": "ccnp"}}
    del changed["status"]
    path = manifest(env, changed)
    assert ok(capsys, "apply", "--dry-run=client", "-f", path).strip().endswith("(dry run)")
    assert (
        ok(capsys, "apply", "--dry-run=server", "-f", path)
        .strip()
        .endswith("configured (server dry run)")
    )
    diff = ctl(capsys, "diff", "-f", path)
    assert diff.code == 1 and "-  labTrack: ccna" in diff.out and "+  labTrack: ccnp" in diff.out
    ok(capsys, "label", "lw", "w", "-n", ns, "moved=yes")  # the stored object moves on
    stale = ctl(capsys, "apply", "-f", path)
    assert stale.code == 1 and "conflict" in stale.err and stale.err.count("\n") == 1
    assert (
        json.loads(ok(capsys, "get", "lw", "w", "-n", ns, "-o", "json"))["spec"]["labTrack"]
        == "ccna"
    )
    broken = ctl(capsys, "diff", "-f", str(env / "missing.yaml"))
    assert broken.code > 1


# -- patch, label, annotate, delete -----------------------------------------------------------


def test_patch_label_annotate_delete(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns = "mutations"
    ok(capsys, "apply", "-f", manifest(env, worker("p", ns, team="a"), worker("q", ns, team="b")))
    ops = '[{"op":"replace","path":"/spec/labTrack","value":"devnet"},{"op":"test","path":"/metadata/name","value":"p"}]'
    ok(capsys, "patch", "lw/p", "-n", ns, "--type", "json", "-p", ops)
    assert ok(capsys, "get", "lw", "p", "-n", ns, "-o", "jsonpath={.spec.labTrack}") == "devnet"
    failing = ctl(
        capsys,
        "patch",
        "lw/p",
        "-n",
        ns,
        "--type",
        "json",
        "-p",
        '[{"op":"remove","path":"/spec/nothing"}]',
    )
    assert failing.code == 1 and "/spec/nothing" in failing.err
    invalid = ctl(capsys, "patch", "lw/p", "-n", ns, "-p", '{"spec":{"labTrack":""}}')
    assert invalid.code == 1 and "labTrack" in invalid.err
    refused = ctl(capsys, "label", "lw", "p", "team=c", "-n", ns)
    assert refused.code == 1 and "--overwrite" in refused.err
    ok(capsys, "label", "lw", "p", "team=c", "--overwrite", "-n", ns)
    ok(capsys, "label", "lw", "--all", "env=lab", "-n", ns)
    assert ok(capsys, "get", "lw", "-l", "env=lab,team=c", "-n", ns, "-o", "name").split() == [
        f"labworker.{GROUP}/p"
    ]
    ok(capsys, "label", "lw", "p", "team-", "-n", ns)
    assert (
        "team"
        not in json.loads(ok(capsys, "get", "lw", "p", "-n", ns, "-o", "json"))["metadata"][
            "labels"
        ]
    )
    ok(capsys, "annotate", "lw", "-l", "team=b", "owner=ops", "-n", ns)
    assert (
        ok(capsys, "get", "lw", "q", "-n", ns, "-o", "jsonpath={.metadata.annotations.owner}")
        == "ops"
    )
    assert (
        ok(capsys, "delete", "lw", "-l", "team=b", "-n", ns).strip()
        == f'labworker.{GROUP} "q" deleted'
    )
    assert (
        ok(capsys, "delete", "-f", manifest(env, worker("p", ns))).strip()
        == f'labworker.{GROUP} "p" deleted'
    )
    assert ctl(capsys, "delete", "lw", "-n", ns).code == 2  # neither names, -l nor --all


# -- explain, completion -----------------------------------------------------------------------


def test_explain_reads_the_generated_schema(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ok(capsys, "explain", "lw.spec.instance")
    assert out.startswith("KIND:       LabWorker") and "FIELD: instance <InstanceSpec>" in out
    assert "volumeSizeGb\t<integer>" in out
    rv = ok(capsys, "explain", "lw.metadata.resourceVersion")
    assert "<string>" in rv
    unknown = ctl(capsys, "explain", "lw.spec.nope")
    assert unknown.code == 1 and "labTrack" in unknown.err


def test_completion_scripts_load_in_bash(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = env / "labctl.bash"
    script.write_text(ok(capsys, "completion", "bash"), encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    call = textwrap.dedent(
        f"""
        source {script}
        COMP_WORDS=(labctl ge); COMP_CWORD=1; _labctl; echo "${{COMPREPLY[@]}}"
        COMP_WORDS=(labctl get l); COMP_CWORD=2; _labctl; echo "${{COMPREPLY[@]}}"
        COMP_WORDS=(labctl get lw --no-h); COMP_CWORD=3; _labctl; echo "${{COMPREPLY[@]}}"
        """
    )
    lines = subprocess.run(
        ["bash", "-c", call], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert lines[0].split() == ["get"]
    assert {"labworker", "labworkers", "lw", "labworkerpool", "labworkerpools"} <= set(
        lines[1].split()
    )
    assert lines[2].split() == ["--no-headers"]
    assert "complete -c labctl" in ok(capsys, "completion", "fish")
    assert "bashcompinit" in ok(capsys, "completion", "zsh")


# -- contexts ----------------------------------------------------------------------------------


def test_contexts_choose_the_etcd_and_the_namespace(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shared_etcd: EtcdProcess,
) -> None:
    password = env / "password"
    password.write_text("s3cret\n")
    (env / "labctl.yaml").write_text(
        yaml.safe_dump(
            {
                "current-context": "nowhere",
                "contexts": [
                    {"name": "nowhere", "endpoints": "http://127.0.0.1:1", "namespace": "x"},
                    {
                        "name": "here",
                        "endpoints": shared_etcd.endpoint,
                        "prefix": PREFIX,
                        "namespace": "ctx-ns",
                        "password": "inline-s3cret",
                    },
                ],
            }
        )
    )
    monkeypatch.delenv("ETCD_ENDPOINTS")
    monkeypatch.delenv("ETCD_PREFIX")
    assert ok(capsys, "config", "current-context").strip() == "nowhere"
    assert ok(capsys, "config", "use-context", "here").strip() == 'Switched to context "here".'
    listed = ok(capsys, "config", "get-contexts").splitlines()
    assert listed[0].split()[:2] == ["CURRENT", "NAME"] and listed[2].split()[:2] == ["*", "here"]
    view = ok(capsys, "config", "view")
    assert "inline-s3cret" not in view and "REDACTED" in view
    (env / "labctl.yaml").write_text(
        (env / "labctl.yaml").read_text().replace("inline-s3cret", "").replace("password: ''\n", "")
    )
    ok(capsys, "apply", "-f", manifest(env, {**worker("c", "ignored"), "metadata": {"name": "c"}}))
    assert ok(capsys, "get", "lw", "-o", "name").strip() == f"labworker.{GROUP}/c"  # ctx-ns
    assert (
        ok(capsys, "get", "lw", "c", "-n", "ctx-ns", "-o", "name").strip() == f"labworker.{GROUP}/c"
    )
    # an environment variable beats the context; etcdctl's names are understood
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "http://127.0.0.1:1")
    unreachable = ctl(capsys, "get", "lw", "--command-timeout=1s")
    assert unreachable.code == 1 and unreachable.err.startswith("error: etcd")
    assert ok(capsys, "get", "lw", "--endpoints", shared_etcd.endpoint, "-o", "name").strip()
    missing = ctl(capsys, "get", "lw", "--context", "nope")
    assert missing.code == 1 and "context 'nope' not found" in missing.err


# -- processes: get -w, edit, traceparent ------------------------------------------------------


def _env(shared_etcd: EtcdProcess, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ETCD", "LABCTL_"))}
    env.update(
        ETCD_ENDPOINTS=shared_etcd.endpoint,
        ETCD_PREFIX=PREFIX,
        PYTHONPATH=str(REPO),
        LABCTL_CONFIG=str(tmp / "none.yaml"),
        **extra,
    )
    return env


def test_get_watch_prints_the_changed_rows(
    env: Path, capsys: pytest.CaptureFixture[str], shared_etcd: EtcdProcess
) -> None:
    ns = "watched"
    ok(capsys, "apply", "-f", manifest(env, worker("before", ns)))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "get",
            "lw",
            "-n",
            ns,
            "-w",
            "--output-watch-events",
        ],
        env=_env(shared_etcd, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].split()[:2] == ["EVENT", "NAME"] and lines[1].split()[:2] == [
            "ADDED",
            "before",
        ]
        ok(capsys, "apply", "-f", manifest(env, worker("after", ns)))
        assert proc.stdout.readline().split()[:2] == ["ADDED", "after"]
        ok(capsys, "label", "lw", "before", "x=y", "-n", ns)
        assert proc.stdout.readline().split()[:2] == ["MODIFIED", "before"]
        ok(capsys, "delete", "lw", "after", "-n", ns)
        assert proc.stdout.readline().split()[:2] == ["DELETED", "after"]  # no finalizers
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err


EDITOR = """\
import pathlib, subprocess, sys
path = pathlib.Path(sys.argv[1])
text = path.read_text()
calls = pathlib.Path(sys.argv[0]).with_suffix(".calls")
n = int(calls.read_text()) if calls.exists() else 0
calls.write_text(str(n + 1))
if n == 0:
    # the user changes the track while someone else labels the object
    path.write_text(text.replace("labTrack: ccna", "labTrack: ccnp"))
    subprocess.run([sys.executable, "-m", "controller.cli", "label", "lw", "e", "-n", "edits",
                    "concurrent=yes"], check=True)
else:
    assert "changed by someone else" in text, text
    assert "labTrack: ccnp" in text and "concurrent: 'yes'" in text, text
    path.write_text(text)  # saved as re-opened
"""


def test_edit_conflict_reopens_with_the_fresh_object(
    env: Path, capsys: pytest.CaptureFixture[str], shared_etcd: EtcdProcess
) -> None:
    ok(capsys, "apply", "-f", manifest(env, worker("e", "edits")))
    editor = env / "editor.py"
    editor.write_text(EDITOR)
    res = subprocess.run(
        [sys.executable, "-m", "controller.cli", "edit", "lw/e", "-n", "edits"],
        env=_env(shared_etcd, env, EDITOR=f"{sys.executable} {editor}"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(f"labworker.{GROUP}/e edited")
    assert (env / "editor.calls").read_text() == "2"
    final = json.loads(ok(capsys, "get", "lw", "e", "-n", "edits", "-o", "json"))
    assert (
        final["spec"]["labTrack"] == "ccnp" and final["metadata"]["labels"]["concurrent"] == "yes"
    )


def test_a_traced_write_records_its_traceparent_and_an_untraced_one_nothing(
    env: Path, capsys: pytest.CaptureFixture[str], shared_etcd: EtcdProcess, client: EtcdClient
) -> None:
    ns = "traced"
    ok(capsys, "apply", "-f", manifest(env, worker("t", ns)))
    repo = repositories(client, PREFIX).for_kind(LABWORKER)
    plain = repo.get(ns, "t")
    assert plain is not None and TRACEPARENT_ANNOTATION not in plain.metadata.annotations
    res = subprocess.run(
        [sys.executable, "-m", "controller.cli", "label", "lw", "t", "traced=yes", "-n", ns],
        env=_env(shared_etcd, env, OTEL_TRACES_EXPORTER="console"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    traced = repo.get(ns, "t")
    assert traced is not None and traced.metadata.generation == plain.metadata.generation
    traceparent = traced.metadata.annotations[TRACEPARENT_ANNOTATION]
    trace_id = traceparent.split("-")[1]
    assert f'"trace_id": "0x{trace_id}"' in res.stdout and '"name": "labctl label"' in res.stdout


def _watchers(etcd: EtcdProcess) -> int:
    base = etcd.endpoint if "://" in etcd.endpoint else f"http://{etcd.endpoint}"
    _, body = http_get(f"{base}/metrics")
    for line in body.decode().splitlines():
        if line.startswith("etcd_debugging_mvcc_watcher_total "):
            return int(float(line.split()[1]))
    raise AssertionError("etcd exports no etcd_debugging_mvcc_watcher_total")


def test_wait_watches_until_the_condition_holds(
    env: Path, capsys: pytest.CaptureFixture[str], client: EtcdClient, shared_etcd: EtcdProcess
) -> None:
    ns = "waits"
    ok(capsys, "apply", "-f", manifest(env, worker("w", ns)))
    repo = repositories(client, PREFIX).for_kind(LABWORKER)
    baseline = _watchers(shared_etcd)

    def become_ready() -> None:
        # Once labctl watches (etcd counts one more watcher), the status changes: the wait
        # can only succeed through its watch, never through its first read.
        wait_until(lambda: _watchers(shared_etcd) > baseline, what="labctl wait watching")
        ready = Condition(type="Ready", status="True", last_transition_time=now_rfc3339())
        repo.update_status(ns, "w", lambda w: setattr(w.status, "conditions", [ready]))

    writer = threading.Thread(target=become_ready)
    writer.start()
    try:
        out = ok(capsys, "wait", "lw/w", "-n", ns, "--for=condition=Ready", "--timeout=60s")
    finally:
        writer.join()
    assert out.strip() == f"labworker.{GROUP}/w condition met"
    late = ctl(capsys, "wait", "lw/w", "-n", ns, "--for=condition=Licensed", "--timeout=0")
    assert late.code == 1 and "timed out" in late.err and "no such condition" in late.err
