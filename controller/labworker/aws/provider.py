"""`aws`: lab hosts as EC2 instances running Cisco Modeling Labs (entry point `aws`).

The cloud half (provision, describe, start, stop, terminate) is `ec2.Ec2Instances`; the
host half (host_health, license) is `cml.CmlClient`, which needs the instance's address.
That address comes from the last describe of the same uid if it is recent (a reconcile
asks describe → host_health → license → host_health within a second, and Ready workers
are health-checked every 30 s): EC2 only changes an instance's public address on stop or
start, which go through this object and forget it, and a host that stops answering on a
remembered address is looked up afresh on the next check. So a converged fleet costs CML
calls, not DescribeInstances calls.

License tokens are read from LAB_SECRETS_DIR at each license call (`secrets.py`), passed to
CML and dropped; a missing secret is `LicenseSecretMissing`, which the reconciler shows as
Licensed=False, reason LicenseSecretMissing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from controller.labworker.aws.cml import CmlClient
from controller.labworker.aws.ec2 import Ec2Instances
from controller.labworker.aws.secrets import read_license_token
from controller.labworker.model import InstanceSpec
from controller.labworker.provider import (
    HostHealth,
    Instance,
    InstanceState,
    ProviderError,
)
from controller.resources import DEFAULT_NAMESPACE

log = logging.getLogger("controller.labworker.aws")

ADDRESS_TTL: Final = 300.0
"""Seconds a describe's answer that the instance RUNS stands in for another (describe,
host_health, license). A metal host's CML boots for minutes while the reconciler looks every
LAB_CML_BOOT_POLL seconds; asking EC2 each time would cost dozens of DescribeInstances per
worker for an answer that does not change. The price: an instance stopped behind the
controller's back is noticed within this long (its host stops answering at once anyway)."""


class AwsProvider:
    """Thread-safe: EC2 and CML clients are; the address memo is guarded by a lock."""

    def __init__(
        self,
        ec2: Ec2Instances,
        cml_client: CmlClient,
        secrets_dir: str | None,
        *,
        address_ttl: float = ADDRESS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ec2 = ec2
        self.cml = cml_client
        self.secrets_dir = secrets_dir
        self.address_ttl = address_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, Instance]] = {}

    # -- cloud ----------------------------------------------------------------------------------

    def provision(
        self, uid: str, name: str, spec: InstanceSpec, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Instance:
        return self._note(uid, self.ec2.provision(uid, name, spec, namespace=namespace))

    def describe(self, uid: str) -> Instance | None:
        remembered = self._recently_running(uid)
        if remembered is not None:
            return remembered
        instance = self.ec2.describe(uid)
        if instance is None:
            self._forget(uid)
            return None
        return self._note(uid, instance)

    def start(self, uid: str) -> None:
        self._forget(uid)
        self.ec2.start(uid)

    def stop(self, uid: str) -> None:
        self._forget(uid)
        self.ec2.stop(uid)

    def terminate(self, uid: str) -> None:
        self._forget(uid)
        self.ec2.terminate(uid)

    # -- host -----------------------------------------------------------------------------------

    def host_health(self, uid: str) -> HostHealth:
        instance = self._running(uid)
        if instance is None or instance.address is None:
            return HostHealth(
                ready=False,
                version=None,
                licensed=False,
                hosted_labs=0,
                ready_in=instance.ready_in if instance is not None else None,
            )
        return self.cml.health(instance.address)

    def license(self, uid: str, secret_ref: str | None) -> bool:
        token = read_license_token(self.secrets_dir, secret_ref)
        instance = self._running(uid)
        if instance is None or instance.address is None:
            raise ProviderError(f"instance of uid {uid} is not running; licensing it later")
        return self.cml.register_license(instance.address, token)

    # -- the address memo -----------------------------------------------------------------------

    def _recently_running(self, uid: str) -> Instance | None:
        with self._lock:
            seen = self._seen.get(uid)
        fresh = seen is not None and self._clock() - seen[0] <= self.address_ttl
        if seen is not None and fresh and seen[1].state is InstanceState.RUNNING:
            return seen[1]
        return None

    def _running(self, uid: str) -> Instance | None:
        """The instance if it runs, from the memo when recent, else from EC2."""
        instance = self.describe(uid)
        if instance is None or instance.state is not InstanceState.RUNNING:
            return None
        return instance

    def _note(self, uid: str, instance: Instance) -> Instance:
        with self._lock:
            self._seen[uid] = (self._clock(), instance)
        return instance

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._seen.pop(uid, None)
