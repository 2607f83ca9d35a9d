"""The `sim` provider on a real etcd: idempotency by uid, step timing on an injected clock,
fault injection through annotations and failure_rate, state shared by replicas, lost answers
from etcd, the audit log, and the plug-in that builds it."""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.config import ConfigError, add_arguments, load
from controller.labworker import plugins, sim_plugin
from controller.labworker.model import InstanceSpec
from controller.labworker.provider import (
    AnnotationAware,
    InstanceState,
    LabProvider,
    ProviderError,
    ProviderFatalError,
)
from controller.labworker.sim import (
    FAIL_ANNOTATION,
    HOSTED_LABS_ANNOTATION,
    NO_LICENSE_ANNOTATION,
    SimProvider,
    instances_prefix,
    read_audit_log,
)
from controller.labworker.wiring import build_provider
from controller.storage import EtcdClient, connect
from tests.etcdproc import EtcdProcess, free_port, wait_until
from tests.faultproxy import FaultProxy

SPEC = InstanceSpec()
STEP = 5.0


class FakeTime:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(shared_etcd: EtcdProcess) -> Iterator[EtcdClient]:
    c = connect(shared_etcd.endpoint)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def prefix() -> str:
    """A fresh cloud per test on the module's one etcd."""
    return f"/sim-test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sim(client: EtcdClient, prefix: str, clock: FakeTime) -> SimProvider:
    return SimProvider(client, prefix, step_delay=STEP, clock=clock, seed=1)


def test_it_implements_the_provider_protocols(sim: SimProvider) -> None:
    assert isinstance(sim, LabProvider)
    assert isinstance(sim, AnnotationAware)


# -- idempotency ----------------------------------------------------------------------------


def test_provisioning_twice_with_one_uid_creates_one_instance(
    sim: SimProvider, shared_etcd: EtcdProcess, prefix: str
) -> None:
    first = sim.provision("uid-a", "w-a", SPEC)
    again = sim.provision("uid-a", "w-a", SPEC)
    other = sim.provision("uid-b", "w-b", SPEC)
    assert again.instance_id == first.instance_id
    assert other.instance_id != first.instance_id
    assert sim.created() == {"uid-a": [first.instance_id], "uid-b": [other.instance_id]}
    assert sim.instances_per_uid() == {"uid-a": 1, "uid-b": 1}
    stored = shared_etcd.get_raw(instances_prefix(prefix) + "uid-a")
    assert stored is not None
    assert json.loads(stored)["instanceId"] == first.instance_id


def test_a_terminated_instance_is_returned_again_not_replaced(
    sim: SimProvider, clock: FakeTime
) -> None:
    first = sim.provision("uid-a", "w-a", SPEC)
    sim.terminate("uid-a")
    clock.advance(STEP)
    again = sim.provision("uid-a", "w-a", SPEC)
    assert again.instance_id == first.instance_id
    assert again.state is InstanceState.TERMINATED
    assert sim.instances_per_uid() == {"uid-a": 1}


