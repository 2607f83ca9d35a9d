"""The `aws` provider's cost: 200 workers to Ready against moto's EC2 and the CML test server.

The controller runs IN-PROCESS, built by `build_app` exactly as `labctl run` builds it, once
with LAB_PROVIDER=sim (LAB_SIM_DELAY=0) and once with LAB_PROVIDER=aws, on the same fleet:
N new workers with autoLicense and a license secret. For each run it reports the time to
all Ready, reconciles/s, LabProvider calls per converged worker, and for `aws` the requests
that reached EC2 (counted by the EC2 test server, per Action) and CML (counted by the CML
test server, per endpoint) per worker, against the issue's goal of at most 6 of each from
apply to Ready. Every server is on loopback; boto3 reaches moto through AWS_ENDPOINT_URL.

    python -m bench.aws                # 200 workers, 8 reconcile threads
    python -m bench.aws --workers 50

Needs the test extras (moto[server]) and imports the test servers from tests/.
Prints figures; never asserts on time (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/aws.py`: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _converge_data as data
from bench._etcd import BenchEtcd, etcd_version
from bench.converge import Instrumented, RunningController, labworker_controller, wait_for
from controller import config
from controller.app import App, build_app
from controller.labworker.model import LabWorker
from controller.labworker.reconciler import LabWorkerReconciler
from controller.resources import now_rfc3339
from controller.storage import EtcdClient, connect
from tests.cmlserver import DEFAULT_PASSWORD, DEFAULT_VALID_TOKEN, CmlServer
from tests.ec2server import Ec2TestServer

GOAL_EC2 = 6
GOAL_CML = 6
SECRET = "bench-license"
PROVIDER_CALLS = (
    "provision",
    "describe",
    "start",
    "stop",
    "terminate",
    "host_health",
    "license",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class CountingProvider:
    """Counts LabProvider calls by method, in front of whatever the app built."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in PROVIDER_CALLS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


@dataclass
class Run:
    provider: str
    n: int
    converge_s: float = 0.0
    reconciles: int = 0
    provider_calls: Counter[str] = field(default_factory=Counter)
    ec2_calls: Counter[str] = field(default_factory=Counter)
    cml_calls: Counter[str] = field(default_factory=Counter)

    def per_worker(self, counts: Counter[str]) -> float:
        return sum(counts.values()) / self.n


def fleet_template(image: str) -> dict[str, Any]:
    worker = LabWorker.model_validate(
        {
            "metadata": {
                "name": "bench-aws-0",
                "namespace": "default",
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": now_rfc3339(),
            },
            "spec": {
                "labTrack": "ccna",
                "desiredPhase": "Ready",
                "instance": {"type": "m5zn.metal", "image": image},
                "host": {"autoLicense": True, "licenseSecretRef": SECRET},
            },
        }
    )
    return worker.to_storage_dict()


def converge(
    etcd: BenchEtcd,
    client: EtcdClient,
    provider: str,
    n: int,
    threads: int,
    template: dict[str, Any],
    counters: Callable[[], tuple[Counter[str], Counter[str]]],
) -> Run:
    prefix = f"/bench-aws/{provider}-{uuid.uuid4().hex[:6]}"
    data.load(client, prefix, n, data.replicas_of(template))
    settings = config.load(
        None,
        environ={
            **os.environ,
            "ETCD_ENDPOINTS": etcd.endpoint,
            "ETCD_PREFIX": prefix,
            "LAB_PROVIDER": provider,
            "CONTROLLER_WORKERS": str(threads),
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
        },
    )
    app: App = build_app(settings)
    # The LabWorker reconciler is the object behind the controller's bound reconcile method.
    reconciler = getattr(labworker_controller(app)._reconcile, "__self__", None)
    if not isinstance(reconciler, LabWorkerReconciler):
        raise RuntimeError(f"the labworker controller reconciles with {reconciler!r}")
    counting = CountingProvider(reconciler.provider)
    reconciler.provider = counting
    probe = Instrumented(app)
    runner = RunningController(app)
    ec2_before, cml_before = counters()
    started = runner.start()
    try:
        wait_for(lambda: probe.ready() >= n, 120 + n * 0.5, f"{n} {provider} workers Ready")
        elapsed = time.perf_counter() - started
    finally:
        runner.stop()
    ec2_after, cml_after = counters()
    run = Run(provider, n, elapsed, probe.controller.reconciles, counting.calls)
    run.ec2_calls = ec2_after - ec2_before
    run.cml_calls = cml_after - cml_before
    data.drop(client, prefix)
    return run


