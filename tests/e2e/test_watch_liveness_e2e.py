"""The README's promise, with default settings: a black-holed etcd connection shows in
`/readyz` within 10 s, and the controller resumes without losing an event."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import ControllerProcess, all_in_phase, apply, worker_manifest
from tests.etcdproc import EtcdProcess, wait_until
from tests.faultproxy import FaultProxy


def test_a_black_holed_connection_is_noticed_within_ten_seconds_with_defaults(
    production_etcd: EtcdProcess, tmp_path: Path
) -> None:
    with FaultProxy(production_etcd.endpoint) as proxy:
        through_proxy = EtcdProcess(data_dir=tmp_path / "unused")
        through_proxy.client_port = proxy.port
        ctl = ControllerProcess(through_proxy, tmp_path).start()  # default watch settings
        try:
            ctl.wait_ready()
            apply(production_etcd, [worker_manifest("before")])
            wait_until(lambda: all_in_phase(production_etcd, "Ready", 1), what="1 Ready")

            proxy.blackhole()
            wait_until(
                lambda: "labworker-watch" in _failing_checks(ctl),
                timeout=10,
                what="the dead watch to show in /readyz",
            )
            apply(production_etcd, [worker_manifest("during")])  # invisible until healed

            proxy.pass_through()
            ctl.wait_ready(timeout=30)
            wait_until(lambda: all_in_phase(production_etcd, "Ready", 2), timeout=60, what="2")
            metrics = ctl.get("/metrics")[1]
            assert (
                'labctl_informer_watch_restarts_total{reason="silent",resource="labworkers"}'
                in (metrics)
            )
            assert ctl.get("/healthz")[0] == 200  # a short outage never restarts the process
        finally:
            ctl.kill()


def _failing_checks(ctl: ControllerProcess) -> str:
    status, body = ctl.get("/readyz?verbose")
    if status == 200:
        return ""
    return "\n".join(line for line in body.splitlines() if "fail" in line.lower())
