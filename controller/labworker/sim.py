"""`sim`: a simulated cloud and host API for demos, tests and benchmarks.

The simulated cloud lives in etcd, not in the controller's memory, because the controller runs
as several replicas: after a leader failover the new leader must find the instances the old
one created, exactly as it would in a real cloud. Each worker uid owns one key,
`<ETCD_PREFIX>/providers/sim/instances/<uid>`, holding a JSON document; every change is a
transaction comparing that key's `mod_revision` (a create compares "absent"), so replicas and
threads racing on one uid cannot both win, and provision stays exactly-once per uid (the uid
is the client token): a lost create is re-read, never blindly re-applied.

Operations never sleep. Each one records *when* it completes (`step_delay` seconds after it
was issued, in wall-clock time, because another process reads it) and every read reports the
state as of now, so a thousand workers waiting on the simulator cost no threads; the
reconciler looks again when `ready_in` says to.

Faults are injected two ways. `failure_rate` makes any call raise a transient
`ProviderError`; on calls with side effects the failure happens either before the effect or
after it (the "response lost" case), which is exactly what the uid-as-client-token rule has
to survive. Per-worker annotations (handed over through `configure`, kept per process: every
replica is handed them before each round of calls) make one worker's calls fail for good,
change what its host reports, or withhold its license.

`created` in each document lists every instance id ever created for the uid: the record an
end-to-end test reads to prove that no worker got two instances. With an audit log path,
every side-effecting call is also appended as one JSON line naming the caller (CloudTrail
style), so a test can prove which replica called the cloud, and when.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from controller.labworker.model import InstanceSpec
from controller.labworker.provider import (
    HostHealth,
    Instance,
    InstanceState,
    ProviderError,
    ProviderFatalError,
)
from controller.resources import DEFAULT_NAMESPACE
from controller.storage import (
    Compare,
    EtcdClient,
    KeyValue,
    Op,
    RangeResult,
    StorageError,
    Unavailable,
)

log = logging.getLogger("controller.labworker.sim")

DEFAULT_STEP_DELAY: Final = 2.0
"""Seconds per simulated step when LAB_SIM_DELAY is not set."""

ANNOTATION_PREFIX: Final = "sim.lab.neuroglia.io/"
FAIL_ANNOTATION: Final = ANNOTATION_PREFIX + "fail"
"""Comma-separated calls that raise ProviderFatalError: provision, start, stop, terminate, health."""
HOSTED_LABS_ANNOTATION: Final = ANNOTATION_PREFIX + "hosted-labs"
"""How many labs the host reports running (an integer)."""
NO_LICENSE_ANNOTATION: Final = ANNOTATION_PREFIX + "no-license"
""""true": `license` answers that no license is available."""

FAILABLE_CALLS: Final = frozenset({"provision", "start", "stop", "terminate", "health"})
SIM_HOST_VERSION: Final = "2.7.2-sim"
MAX_CAS_ATTEMPTS: Final = 20
"""Conflicts on one uid's key come from replicas or threads racing on the same worker, which
settle in a round or two; a key still changing after this many re-reads is reported as a
transient error and retried by the reconciler's backoff instead of spinning here."""
MAX_LOST_ANSWERS: Final = 2
"""Writes whose answer was lost, re-read and tried again within one call. Each one has
already waited out an etcd deadline, so more would only hold a reconcile worker longer."""
TERMINATED_RETENTION: Final = 3600
"""Seconds a terminated instance's record is kept (on an etcd lease, so etcd deletes it),
as EC2 keeps showing terminated instances for about an hour: long enough for a retried
terminate or describe to find it, without the record growing forever."""


def instances_prefix(etcd_prefix: str) -> str:
    """Where the simulated cloud keeps its instances: one key per worker uid below this."""
    return f"{etcd_prefix.rstrip('/')}/providers/sim/instances/"