def table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def breakdown(counts: Counter[str], n: int) -> str:
    return ", ".join(f"{name} {value / n:.2f}" for name, value in counts.most_common())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=200, help="fleet size (default 200)")
    parser.add_argument("--threads", type=int, default=8, help="CONTROLLER_WORKERS (default 8)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-aws-"))
    (workdir / SECRET).write_text(DEFAULT_VALID_TOKEN)
    (workdir / "cml-password").write_text(DEFAULT_PASSWORD)
    etcd = BenchEtcd.start()
    client = connect([etcd.endpoint], pool_size=32, timeout=120.0)
    ec2 = Ec2TestServer().start()
    cml = CmlServer()
    try:
        network = ec2.network()
        image = ec2.some_image()
        os.environ.update(
            {
                **ec2.env(),
                "AWS_CONFIG_FILE": "/dev/null",
                "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "LAB_SIM_DELAY": "0",
                # Count from apply to Ready only: no periodic re-check of workers that are
                # Ready long before the last one (that is steady-state cost, not convergence).
                "HEALTH_CHECK_INTERVAL": "3600",
                "LAB_AWS_SUBNET_ID": network["subnet"],
                "LAB_AWS_SECURITY_GROUP_IDS": network["security_group"],
                "LAB_AWS_KEY_NAME": network["key_name"],
                "LAB_AWS_INSTANCE_PROFILE": network["instance_profile"],
                "LAB_AWS_BOOT_ESTIMATE": "0",
                "LAB_AWS_POLL_INTERVAL": "0.05",
                "LAB_CML_URL_TEMPLATE": cml.url_template,
                "LAB_CML_PASSWORD_FILE": str(workdir / "cml-password"),
                "LAB_SECRETS_DIR": str(workdir),
            }
        )
        template = fleet_template(image)

        def counters() -> tuple[Counter[str], Counter[str]]:
            return ec2.calls(), cml.calls()

        runs = []
        for provider in ("sim", "aws"):
            log(f"converging {args.workers} workers with LAB_PROVIDER={provider} ...")
            runs.append(
                converge(etcd, client, provider, args.workers, args.threads, template, counters)
            )

        print("# aws provider benchmark (bench/aws.py)\n")
        print(
            f"- {args.workers} new workers (autoLicense, license secret) → Ready; "
            f"CONTROLLER_WORKERS={args.threads}; etcd {etcd_version()} (--unsafe-no-fsync); "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs shared by etcd, moto, "
            "the CML test server and the controller"
        )
        print(
            "- aws: moto EC2 in server mode (instances run at once; LAB_AWS_BOOT_ESTIMATE=0, "
            "LAB_AWS_POLL_INTERVAL=0.05), CML test server (hosts ready at once)\n"
        )
        rows = [
            [
                "provider",
                "to Ready s",
                "reconciles",
                "reconciles/s",
                "provider calls/worker",
                f"EC2 calls/worker (goal ≤ {GOAL_EC2})",
                f"CML calls/worker (goal ≤ {GOAL_CML})",
            ]
        ]
        for run in runs:
            rows.append(
                [
                    run.provider,
                    f"{run.converge_s:.1f}",
                    str(run.reconciles),
                    f"{run.reconciles / run.converge_s:.0f}",
                    f"{run.per_worker(run.provider_calls):.2f}",
                    f"{run.per_worker(run.ec2_calls):.2f}" if run.provider == "aws" else "-",
                    f"{run.per_worker(run.cml_calls):.2f}" if run.provider == "aws" else "-",
                ]
            )
        table(rows)
        print()
        for run in runs:
            print(
                f"- {run.provider} provider calls per worker: {breakdown(run.provider_calls, run.n)}"
            )
        aws_run = runs[-1]
        print(f"- EC2 requests per worker: {breakdown(aws_run.ec2_calls, aws_run.n)}")
        print(f"- CML requests per worker: {breakdown(aws_run.cml_calls, aws_run.n)}")
    finally:
        cml.close()
        ec2.stop()
        client.close()
        etcd.stop()


if __name__ == "__main__":
    main()
