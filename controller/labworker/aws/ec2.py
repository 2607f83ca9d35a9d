"""The EC2 half of the `aws` provider: one instance per LabWorker uid, through boto3.

Idempotency has two layers. `provision` first looks the instance up by its
`lab.neuroglia.io/uid` tag (put on at launch, atomically, through TagSpecifications), so a
worker that comes back to Provisioning gets its instance without a new RunInstances, even
after its spec changed; only when none is found does it call RunInstances, with a
ClientToken derived from the uid, so that EC2 itself returns the same instance to a retried
or restarted call that the lookup missed (DescribeInstances is eventually consistent).

Credentials, region and endpoint come from boto3's standard chain only (environment,
shared config/profile, web identity/IRSA, instance role; `AWS_ENDPOINT_URL` and
`AWS_ENDPOINT_URL_EC2` are honoured by botocore itself). `AWS_REGION` is read here because
botocore only reads `AWS_DEFAULT_REGION`. One client is created and shared by every
reconcile thread: boto3 clients are thread-safe, sessions are not.

Nothing here sleeps or polls: an instance in a transitional state is reported with a
`ready_in` estimate, and the reconciler looks again then.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from controller.labworker.aws.errors import AWS_ERRORS, classify
from controller.labworker.model import InstanceSpec
from controller.labworker.provider import (
    Instance,
    InstanceState,
    ProviderError,
    ProviderFatalError,
)
from controller.resources import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import (
        FilterTypeDef,
        InstanceTypeDef,
        RunInstancesRequestTypeDef,
        TagTypeDef,
    )

log = logging.getLogger("controller.labworker.aws.ec2")

TAG_UID: Final = "lab.neuroglia.io/uid"
TAG_NAME: Final = "lab.neuroglia.io/name"
TAG_NAMESPACE: Final = "lab.neuroglia.io/namespace"
MAX_CLIENT_TOKEN_LENGTH: Final = 64
DEFAULT_ROOT_DEVICE: Final = "/dev/sda1"

STATES: Final[Mapping[str, InstanceState]] = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPING,
    "stopped": InstanceState.STOPPED,
    "shutting-down": InstanceState.TERMINATING,
    "terminated": InstanceState.TERMINATED,
}
"""EC2's instance-state names → the provider protocol's states."""

R = TypeVar("R")
RetryMode = Literal["standard", "adaptive"]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


@dataclass(frozen=True, slots=True)
class Ec2Settings:
    region: str | None = None
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    instance_profile: str | None = None
    """An instance profile name, or its ARN (starts with `arn:`)."""
    default_image: str | None = None
    """The AMI for workers whose spec.instance.image is empty."""
    volume_type: str = "gp3"
    boot_estimate: float = 300.0
    """Seconds from launch to `running`; metal instances take minutes."""
    poll_interval: float = 15.0
    """Shortest wait before looking again at an instance in a transitional state."""
    max_attempts: int = 3
    retry_mode: RetryMode = "standard"
    connect_timeout: float = 5.0
    read_timeout: float = 20.0

    def client_config(self) -> Config:
        return Config(
            retries={"total_max_attempts": self.max_attempts, "mode": self.retry_mode},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            user_agent_extra="labctl-aws-provider",
        )


# -- pure helpers (unit tested) ---------------------------------------------------------------


def client_token(uid: str) -> str:
    """RunInstances' ClientToken for a worker: the uid itself when EC2 accepts it (≤ 64
    printable ASCII characters: a Kubernetes-style UUID is 36), so an operator can match
    the two; otherwise a stable digest of it."""
    if uid and len(uid) <= MAX_CLIENT_TOKEN_LENGTH and uid.isascii() and uid.isprintable():
        return uid
    return "lab-" + hashlib.sha256(uid.encode()).hexdigest()[: MAX_CLIENT_TOKEN_LENGTH - 4]


def map_state(name: str) -> InstanceState:
    try:
        return STATES[name]
    except KeyError:
        raise ProviderError(f"EC2 reported an unknown instance state {name!r}") from None


def pick_instance(candidates: Sequence[InstanceTypeDef]) -> InstanceTypeDef | None:
    """The worker's instance among those carrying its uid: the newest one that is not
    terminated, else the newest terminated one (EC2 lists those for about an hour)."""
    if not candidates:
        return None
    epoch = datetime.min.replace(tzinfo=UTC)

    def newest_first(raw: InstanceTypeDef) -> tuple[bool, datetime]:
        alive = raw.get("State", {}).get("Name") != "terminated"
        return alive, raw.get("LaunchTime", epoch)

    return max(candidates, key=newest_first)


def ready_in(
    state: InstanceState, launched: datetime | None, now: datetime, settings: Ec2Settings
) -> float | None:
    """When to look again: a pending instance at its expected boot time, other transitions
    after `poll_interval`; settled states need no estimate."""
    if state is InstanceState.PENDING:
        if launched is None:
            return settings.boot_estimate
        age = (now - launched).total_seconds()
        return max(settings.boot_estimate - age, settings.poll_interval)
    if state in (InstanceState.STOPPING, InstanceState.TERMINATING):
        return settings.poll_interval
    return None


def to_instance(raw: InstanceTypeDef, now: datetime, settings: Ec2Settings) -> Instance:
    state = map_state(raw.get("State", {}).get("Name", ""))
    address = raw.get("PublicIpAddress") or raw.get("PrivateIpAddress") or None
    return Instance(
        instance_id=raw["InstanceId"],
        state=state,
        address=address,
        ready_in=ready_in(state, raw.get("LaunchTime"), now, settings),
    )


def instance_tags(
    uid: str, name: str, spec: InstanceSpec, namespace: str = DEFAULT_NAMESPACE
) -> list[TagTypeDef]:
    """spec.instance.tags, then ours. The lab.neuroglia.io/ keys always win (they are how
    the controller finds its instances); a user's own `Name` is kept."""
    tags: dict[str, str] = {"Name": name, **spec.tags}
    tags[TAG_UID] = uid
    tags[TAG_NAME] = name
    tags[TAG_NAMESPACE] = namespace
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def run_request(
    uid: str,
    name: str,
    spec: InstanceSpec,
    image: str,
    root_device: str,
    settings: Ec2Settings,
    namespace: str = DEFAULT_NAMESPACE,
) -> RunInstancesRequestTypeDef:
    tags = instance_tags(uid, name, spec, namespace)
    request: RunInstancesRequestTypeDef = {
        "ImageId": image,
        "InstanceType": spec.type,  # type: ignore[typeddict-item]  # any string EC2 knows
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(uid),
        "BlockDeviceMappings": [
            {
                "DeviceName": root_device,
                "Ebs": {
                    "VolumeSize": spec.volume_size_gb,
                    "VolumeType": settings.volume_type,  # type: ignore[typeddict-item]
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
    }
    if settings.subnet_id:
        request["SubnetId"] = settings.subnet_id
    if settings.security_group_ids:
        request["SecurityGroupIds"] = list(settings.security_group_ids)
    if settings.key_name:
        request["KeyName"] = settings.key_name
    if settings.instance_profile:
        profile = settings.instance_profile
        request["IamInstanceProfile"] = (
            {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
        )
    return request


def _uid_filter(uid: str) -> list[FilterTypeDef]:
    return [{"Name": f"tag:{TAG_UID}", "Values": [uid]}]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- the EC2 calls ------------------------------------------------------------------------------


def make_client(settings: Ec2Settings) -> EC2Client:
    """The one EC2 client of the process. Raises ProviderFatalError when no region is set."""
    session = boto3.session.Session(region_name=settings.region)
    try:
        return session.client("ec2", config=settings.client_config())
    except BotoCoreError as exc:  # NoRegionError, invalid endpoint URL, ...
        raise ProviderFatalError(
            f"cannot create the EC2 client: {exc} (set AWS_REGION, or a region in the AWS profile)"
        ) from None


class Ec2Instances:
    """Thread-safe: the client is; the two small memo dicts are guarded by a lock."""

    def __init__(
        self,
        settings: Ec2Settings,
        client: EC2Client | None = None,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.client = client if client is not None else make_client(settings)
        self._now = now
        self._lock = threading.Lock()
        self._root_devices: dict[str, str] = {}
        """AMI id → root device name. AMIs are immutable, so this never goes stale."""
        self._ids: dict[str, str] = {}
        """uid → the instance id last seen for it, so start/stop/terminate (always called
        right after a describe) need no second lookup."""

    # -- LabProvider's cloud half ---------------------------------------------------------------

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        existing = self._find(uid, fallback_to_token=False)
        if existing is not None:
            return existing
        image = spec.image or self.settings.default_image
        if not image:
            raise ProviderFatalError(
                "spec.instance.image is empty and LAB_AWS_DEFAULT_IMAGE is not set: name the "
                "AMI to launch in either"
            )
        request = run_request(
            uid, name, spec, image, self._root_device(image), self.settings, namespace
        )
        response = self._call("RunInstances", lambda: self.client.run_instances(**request))
        raw = response["Instances"][0]
        instance = self._remember(uid, raw)
        log.info(
            "EC2: RunInstances returned instance %s (%s, %s, %s) for worker %s (uid %s); "
            "looking again in %.1fs",
            instance.instance_id,
            spec.type,
            image,
            raw.get("State", {}).get("Name", "?"),
            name,
            uid,
            instance.ready_in or 0.0,
        )
        return instance

    def describe(self, uid: str) -> Instance | None:
        return self._find(uid, fallback_to_token=True)

    def start(self, uid: str) -> None:
        instance_id = self._instance_id(uid, "start")
        self._transition(
            "StartInstances",
            uid,
            instance_id,
            lambda: self.client.start_instances(InstanceIds=[instance_id]),
            done={InstanceState.PENDING, InstanceState.RUNNING},
            later={InstanceState.STOPPING},
        )

    def stop(self, uid: str) -> None:
        instance_id = self._instance_id(uid, "stop")
        self._transition(
            "StopInstances",
            uid,
            instance_id,
            lambda: self.client.stop_instances(InstanceIds=[instance_id]),
            done={InstanceState.STOPPING, InstanceState.STOPPED},
            later={InstanceState.PENDING},
        )

    def terminate(self, uid: str) -> None:
        with self._lock:
            instance_id = self._ids.get(uid)
        if instance_id is None:
            found = self.describe(uid)
            if found is None:
                log.info("EC2: no instance for uid %s; nothing to terminate", uid)
                return
            instance_id = found.instance_id
        try:
            self.client.terminate_instances(InstanceIds=[instance_id])
        except ClientError as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound" or self.describe(uid) is not None:
                raise classify("TerminateInstances", exc) from exc
            log.info("EC2: instance %s (uid %s) is already gone", instance_id, uid)
            return
        except AWS_ERRORS as exc:
            raise classify("TerminateInstances", exc) from exc
        log.info("EC2: terminating instance %s (uid %s)", instance_id, uid)

    # -- inspection -----------------------------------------------------------------------------

    def instance_ids(self, uid: str) -> list[str]:
        """Every instance EC2 lists with this uid's tag (tests, benchmarks)."""
        return [raw["InstanceId"] for raw in self._list(_uid_filter(uid))]

    # -- internals ------------------------------------------------------------------------------

    def _call(self, operation: str, fn: Callable[[], R]) -> R:
        try:
            return fn()
        except AWS_ERRORS as exc:
            raise classify(operation, exc) from exc

    def _list(self, filters: list[FilterTypeDef]) -> list[InstanceTypeDef]:
        response = self._call(
            "DescribeInstances", lambda: self.client.describe_instances(Filters=filters)
        )
        return [raw for reservation in response["Reservations"] for raw in reservation["Instances"]]

    def _find(self, uid: str, *, fallback_to_token: bool) -> Instance | None:
        raw = pick_instance(self._list(_uid_filter(uid)))
        if raw is None and fallback_to_token:
            # The tag is put on at launch, so this only finds an instance whose tag someone
            # removed; without it terminate would forget a running instance.
            token_filter: list[FilterTypeDef] = [
                {"Name": "client-token", "Values": [client_token(uid)]}
            ]
            raw = pick_instance(self._list(token_filter))
            if raw is not None:
                log.warning(
                    "EC2: instance %s of uid %s has lost its %s tag; found it by its client token",
                    raw["InstanceId"],
                    uid,
                    TAG_UID,
                )
        if raw is None:
            with self._lock:
                self._ids.pop(uid, None)
            return None
        return self._remember(uid, raw)

    def _remember(self, uid: str, raw: InstanceTypeDef) -> Instance:
        instance = to_instance(raw, self._now(), self.settings)
        with self._lock:
            self._ids[uid] = instance.instance_id
        return instance

    def _instance_id(self, uid: str, verb: str) -> str:
        with self._lock:
            known = self._ids.get(uid)
        if known is not None:
            return known
        found = self.describe(uid)
        if found is None:
            raise ProviderFatalError(f"EC2: no instance tagged {TAG_UID}={uid} to {verb}")
        return found.instance_id

    def _root_device(self, image: str) -> str:
        with self._lock:
            known = self._root_devices.get(image)
        if known is not None:
            return known
        response = self._call(
            "DescribeImages", lambda: self.client.describe_images(ImageIds=[image])
        )
        images = response.get("Images", [])
        if not images:
            raise ProviderFatalError(
                f"EC2: AMI {image} does not exist in this region or is not shared with this account"
            )
        device = images[0].get("RootDeviceName") or DEFAULT_ROOT_DEVICE
        with self._lock:
            self._root_devices[image] = device
        return device

    def _transition(
        self,
        operation: str,
        uid: str,
        instance_id: str,
        call: Callable[[], object],
        *,
        done: set[InstanceState],
        later: set[InstanceState],
    ) -> None:
        """Call start/stop. EC2 answers IncorrectInstanceState when the instance is not in a
        state to do it: already there (or on its way) is success, one that cannot do it yet
        is transient, one that never can (terminated) is fatal."""
        try:
            call()
        except ClientError as exc:
            if error_code(exc) != "IncorrectInstanceState":
                raise classify(operation, exc) from exc
            current = self.describe(uid)
            state = current.state if current is not None else InstanceState.TERMINATED
            outcome = transition_outcome(state, done, later)
            if outcome == "done":
                log.info("EC2 %s: instance %s is already %s", operation, instance_id, state)
                return
            if outcome == "later":
                raise ProviderError(
                    f"EC2 {operation}: instance {instance_id} is {state}; trying again once "
                    "that completes"
                ) from exc
            raise ProviderFatalError(
                f"EC2 {operation}: instance {instance_id} is {state} and cannot be brought back"
            ) from exc
        except AWS_ERRORS as exc:
            raise classify(operation, exc) from exc
        log.info("EC2 %s: instance %s (uid %s)", operation, instance_id, uid)


def transition_outcome(
    state: InstanceState, done: set[InstanceState], later: set[InstanceState]
) -> str:
    """'done', 'later' or 'never', for an IncorrectInstanceState answer in `state`."""
    if state in done:
        return "done"
    if state in later:
        return "later"
    return "never"


def settings_from(values: Mapping[str, str | None]) -> Ec2Settings:
    """Ec2Settings from the plug-in's resolved settings; ValueError names the variable."""

    def text(env: str) -> str | None:
        raw = values.get(env)
        return raw.strip() if raw and raw.strip() else None

    def number(env: str, default: float, *, minimum: float = 0.0) -> float:
        raw = text(env)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{env}={raw!r} is not a number of seconds") from None
        if value < minimum:
            raise ValueError(f"{env}={raw!r} must be at least {minimum:g}")
        return value

    mode: RetryMode
    match text("LAB_AWS_RETRY_MODE") or "standard":
        case "standard":
            mode = "standard"
        case "adaptive":
            mode = "adaptive"
        case other:
            raise ValueError(f"LAB_AWS_RETRY_MODE={other!r} must be standard or adaptive")
    groups = text("LAB_AWS_SECURITY_GROUP_IDS") or ""
    return Ec2Settings(
        region=text("AWS_REGION"),
        subnet_id=text("LAB_AWS_SUBNET_ID"),
        security_group_ids=tuple(g.strip() for g in groups.split(",") if g.strip()),
        key_name=text("LAB_AWS_KEY_NAME"),
        instance_profile=text("LAB_AWS_INSTANCE_PROFILE"),
        default_image=text("LAB_AWS_DEFAULT_IMAGE"),
        volume_type=text("LAB_AWS_VOLUME_TYPE") or "gp3",
        boot_estimate=number("LAB_AWS_BOOT_ESTIMATE", 300.0),
        poll_interval=number("LAB_AWS_POLL_INTERVAL", 15.0, minimum=0.01),
        max_attempts=int(number("LAB_AWS_MAX_ATTEMPTS", 3, minimum=1)),
        retry_mode=mode,
        connect_timeout=number("LAB_AWS_CONNECT_TIMEOUT", 5.0, minimum=0.1),
        read_timeout=number("LAB_AWS_READ_TIMEOUT", 20.0, minimum=0.1),
    )