@dataclass(slots=True)
class _SimInstance:
    """One simulated instance. `target` is where the last operation leads; `done_at` (wall
    clock) is when it gets there. The host boots one more step after the instance runs.

    `address` is not stored: it is derived from the key's create revision, which is unique in
    the etcd cluster, so no two instances share one without a shared counter to contend on.
    """

    uid: str
    name: str
    instance_id: str
    target: InstanceState  # RUNNING, STOPPED or TERMINATED
    done_at: float
    licensed: bool = False
    created: list[str] = field(default_factory=list)
    address: str = ""

    def state(self, now: float) -> InstanceState:
        if now >= self.done_at:
            return self.target
        return _IN_PROGRESS[self.target]

    def view(self, now: float) -> Instance:
        state = self.state(now)
        return Instance(
            instance_id=self.instance_id,
            state=state,
            address=self.address if state is InstanceState.RUNNING else None,
            ready_in=self.done_at - now if now < self.done_at else None,
        )

    def move(self, target: InstanceState, now: float, step_delay: float) -> None:
        self.target = target
        self.done_at = now + step_delay
        if target is not InstanceState.RUNNING:
            self.licensed = False  # a restarted host must be licensed again

    def encode(self) -> bytes:
        document = {
            "uid": self.uid,
            "name": self.name,
            "instanceId": self.instance_id,
            "target": self.target.value,
            "doneAt": self.done_at,
            "licensed": self.licensed,
            "created": self.created,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, kv: KeyValue) -> _SimInstance:
        try:
            raw = json.loads(kv.value)
            instance = cls(
                uid=str(raw["uid"]),
                name=str(raw["name"]),
                instance_id=str(raw["instanceId"]),
                target=InstanceState(raw["target"]),
                done_at=float(raw["doneAt"]),
                licensed=bool(raw.get("licensed", False)),
                created=[str(i) for i in raw["created"]],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(
                f"sim: the simulated instance at etcd key {kv.key} is unreadable ({exc}); "
                "fix or delete that key"
            ) from None
        instance.address = _address(kv.create_revision)
        return instance


def _address(create_revision: int) -> str:
    r = create_revision
    return f"10.{(r >> 16) & 255}.{(r >> 8) & 255}.{r & 255}"


_IN_PROGRESS: Final = {
    InstanceState.RUNNING: InstanceState.PENDING,
    InstanceState.STOPPED: InstanceState.STOPPING,
    InstanceState.TERMINATED: InstanceState.TERMINATING,
}


@dataclass(slots=True)
class _AuditRecord:
    """What one call did, filled in as it goes; written as one line when it ends."""

    effect: str = "none"
    instance_id: str | None = None


class SimAuditLog:
    """Appends one JSON line per side-effecting call to a file, like a cloud's audit trail.

    The line is written as soon as the cloud has acted (or refused), before the answer goes
    back: a failure injected *after* the effect models a response lost on the way, so the
    trail records the call as done, as a real cloud's would. A process SIGKILLed in the
    microseconds between the etcd write and the line loses that line; the instance documents
    in etcd (`created`) stay the authoritative record.

    A line: `time` and `end` (wall clock, seconds since the epoch, when the call began and
    ended), `identity` (the replica), `call`, `uid`, `outcome` (ok, transient, fatal),
    `effect` (created, existing, changed, unchanged, maybe-changed, no-instance, no-license,
    none), `instanceId` when known, `error` when the call failed.

    Each line is one `write(2)` on a descriptor opened with O_APPEND, so lines from several
    threads, and from several replicas sharing the file, never interleave; there is no buffer
    to flush and nothing to close. Opening per line costs microseconds beside the etcd round
    trip of the call itself. A failing write is logged once and never fails the call: the
    audit trail observes the cloud, it is not part of it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._warned = False

    def append(self, entry: Mapping[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.error(
                    "sim: cannot append to the audit log %s (%s); calls go on unaudited",
                    self.path,
                    exc,
                )


def read_audit_log(path: Path | str) -> list[dict[str, Any]]:
    """Every entry of an audit log, oldest first (for tests and operators' scripts)."""
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class SimProvider:
    """Thread-safe, and safe to run in several processes against one etcd: all cloud state is
    in etcd; only the fault-injection RNG and the annotations are per process."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        step_delay: float = DEFAULT_STEP_DELAY,
        failure_rate: float = 0.0,
        seed: int | None = None,
        identity: str = "sim",
        audit_log: Path | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if step_delay < 0:
            raise ValueError(f"step_delay must be >= 0 seconds, got {step_delay}")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate}")
        self.client = client
        self.prefix = instances_prefix(prefix)
        self.step_delay = step_delay
        self.failure_rate = failure_rate
        self.identity = identity
        self.audit_log = SimAuditLog(audit_log) if audit_log is not None else None
        self._clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # guards the RNG and the annotations
        self._annotations: dict[str, dict[str, str]] = {}

    # -- inspection (tests, e2e) ---------------------------------------------------------------

    def created(self) -> dict[str, list[str]]:
        """Every instance id ever created, per uid, as stored in etcd."""
        kvs, _ = self.client.list_prefix(self.prefix)
        instances = [_SimInstance.decode(kv) for kv in kvs]
        return {instance.uid: instance.created for instance in instances}

    def instances_per_uid(self) -> dict[str, int]:
        return {uid: len(ids) for uid, ids in self.created().items()}

    # -- AnnotationAware -----------------------------------------------------------------------

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        settings = {k: v for k, v in annotations.items() if k.startswith(ANNOTATION_PREFIX)}
        with self._lock:
            if settings:
                self._annotations[uid] = settings
            else:
                self._annotations.pop(uid, None)

    # -- LabProvider ---------------------------------------------------------------------------

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        with self._audited("provision", uid) as record:
            self._check_fatal(uid, "provision")
            self._maybe_fail_transiently("provision", uid)
            instance, created = self._create_once(uid, name)
            record.instance_id = instance.instance_id
            record.effect = "created" if created else "existing"
        if created:
            log.info(
                "sim: created instance %s (%s) for worker %s (uid %s); running in %.1fs",
                instance.instance_id,
                spec.type,
                name,
                uid,
                self.step_delay,
            )
            self._maybe_fail_transiently("provision", uid, after_effect=True)
        return instance.view(self._clock())

    def describe(self, uid: str) -> Instance | None:
        self._maybe_fail_transiently("describe", uid)
        instance = self._read(uid, "describe")
        return instance.view(self._clock()) if instance is not None else None

    def start(self, uid: str) -> None:
        def start(instance: _SimInstance, now: float) -> bool:
            state = instance.state(now)
            if state in (InstanceState.PENDING, InstanceState.RUNNING):
                return False
            if state is InstanceState.STOPPING:
                raise ProviderError(
                    f"sim: instance {instance.instance_id} is still stopping; start it once stopped"
                )
            if state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                raise ProviderFatalError(
                    f"sim: instance {instance.instance_id} was terminated and cannot be started"
                )
            instance.move(InstanceState.RUNNING, now, self.step_delay)
            return True

        self._side_effect("start", uid, start)

    def stop(self, uid: str) -> None:
        def stop(instance: _SimInstance, now: float) -> bool:
            state = instance.state(now)
            if state in (InstanceState.STOPPING, InstanceState.STOPPED):
                return False
            if state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                raise ProviderFatalError(
                    f"sim: instance {instance.instance_id} was terminated and cannot be stopped"
                )
            instance.move(InstanceState.STOPPED, now, self.step_delay)
            return True

        self._side_effect("stop", uid, stop)

    def terminate(self, uid: str) -> None:
        def terminate(instance: _SimInstance, now: float) -> bool:
            if instance.state(now) in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                return False
            instance.move(InstanceState.TERMINATED, now, self.step_delay)
            return True

        self._side_effect(
            "terminate",
            uid,
            terminate,
            missing_ok=True,
            lease_ttl=TERMINATED_RETENTION + int(self.step_delay) + 1,
        )

    def host_health(self, uid: str) -> HostHealth:
        self._check_fatal(uid, "health")
        self._maybe_fail_transiently("health", uid)
        instance = self._read(uid, "health")
        now = self._clock()
        if instance is None or instance.target is not InstanceState.RUNNING:
            return HostHealth(ready=False, version=None, licensed=False, hosted_labs=0)
        host_ready_at = instance.done_at + self.step_delay
        if now < host_ready_at:
            return HostHealth(
                ready=False,
                version=None,
                licensed=False,
                hosted_labs=0,
                ready_in=host_ready_at - now,
            )
        return HostHealth(
            ready=True,
            version=SIM_HOST_VERSION,
            licensed=instance.licensed,
            hosted_labs=self._hosted_labs(uid),
        )

    def license(self, uid: str, secret_ref: str | None) -> bool:
        with self._audited("license", uid) as record:
            self._maybe_fail_transiently("license", uid)
            if self._annotation(uid, NO_LICENSE_ANNOTATION).lower() == "true":
                record.effect = "no-license"
                return False

            def grant(instance: _SimInstance, now: float) -> bool:
                if instance.target is not InstanceState.RUNNING or (
                    now < instance.done_at + self.step_delay
                ):
                    raise ProviderError(
                        f"sim: host of instance {instance.instance_id} is not up yet; "
                        "license it later"
                    )
                if instance.licensed:
                    return False
                instance.licensed = True
                return True

            self._change(uid, "license", grant, record)
            return True

    # -- etcd --------------------------------------------------------------------------------

    def _key(self, uid: str) -> str:
        return self.prefix + uid

    def _read_kv(self, key: str, call: str, uid: str) -> KeyValue | None:
        try:
            return self.client.get(key)
        except StorageError as exc:
            raise self._storage_failed(call, uid, exc) from None

    def _read(self, uid: str, call: str) -> _SimInstance | None:
        kv = self._read_kv(self._key(uid), call, uid)
        return _SimInstance.decode(kv) if kv is not None else None

    def _create_once(self, uid: str, name: str) -> tuple[_SimInstance, bool]:
        """The uid's instance, creating it if there is none: (instance, created by this call).

        One transaction: put if absent, else get. When the answer is lost after the request
        may have reached etcd, the key is re-read: our create is found there (and reported as
        ours), or the create is tried again with a fresh id. Both compare "absent", so even if
        the lost one lands late only one of them is ever applied.
        """
        key = self._key(uid)
        for _ in range(MAX_LOST_ANSWERS + 1):
            instance_id = f"i-{secrets.randbits(68):017x}"
            fresh = _SimInstance(
                uid=uid,
                name=name,
                instance_id=instance_id,
                target=InstanceState.RUNNING,
                done_at=self._clock() + self.step_delay,
                created=[instance_id],
            )
            try:
                result = self.client.txn(
                    [Compare.absent(key)], [Op.put(key, fresh.encode())], [Op.get(key)]
                )
            except Unavailable as exc:
                if not exc.maybe_applied:
                    raise self._storage_failed("provision", uid, exc) from None
                log.warning(
                    "sim: provision of uid %s: etcd's answer was lost (%s); re-reading the "
                    "instance key to learn whether the create was applied",
                    uid,
                    exc,
                )
                kv = self._read_kv(key, "provision", uid)
                if kv is None:
                    continue  # not applied (or not yet): create again; only one can win
                found = _SimInstance.decode(kv)
                return found, found.instance_id == instance_id
            except StorageError as exc:
                raise self._storage_failed("provision", uid, exc) from None
            if result.succeeded:
                fresh.address = _address(result.revision)
                return fresh, True
            current = _first_kv(result.responses)
            if current is not None:
                return _SimInstance.decode(current), False
        raise ProviderError(
            f"sim: provision of uid {uid}: etcd lost the answer to {MAX_LOST_ANSWERS + 1} "
            "creates in a row (none found applied); retrying later"
        )

    def _change(
        self,
        uid: str,
        call: str,
        change: Callable[[_SimInstance, float], bool],
        record: _AuditRecord,
        *,
        missing_ok: bool = False,
        lease_ttl: int | None = None,
    ) -> None:
        """Read the uid's instance, let `change` mutate it (False: nothing to do), write it
        back if its key is unchanged since the read; on a conflict or a lost answer, re-read
        and decide again, so a change already applied is seen and not applied twice.

        With `lease_ttl` the written record is attached to a new lease of that TTL: etcd
        deletes it when the lease runs out (terminated instances)."""
        key = self._key(uid)
        lost = 0
        lease = 0
        for _ in range(MAX_CAS_ATTEMPTS):
            kv = self._read_kv(key, call, uid)
            if kv is None:
                if missing_ok:
                    record.effect = "no-instance"
                    return
                raise ProviderFatalError(
                    f"sim: {call}: no instance was ever provisioned for uid {uid}"
                )
            instance = _SimInstance.decode(kv)
            record.instance_id = instance.instance_id
            if not change(instance, self._clock()):
                record.effect = "maybe-changed" if lost else "unchanged"
                return
            try:
                if lease_ttl is not None and not lease:
                    lease = self.client.lease_grant(lease_ttl).id
                result = self.client.txn(
                    [Compare.mod_revision(key, kv.mod_revision)],
                    [Op.put(key, instance.encode(), lease)],
                )
            except Unavailable as exc:
                if not exc.maybe_applied:
                    raise self._storage_failed(call, uid, exc) from None
                lost += 1
                if lost > MAX_LOST_ANSWERS:
                    raise self._storage_failed(call, uid, exc) from None
                continue
            except StorageError as exc:
                raise self._storage_failed(call, uid, exc) from None
            if result.succeeded:
                record.effect = "changed"
                return
        raise ProviderError(
            f"sim: {call} of uid {uid}: its instance kept changing over {MAX_CAS_ATTEMPTS} "
            "attempts; retrying later"
        )

    def _side_effect(
        self,
        call: str,
        uid: str,
        change: Callable[[_SimInstance, float], bool],
        *,
        missing_ok: bool = False,
        lease_ttl: int | None = None,
    ) -> None:
        with self._audited(call, uid) as record:
            self._check_fatal(uid, call)
            self._maybe_fail_transiently(call, uid)
            self._change(uid, call, change, record, missing_ok=missing_ok, lease_ttl=lease_ttl)
        if record.effect == "changed":
            self._maybe_fail_transiently(call, uid, after_effect=True)

    def _storage_failed(self, call: str, uid: str, exc: StorageError) -> ProviderError:
        return ProviderError(
            f"sim: {call} of uid {uid}: the simulated cloud's state in etcd is unreachable "
            f"({type(exc).__name__}: {exc}); retrying later"
        )

    # -- audit -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _audited(self, call: str, uid: str) -> Iterator[_AuditRecord]:
        record = _AuditRecord()
        if self.audit_log is None:
            yield record
            return
        started = time.time()
        outcome, error = "ok", None
        try:
            yield record
        except ProviderFatalError as exc:
            outcome, error = "fatal", str(exc)
            raise
        except ProviderError as exc:
            outcome, error = "transient", str(exc)
            raise
        except BaseException as exc:
            outcome, error = "crashed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            entry: dict[str, Any] = {
                "time": started,
                "end": time.time(),
                "identity": self.identity,
                "call": call,
                "uid": uid,
                "outcome": outcome,
                "effect": record.effect,
            }
            if record.instance_id is not None:
                entry["instanceId"] = record.instance_id
            if error is not None:
                entry["error"] = error
            self.audit_log.append(entry)

    # -- faults and annotations ----------------------------------------------------------------

    def _annotation(self, uid: str, name: str) -> str:
        with self._lock:
            return self._annotations.get(uid, {}).get(name, "")

    def _check_fatal(self, uid: str, call: str) -> None:
        wanted = self._annotation(uid, FAIL_ANNOTATION)
        failing = {part.strip() for part in wanted.split(",") if part.strip()}
        if call in failing:
            raise ProviderFatalError(
                f"sim: {call} failed for uid {uid} (injected by annotation {FAIL_ANNOTATION})"
            )

    def _maybe_fail_transiently(self, call: str, uid: str, *, after_effect: bool = False) -> None:
        """Before an effect, fail at `failure_rate`; after one, fail at half of it, so that
        both "request lost" and "response lost" happen."""
        if self.failure_rate <= 0.0:
            return
        rate = self.failure_rate / 2 if after_effect else self.failure_rate
        with self._lock:
            unlucky = self._random.random() < rate
        if unlucky:
            when = "after it took effect" if after_effect else "before it took effect"
            raise ProviderError(f"sim: injected transient failure of {call} for uid {uid} ({when})")

    def _hosted_labs(self, uid: str) -> int:
        raw = self._annotation(uid, HOSTED_LABS_ANNOTATION)
        if not raw:
            return 0
        try:
            return max(int(raw), 0)
        except ValueError:
            log.warning(
                "sim: annotation %s=%r on uid %s is not an integer; reporting 0 hosted labs",
                HOSTED_LABS_ANNOTATION,
                raw,
                uid,
            )
            return 0


def _first_kv(responses: Sequence[object]) -> KeyValue | None:
    for response in responses:
        if isinstance(response, RangeResult) and response.kvs:
            return response.kvs[0]
    return None
