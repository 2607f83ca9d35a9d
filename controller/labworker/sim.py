"""`sim`: a simulated cloud and host API for demos, tests and benchmarks.

Operations never sleep. Each one records *when* it completes (`step_delay` seconds after it
was issued) and every read reports the state as of now, so a thousand workers waiting on
the simulator cost no threads; the reconciler looks again when `ready_in` says to.

Faults are injected two ways. `failure_rate` makes any call raise a transient
`ProviderError`; on calls with side effects the failure happens either before the effect or
after it (the "response lost" case), which is exactly what the uid-as-client-token rule has
to survive. Per-worker annotations (handed over through `configure`) make one worker's calls
fail for good, change what its host reports, or withhold its license.

`created` records every instance ever created per uid; with `state_file` it is persisted
(atomically, on every change) together with the instances, so an end-to-end test can kill
the controller, restart it, and prove from the file that no worker got two instances.
Times are taken from `clock` (wall-clock by default) because they are persisted and must
mean the same thing to the next process.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from controller.labworker.provider import (
    HostHealth,
    Instance,
    InstanceState,
    ProviderError,
    ProviderFatalError,
)
from controller.resources import InstanceSpec

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
STATE_FILE_FORMAT: Final = 1


@dataclass(slots=True)
class _SimInstance:
    """One simulated instance. `target` is where the last operation leads; `done_at` is when
    it gets there. The host boots one more step after the instance is running."""

    uid: str
    name: str
    instance_id: str
    address: str
    target: InstanceState  # RUNNING, STOPPED or TERMINATED
    done_at: float
    licensed: bool = False

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


_IN_PROGRESS: Final = {
    InstanceState.RUNNING: InstanceState.PENDING,
    InstanceState.STOPPED: InstanceState.STOPPING,
    InstanceState.TERMINATED: InstanceState.TERMINATING,
}


class SimProvider:
    """Thread-safe; one lock guards the instances, the created record and the state file."""

    def __init__(
        self,
        step_delay: float = DEFAULT_STEP_DELAY,
        failure_rate: float = 0.0,
        state_file: Path | str | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if step_delay < 0:
            raise ValueError(f"step_delay must be >= 0 seconds, got {step_delay}")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be between 0 and 1, got {failure_rate}")
        self.step_delay = step_delay
        self.failure_rate = failure_rate
        self.state_file = Path(state_file) if state_file is not None else None
        self._clock = clock
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._instances: dict[str, _SimInstance] = {}
        self._created: dict[str, list[str]] = {}
        self._annotations: dict[str, dict[str, str]] = {}
        self._known_ids: set[str] = set()
        if self.state_file is not None and self.state_file.exists():
            self._load(self.state_file)

    # -- inspection (tests, e2e) ---------------------------------------------------------------

    @property
    def created(self) -> dict[str, list[str]]:
        """Every instance id ever created, per uid (a copy)."""
        with self._lock:
            return {uid: list(ids) for uid, ids in self._created.items()}

    def instances_per_uid(self) -> dict[str, int]:
        with self._lock:
            return {uid: len(ids) for uid, ids in self._created.items()}

    # -- AnnotationAware -----------------------------------------------------------------------

    def configure(self, uid: str, annotations: Mapping[str, str]) -> None:
        settings = {k: v for k, v in annotations.items() if k.startswith(ANNOTATION_PREFIX)}
        with self._lock:
            if settings:
                self._annotations[uid] = settings
            else:
                self._annotations.pop(uid, None)

    # -- LabProvider ---------------------------------------------------------------------------

    def provision(self, uid: str, name: str, spec: InstanceSpec) -> Instance:
        with self._lock:
            self._check_fatal(uid, "provision")
            self._maybe_fail_transiently("provision", uid)
            now = self._clock()
            existing = self._instances.get(uid)
            if existing is not None:
                # Client-token semantics: the same token always names the same instance,
                # even a terminated one.
                return existing.view(now)
            created = self._new_instance(uid, name, now)
            log.info(
                "sim: created instance %s (%s) for worker %s (uid %s); running in %.1fs",
                created.instance_id,
                spec.type,
                name,
                uid,
                self.step_delay,
            )
            self._maybe_fail_transiently("provision", uid, after_effect=True)
            return created.view(now)

    def describe(self, uid: str) -> Instance | None:
        with self._lock:
            self._maybe_fail_transiently("describe", uid)
            instance = self._instances.get(uid)
            return instance.view(self._clock()) if instance is not None else None

    def start(self, uid: str) -> None:
        with self._lock:
            self._check_fatal(uid, "start")
            self._maybe_fail_transiently("start", uid)
            instance = self._require(uid, "start")
            now = self._clock()
            state = instance.state(now)
            if state in (InstanceState.PENDING, InstanceState.RUNNING):
                return
            if state is InstanceState.STOPPING:
                raise ProviderError(
                    f"sim: instance {instance.instance_id} is still stopping; start it once stopped"
                )
            if state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                raise ProviderFatalError(
                    f"sim: instance {instance.instance_id} was terminated and cannot be started"
                )
            self._move(instance, InstanceState.RUNNING, now)
            self._maybe_fail_transiently("start", uid, after_effect=True)

    def stop(self, uid: str) -> None:
        with self._lock:
            self._check_fatal(uid, "stop")
            self._maybe_fail_transiently("stop", uid)
            instance = self._require(uid, "stop")
            now = self._clock()
            state = instance.state(now)
            if state in (InstanceState.STOPPING, InstanceState.STOPPED):
                return
            if state in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                raise ProviderFatalError(
                    f"sim: instance {instance.instance_id} was terminated and cannot be stopped"
                )
            self._move(instance, InstanceState.STOPPED, now)
            self._maybe_fail_transiently("stop", uid, after_effect=True)

    def terminate(self, uid: str) -> None:
        with self._lock:
            self._check_fatal(uid, "terminate")
            self._maybe_fail_transiently("terminate", uid)
            instance = self._instances.get(uid)
            if instance is None:
                return
            now = self._clock()
            if instance.state(now) in (InstanceState.TERMINATING, InstanceState.TERMINATED):
                return
            self._move(instance, InstanceState.TERMINATED, now)
            self._maybe_fail_transiently("terminate", uid, after_effect=True)

    def host_health(self, uid: str) -> HostHealth:
        with self._lock:
            self._check_fatal(uid, "health")
            self._maybe_fail_transiently("health", uid)
            instance = self._instances.get(uid)
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
        with self._lock:
            self._maybe_fail_transiently("license", uid)
            if self._annotations.get(uid, {}).get(NO_LICENSE_ANNOTATION, "").lower() == "true":
                return False
            instance = self._require(uid, "license")
            now = self._clock()
            if instance.target is not InstanceState.RUNNING or (
                now < instance.done_at + self.step_delay
            ):
                raise ProviderError(
                    f"sim: host of instance {instance.instance_id} is not up yet; license it later"
                )
            if not instance.licensed:
                instance.licensed = True
                self._save()
            return True

    # -- internals (called with the lock held) ---------------------------------------------

    def _new_instance(self, uid: str, name: str, now: float) -> _SimInstance:
        instance_id = f"i-{self._random.getrandbits(68):017x}"
        while instance_id in self._known_ids:  # a reseeded restart must not repeat ids
            instance_id = f"i-{self._random.getrandbits(68):017x}"
        self._known_ids.add(instance_id)
        ordinal = len(self._known_ids)
        instance = _SimInstance(
            uid=uid,
            name=name,
            instance_id=instance_id,
            address=f"10.{(ordinal >> 16) & 255}.{(ordinal >> 8) & 255}.{ordinal & 255}",
            target=InstanceState.RUNNING,
            done_at=now + self.step_delay,
        )
        self._instances[uid] = instance
        self._created.setdefault(uid, []).append(instance_id)
        self._save()
        return instance

    def _move(self, instance: _SimInstance, target: InstanceState, now: float) -> None:
        instance.target = target
        instance.done_at = now + self.step_delay
        if target is not InstanceState.RUNNING:
            instance.licensed = False  # a restarted host must be licensed again
        self._save()

    def _require(self, uid: str, call: str) -> _SimInstance:
        instance = self._instances.get(uid)
        if instance is None:
            raise ProviderFatalError(f"sim: {call}: no instance was ever provisioned for uid {uid}")
        return instance

    def _check_fatal(self, uid: str, call: str) -> None:
        wanted = self._annotations.get(uid, {}).get(FAIL_ANNOTATION, "")
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
        if self._random.random() < rate:
            when = "after it took effect" if after_effect else "before it took effect"
            raise ProviderError(f"sim: injected transient failure of {call} for uid {uid} ({when})")

    def _hosted_labs(self, uid: str) -> int:
        raw = self._annotations.get(uid, {}).get(HOSTED_LABS_ANNOTATION)
        if raw is None:
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

    # -- persistence -----------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_file is None:
            return
        document = {
            "format": STATE_FILE_FORMAT,
            "instances": [_encode(instance) for instance in self._instances.values()],
            "created": self._created,
        }
        directory = self.state_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{self.state_file.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1, sort_keys=True)
            os.replace(temp_name, self.state_file)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != STATE_FILE_FORMAT:
                raise ValueError(f"unsupported format {document.get('format')!r}")
            instances = [_decode(raw) for raw in document["instances"]]
            created = {str(uid): [str(i) for i in ids] for uid, ids in document["created"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"sim state file {path} is unreadable ({exc}); fix or remove it to start afresh"
            ) from exc
        self._instances = {instance.uid: instance for instance in instances}
        self._created = created
        self._known_ids = {instance_id for ids in created.values() for instance_id in ids}
        log.info("sim: loaded %d instances from %s", len(self._instances), path)


def _encode(instance: _SimInstance) -> dict[str, Any]:
    raw = asdict(instance)
    raw["target"] = instance.target.value
    return raw


def _decode(raw: Mapping[str, Any]) -> _SimInstance:
    return _SimInstance(
        uid=str(raw["uid"]),
        name=str(raw["name"]),
        instance_id=str(raw["instance_id"]),
        address=str(raw["address"]),
        target=InstanceState(raw["target"]),
        done_at=float(raw["done_at"]),
        licensed=bool(raw.get("licensed", False)),
    )


def sim_settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """SimProvider keyword arguments from LAB_SIM_DELAY, LAB_SIM_FAILURE_RATE,
    LAB_SIM_STATE_FILE and LAB_SIM_SEED (unset variables keep the defaults)."""
    settings: dict[str, Any] = {}
    for variable, keyword, convert in (
        ("LAB_SIM_DELAY", "step_delay", float),
        ("LAB_SIM_FAILURE_RATE", "failure_rate", float),
        ("LAB_SIM_SEED", "seed", int),
    ):
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            settings[keyword] = convert(raw)
        except ValueError:
            raise ValueError(f"{variable}={raw!r} is not a valid {convert.__name__}") from None
    state_file = environ.get("LAB_SIM_STATE_FILE", "").strip()
    if state_file:
        settings["state_file"] = Path(state_file)
    return settings