def test_concurrent_provisioning_of_one_uid_on_two_replicas_creates_one_instance(
    client: EtcdClient, shared_etcd: EtcdProcess, prefix: str, clock: FakeTime
) -> None:
    other_client = connect(shared_etcd.endpoint)
    replicas = [
        SimProvider(client, prefix, step_delay=0, clock=clock),
        SimProvider(other_client, prefix, step_delay=0, clock=clock),
    ]
    barrier = threading.Barrier(8)
    ids: list[str] = []
    lock = threading.Lock()

    def provision(sim: SimProvider) -> None:
        barrier.wait()
        instance = sim.provision("uid-a", "w-a", SPEC)
        with lock:
            ids.append(instance.instance_id)

    threads = [threading.Thread(target=provision, args=(replicas[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_client.close()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert replicas[0].created() == {"uid-a": ids[:1]}


def test_lost_responses_never_create_a_second_instance(
    client: EtcdClient, prefix: str, clock: FakeTime
) -> None:
    sim = SimProvider(client, prefix, step_delay=0, failure_rate=0.6, clock=clock, seed=7)
    failures = 0
    for number in range(20):
        for _ in range(200):
            try:
                sim.provision(f"uid-{number}", f"w-{number}", SPEC)
                break
            except ProviderError:
                failures += 1
        else:
            pytest.fail("provision never succeeded at a 60% failure rate")
    assert failures > 0
    assert sim.instances_per_uid() == {f"uid-{n}": 1 for n in range(20)}


# -- two replicas -----------------------------------------------------------------------------


def test_two_replicas_see_one_cloud(
    client: EtcdClient, shared_etcd: EtcdProcess, prefix: str, clock: FakeTime
) -> None:
    """What the old leader did is what the new leader finds: the failover bug of issue 7."""
    other_client = connect(shared_etcd.endpoint)
    old_leader = SimProvider(client, prefix, step_delay=STEP, clock=clock)
    new_leader = SimProvider(other_client, prefix, step_delay=STEP, clock=clock)
    created = old_leader.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    assert old_leader.license("uid-a", "cml")

    described = new_leader.describe("uid-a")
    assert described is not None
    assert (described.instance_id, described.state) == (created.instance_id, "running")
    assert described.address == old_leader.describe("uid-a").address  # type: ignore[union-attr]
    health = new_leader.host_health("uid-a")
    assert health.ready and health.licensed
    assert new_leader.provision("uid-a", "w-a", SPEC).instance_id == created.instance_id

    new_leader.stop("uid-a")
    seen = old_leader.describe("uid-a")
    assert seen is not None and seen.state is InstanceState.STOPPING
    old_leader.stop("uid-a")  # already stopping, whoever stopped it: no second step
    clock.advance(STEP)
    seen = new_leader.describe("uid-a")
    assert seen is not None and seen.state is InstanceState.STOPPED
    other_client.close()


def test_addresses_are_distinct_across_replicas(
    client: EtcdClient, shared_etcd: EtcdProcess, prefix: str
) -> None:
    other_client = connect(shared_etcd.endpoint)
    replicas = [
        SimProvider(client, prefix, step_delay=0),
        SimProvider(other_client, prefix, step_delay=0),
    ]
    addresses = {replicas[n % 2].provision(f"u{n}", f"w{n}", SPEC).address for n in range(20)}
    other_client.close()
    assert len(addresses) == 20 and None not in addresses


# -- timing ---------------------------------------------------------------------------------


def test_an_instance_runs_one_step_after_provision_and_its_host_one_step_later(
    sim: SimProvider, clock: FakeTime
) -> None:
    created = sim.provision("uid-a", "w-a", SPEC)
    assert created.state is InstanceState.PENDING
    assert created.address is None
    assert created.ready_in == pytest.approx(STEP)

    clock.advance(STEP - 1)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.PENDING
    assert described.ready_in == pytest.approx(1.0)

    clock.advance(1)
    running = sim.describe("uid-a")
    assert running is not None and running.state is InstanceState.RUNNING
    assert running.address and running.ready_in is None

    booting = sim.host_health("uid-a")
    assert not booting.ready and booting.ready_in == pytest.approx(STEP)
    clock.advance(STEP)
    healthy = sim.host_health("uid-a")
    assert healthy.ready and healthy.version and healthy.hosted_labs == 0


def test_zero_step_delay_converges_at_once(
    client: EtcdClient, prefix: str, clock: FakeTime
) -> None:
    sim = SimProvider(client, prefix, step_delay=0, clock=clock)
    assert sim.provision("uid-a", "w-a", SPEC).state is InstanceState.RUNNING
    assert sim.host_health("uid-a").ready
    sim.stop("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPED
    sim.terminate("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.TERMINATED


def test_stop_and_start_take_a_step_each(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    sim.stop("uid-a")
    sim.stop("uid-a")  # idempotent: does not restart the clock
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPING
    assert not sim.host_health("uid-a").ready
    with pytest.raises(ProviderError, match="still stopping"):
        sim.start("uid-a")

    clock.advance(STEP)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.STOPPED
    assert described.address is None

    sim.start("uid-a")
    sim.start("uid-a")
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.PENDING
    clock.advance(STEP)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.RUNNING


def test_terminate_is_idempotent_and_fine_without_an_instance(
    sim: SimProvider, clock: FakeTime
) -> None:
    sim.terminate("never-provisioned")
    assert sim.describe("never-provisioned") is None

    sim.provision("uid-a", "w-a", SPEC)
    sim.terminate("uid-a")
    clock.advance(STEP - 1)
    sim.terminate("uid-a")  # does not push completion further out
    clock.advance(1)
    described = sim.describe("uid-a")
    assert described is not None and described.state is InstanceState.TERMINATED
    with pytest.raises(ProviderFatalError, match="terminated"):
        sim.start("uid-a")


@pytest.mark.parametrize("call", ["start", "stop"])
def test_operations_on_a_never_provisioned_uid_are_fatal(sim: SimProvider, call: str) -> None:
    with pytest.raises(ProviderFatalError, match="no instance"):
        getattr(sim, call)("nobody")


# -- faults and annotations -------------------------------------------------------------------


def test_fail_annotation_makes_exactly_the_named_calls_fatal(
    sim: SimProvider, clock: FakeTime
) -> None:
    sim.configure("uid-a", {FAIL_ANNOTATION: "provision"})
    with pytest.raises(ProviderFatalError, match="provision"):
        sim.provision("uid-a", "w-a", SPEC)
    assert sim.instances_per_uid() == {}

    sim.configure("uid-a", {FAIL_ANNOTATION: "health, stop"})
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    with pytest.raises(ProviderFatalError):
        sim.host_health("uid-a")
    with pytest.raises(ProviderFatalError):
        sim.stop("uid-a")
    sim.start("uid-a")  # not named: fine

    sim.configure("uid-a", {"unrelated/annotation": "x"})
    assert sim.host_health("uid-a").ready


@pytest.mark.parametrize("call", ["start", "terminate"])
def test_fail_annotation_on_start_and_terminate(sim: SimProvider, call: str) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    sim.configure("uid-a", {FAIL_ANNOTATION: call})
    with pytest.raises(ProviderFatalError, match=call):
        getattr(sim, call)("uid-a")


def test_hosted_labs_annotation(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(2 * STEP)
    sim.configure("uid-a", {HOSTED_LABS_ANNOTATION: "3"})
    assert sim.host_health("uid-a").hosted_labs == 3
    sim.configure("uid-a", {HOSTED_LABS_ANNOTATION: "lots"})
    assert sim.host_health("uid-a").hosted_labs == 0
    sim.configure("uid-a", {})
    assert sim.host_health("uid-a").hosted_labs == 0


def test_licensing(sim: SimProvider, clock: FakeTime) -> None:
    sim.provision("uid-a", "w-a", SPEC)
    clock.advance(STEP)
    with pytest.raises(ProviderError, match="not up yet"):
        sim.license("uid-a", "secret")
    clock.advance(STEP)

    sim.configure("uid-a", {NO_LICENSE_ANNOTATION: "true"})
    assert sim.license("uid-a", "secret") is False
    assert not sim.host_health("uid-a").licensed

    sim.configure("uid-a", {})
    assert sim.license("uid-a", "secret") is True
    assert sim.host_health("uid-a").licensed

    sim.stop("uid-a")
    clock.advance(STEP)
    sim.start("uid-a")
    clock.advance(2 * STEP)
    assert not sim.host_health("uid-a").licensed, "a restarted host needs a new license"


def test_failure_rate_one_fails_every_call_transiently(
    client: EtcdClient, prefix: str, clock: FakeTime
) -> None:
    sim = SimProvider(client, prefix, step_delay=0, failure_rate=1.0, clock=clock)
    with pytest.raises(ProviderError, match="injected"):
        sim.provision("uid-a", "w-a", SPEC)
    with pytest.raises(ProviderError):
        sim.describe("uid-a")
    assert sim.instances_per_uid() == {}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [({"step_delay": -1}, "step_delay"), ({"failure_rate": 1.5}, "failure_rate")],
)
def test_invalid_settings_are_refused(
    client: EtcdClient, settings: dict[str, float], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        SimProvider(client, "/x", **settings)  # type: ignore[arg-type]


# -- etcd trouble -----------------------------------------------------------------------------


def test_etcd_unreachable_is_a_transient_provider_error_naming_the_cause(prefix: str) -> None:
    nowhere = connect(f"127.0.0.1:{free_port()}", timeout=0.3)
    sim = SimProvider(nowhere, prefix, step_delay=0)
    for call in (
        lambda: sim.provision("uid-a", "w-a", SPEC),
        lambda: sim.describe("uid-a"),
        lambda: sim.stop("uid-a"),
        lambda: sim.host_health("uid-a"),
    ):
        with pytest.raises(ProviderError, match=r"state in etcd is unreachable \(Unavailable"):
            call()
    nowhere.close()


def test_an_unreadable_instance_document_is_reported_with_its_key(
    sim: SimProvider, shared_etcd: EtcdProcess, prefix: str
) -> None:
    key = instances_prefix(prefix) + "uid-bad"
    shared_etcd.put(key, b"{not json")
    with pytest.raises(ProviderError, match=key):
        sim.describe("uid-bad")
    assert shared_etcd.get_raw(key) == b"{not json", "never rewritten"


def test_a_create_whose_answer_is_lost_is_re_read_not_repeated(
    shared_etcd: EtcdProcess, client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    """etcd applies the create, the answer never arrives: the sim finds its own instance."""
    audit = tmp_path / "audit.jsonl"
    key = instances_prefix(prefix) + "uid-a"
    with FaultProxy(shared_etcd.endpoint) as proxy:
        through_proxy = connect(proxy.endpoint, timeout=1.0)
        sim = SimProvider(through_proxy, prefix, step_delay=0, audit_log=audit, identity="r1")
        assert sim.describe("uid-a") is None  # the connection is open and healthy
        proxy.drop_responses()
        answers: list[object] = []
        worker = threading.Thread(
            target=lambda: answers.append(sim.provision("uid-a", "w-a", SPEC))
        )
        worker.start()
        wait_until(lambda: client.get(key) is not None, timeout=10, what="the create applied")
        proxy.pass_through()  # the create's answer is already lost; the re-read gets through
        worker.join(10)
        through_proxy.close()
    assert len(answers) == 1, "provision raised instead of re-reading"
    stored = json.loads(client.get(key).value)  # type: ignore[union-attr]
    assert answers[0].instance_id == stored["instanceId"]  # type: ignore[attr-defined]
    assert stored["created"] == [stored["instanceId"]]
    (entry,) = read_audit_log(audit)
    assert (entry["call"], entry["effect"], entry["outcome"]) == ("provision", "created", "ok")


def test_a_stop_whose_answer_is_lost_is_re_read_and_not_applied_twice(
    shared_etcd: EtcdProcess, client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    key = instances_prefix(prefix) + "uid-a"
    with FaultProxy(shared_etcd.endpoint) as proxy:
        through_proxy = connect(proxy.endpoint, timeout=1.0)
        sim = SimProvider(through_proxy, prefix, step_delay=STEP, audit_log=audit)
        sim.provision("uid-a", "w-a", SPEC)
        armed = [True]

        def drop_after_the_read(method: str, seconds: float, error: BaseException | None) -> None:
            if armed and method == "/kv/range":  # stop read its instance: lose the write's answer
                armed.clear()
                proxy.drop_responses()

        through_proxy.request_hooks.append(drop_after_the_read)
        errors: list[BaseException] = []

        def stop() -> None:
            try:
                sim.stop("uid-a")
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=stop)
        worker.start()

        def stopped() -> dict[str, object] | None:
            kv = client.get(key)
            doc = json.loads(kv.value) if kv else {}
            return doc if doc.get("target") == "stopped" else None

        applied = wait_until(stopped, timeout=10, what="the stop applied")
        proxy.pass_through()
        worker.join(10)
        through_proxy.close()
    assert not errors
    assert stopped() == applied, "the stop was applied once: its step was not restarted"
    entries = read_audit_log(audit)
    assert [(e["call"], e["effect"]) for e in entries] == [
        ("provision", "created"),
        ("stop", "maybe-changed"),
    ]


def test_a_create_whose_answer_and_re_read_are_lost_fails_then_returns_the_instance(
    shared_etcd: EtcdProcess, client: EtcdClient, prefix: str
) -> None:
    key = instances_prefix(prefix) + "uid-a"
    with FaultProxy(shared_etcd.endpoint) as proxy:
        through_proxy = connect(proxy.endpoint, timeout=0.5)
        sim = SimProvider(through_proxy, prefix, step_delay=0)
        proxy.drop_responses()
        with pytest.raises(ProviderError, match="unreachable"):
            sim.provision("uid-a", "w-a", SPEC)
        assert client.get(key) is not None, "the create was applied all the same"
        proxy.pass_through()
        again = sim.provision("uid-a", "w-a", SPEC)
        through_proxy.close()
    assert SimProvider(client, prefix).created() == {"uid-a": [again.instance_id]}


# -- audit log --------------------------------------------------------------------------------


def test_the_audit_log_has_one_line_per_side_effecting_call_of_every_replica(
    client: EtcdClient, prefix: str, clock: FakeTime, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    a = SimProvider(client, prefix, step_delay=0, identity="replica-a", audit_log=audit)
    b = SimProvider(client, prefix, step_delay=0, identity="replica-b", audit_log=audit)
    created = a.provision("uid-1", "w-1", SPEC)
    b.provision("uid-1", "w-1", SPEC)
    b.describe("uid-1")  # reads are not audited
    b.host_health("uid-1")
    b.license("uid-1", "cml")
    a.stop("uid-1")
    a.stop("uid-1")
    b.configure("uid-1", {FAIL_ANNOTATION: "start"})
    with pytest.raises(ProviderFatalError):
        b.start("uid-1")
    a.terminate("nobody")
    with pytest.raises(ProviderFatalError):
        a.start("nobody")

    entries = read_audit_log(audit)
    assert [(e["identity"], e["call"], e["uid"], e["outcome"], e["effect"]) for e in entries] == [
        ("replica-a", "provision", "uid-1", "ok", "created"),
        ("replica-b", "provision", "uid-1", "ok", "existing"),
        ("replica-b", "license", "uid-1", "ok", "changed"),
        ("replica-a", "stop", "uid-1", "ok", "changed"),
        ("replica-a", "stop", "uid-1", "ok", "unchanged"),
        ("replica-b", "start", "uid-1", "fatal", "none"),
        ("replica-a", "terminate", "nobody", "ok", "no-instance"),
        ("replica-a", "start", "nobody", "fatal", "none"),
    ]
    assert all(e["instanceId"] == created.instance_id for e in entries[:5])
    assert "injected by annotation" in entries[5]["error"]
    assert all(e["time"] <= e["end"] for e in entries)


def test_the_audit_log_of_many_threads_is_whole_lines(
    client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    sims = [
        SimProvider(client, prefix, step_delay=0, identity=f"r{n}", audit_log=audit)
        for n in range(2)
    ]
    threads = [
        threading.Thread(
            target=lambda n=n: [sims[n % 2].provision(f"u{n}-{i}", "w", SPEC) for i in range(10)]
        )
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = read_audit_log(audit)  # json.loads of every line: none torn
    assert len(entries) == 80
    assert {e["uid"] for e in entries} == {f"u{n}-{i}" for n in range(8) for i in range(10)}


def test_an_unwritable_audit_log_does_not_fail_calls(
    client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    sim = SimProvider(client, prefix, step_delay=0, audit_log=tmp_path / "missing-dir" / "a")
    assert sim.provision("uid-a", "w-a", SPEC).state is InstanceState.RUNNING


# -- the plug-in ----------------------------------------------------------------------------


def test_the_sim_plugin_is_installed_under_its_entry_point() -> None:
    assert plugins.find("sim") is sim_plugin.PLUGIN
    assert {s.env for s in sim_plugin.PLUGIN.settings} == {
        "LAB_SIM_DELAY",
        "LAB_SIM_FAILURE_RATE",
        "LAB_SIM_SEED",
        "LAB_SIM_AUDIT_LOG",
    }


def _context(client: EtcdClient, prefix: str, **values: str | None) -> plugins.ProviderContext:
    resolved = plugins.resolve_settings(sim_plugin.PLUGIN, {}, None) | values
    return plugins.ProviderContext(settings=resolved, client=client, prefix=prefix, identity="me")


def test_the_plugin_builds_the_simulator_from_its_settings(
    client: EtcdClient, prefix: str, tmp_path: Path
) -> None:
    default = sim_plugin.build(_context(client, prefix))
    assert (default.step_delay, default.failure_rate, default.audit_log) == (2.0, 0.0, None)
    sim = sim_plugin.build(
        _context(
            client,
            prefix,
            LAB_SIM_DELAY="0.5",
            LAB_SIM_FAILURE_RATE="0.1",
            LAB_SIM_SEED="42",
            LAB_SIM_AUDIT_LOG=str(tmp_path / "a.jsonl"),
        )
    )
    assert (sim.step_delay, sim.failure_rate, sim.identity) == (0.5, 0.1, "me")
    assert sim.audit_log is not None and sim.audit_log.path == tmp_path / "a.jsonl"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LAB_SIM_DELAY", "fast"),
        ("LAB_SIM_DELAY", "-1"),
        ("LAB_SIM_FAILURE_RATE", "2"),
        ("LAB_SIM_SEED", "0.5"),
    ],
)
def test_bad_plugin_settings_are_config_errors_naming_the_variable(
    client: EtcdClient, prefix: str, variable: str, value: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        sim_plugin.build(_context(client, prefix, **{variable: value}))
    with pytest.raises(ConfigError, match=f"{variable} / --{variable.lower().replace('_', '-')}"):
        build_provider(load(None, {variable: value}), client, "me")


def test_a_flag_beats_the_environment_which_beats_the_default(client: EtcdClient) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    env = {"LAB_SIM_DELAY": "7", "LAB_SIM_FAILURE_RATE": "0.125"}
    settings = load(parser.parse_args(["--lab-sim-delay", "0.25"]), env)
    sim = build_provider(settings, client, "me")
    assert isinstance(sim, SimProvider)
    assert (sim.step_delay, sim.failure_rate, sim.audit_log) == (0.25, 0.125, None)
    assert "0.125" not in repr(settings) and "LAB_SIM_FAILURE_RATE" in repr(settings)
    assert "plugin_settings" not in settings.public()["provider"]


def test_an_unknown_provider_is_a_config_error_listing_the_installed_ones(
    client: EtcdClient,
) -> None:
    with pytest.raises(ConfigError, match=r"'nimbus'.*installed: .*sim"):
        build_provider(load(None, {"LAB_PROVIDER": "nimbus"}), client, "me")


def test_a_terminated_record_expires_with_its_lease_like_ec2_s_hour(
    sim: SimProvider, client: EtcdClient, prefix: str
) -> None:
    from controller.labworker.sim import TERMINATED_RETENTION

    sim.provision("uid-ttl", "w", InstanceSpec())
    key = instances_prefix(prefix) + "uid-ttl"
    running = client.get(key)
    assert running is not None and running.lease == 0, "a live instance never expires"
    sim.terminate("uid-ttl")
    terminated = client.get(key)
    assert terminated is not None and terminated.lease != 0
    remaining = client.lease_time_to_live(terminated.lease)
    assert TERMINATED_RETENTION - 60 < remaining <= TERMINATED_RETENTION + 10
