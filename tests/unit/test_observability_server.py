"""Health checks, ProgressCheck, and the /healthz /readyz /metrics HTTP server."""

from __future__ import annotations

import gzip
import http.client
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from controller.observability import (
    ControllerMetrics,
    HealthRegistry,
    HttpServer,
    ProgressCheck,
    Request,
    Response,
    health_routes,
    metrics_routes,
    start_http_server,
    start_observability_servers,
)
from tests.etcdproc import wait_until


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(server: HttpServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def servers() -> Iterator[list[HttpServer]]:
    started: list[HttpServer] = []
    yield started
    for server in started:
        server.stop()


# ProgressCheck -------------------------------------------------------------------------


def test_progress_check_grants_grace_then_fails_when_stale_and_recovers_on_beat() -> None:
    clock = FakeClock(100.0)
    check = ProgressCheck("watch", max_age_seconds=60, clock=clock)

    clock.now = 160.0
    assert check.check()[0] is True
    clock.now = 160.5
    ok, detail = check.check()
    assert ok is False
    assert "watch" in detail and "60.5s" in detail and "limit 60s" in detail

    check.beat()
    assert check.check()[0] is True
    assert check.age_seconds() == 0.0


def test_progress_check_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="positive"):
        ProgressCheck("watch", 0)


# HealthRegistry ------------------------------------------------------------------------


def test_health_report_lists_failures_and_survives_raising_checks() -> None:
    health = HealthRegistry()
    health.add_liveness("fine", lambda: (True, "all good"))
    health.add_liveness("stuck", lambda: (False, "workers stuck for 300s"))

    def broken() -> tuple[bool, str]:
        raise RuntimeError("cache not built")

    health.add_liveness("broken", broken)
    report = health.liveness()

    assert not report.ok
    assert {r.name: r.detail for r in report.failures} == {
        "stuck": "workers stuck for 300s",
        "broken": "check raised RuntimeError: cache not built",
    }
    health.remove("stuck")
    health.remove("broken")
    assert health.liveness().ok
    assert health.readiness().ok  # no readiness checks: ready


# HTTP ----------------------------------------------------------------------------------


def test_healthz_turns_503_when_progress_goes_stale(servers: list[HttpServer]) -> None:
    clock = FakeClock()
    watch = ProgressCheck("watch", max_age_seconds=30, clock=clock)
    health = HealthRegistry()
    health.add_liveness(watch.name, watch.check)
    server = start_http_server("127.0.0.1", 0, health_routes(health))
    servers.append(server)
    assert server.port > 0

    assert get(server, "/healthz")[0::2] == (200, "ok")

    clock.now = 31.0
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert "[-]watch failed: watch: no progress for 31.0s (limit 30s)" in body
    assert body.rstrip().endswith("livez check failed")

    watch.beat()
    assert get(server, "/livez")[0] == 200


def test_readyz_reports_readiness_checks_only(servers: list[HttpServer]) -> None:
    ready = {"synced": False}
    health = HealthRegistry()
    health.add_liveness("alive", lambda: (True, "ok"))
    health.add_readiness("informer", lambda: (ready["synced"], "cache synced" if ready["synced"]
                                              else "initial list not finished"))  # fmt: skip
    server = start_http_server("127.0.0.1", 0, health_routes(health))
    servers.append(server)

    status, _, body = get(server, "/readyz")
    assert status == 503
    assert "[-]informer failed: initial list not finished" in body
    assert "alive" not in body
    assert get(server, "/healthz")[0] == 200

    ready["synced"] = True
    assert get(server, "/readyz")[0::2] == (200, "ok")
    status, _, verbose = get(server, "/readyz?verbose")
    assert status == 200
    assert "[+]informer ok: cache synced" in verbose and "readyz check passed" in verbose


def test_metrics_endpoint_serves_prometheus_text(servers: list[HttpServer]) -> None:
    registry = CollectorRegistry()
    ControllerMetrics(registry).reconcile_finished("labworker", "success", 0.1)
    server = start_http_server("127.0.0.1", 0, metrics_routes(registry))
    servers.append(server)

    status, content_type, body = get(server, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'controller_runtime_reconcile_total{controller="labworker",result="success"} 1.0' in body


PROMETHEUS_SCRAPE_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2.x sends


def fetch(server: HttpServer, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_metrics_negotiate_openmetrics_with_exemplars_and_gzip(servers: list[HttpServer]) -> None:
    registry = CollectorRegistry()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    ControllerMetrics(registry).reconcile_finished("labworker", "success", 0.1, trace_id)
    server = start_http_server("127.0.0.1", 0, metrics_routes(registry))
    servers.append(server)

    scraped = fetch(
        server, "/metrics", {"Accept": PROMETHEUS_SCRAPE_ACCEPT, "Accept-Encoding": "gzip"}
    )

    assert scraped.status == 200
    assert scraped.getheader("Content-Type", "").startswith("application/openmetrics-text")
    assert scraped.getheader("Content-Encoding") == "gzip"
    text = gzip.decompress(scraped.body).decode()  # type: ignore[attr-defined]
    assert text.endswith("# EOF\n")
    assert f'# {{trace_id="{trace_id}"}} 0.1' in text

    plain = fetch(server, "/metrics", {})
    assert plain.getheader("Content-Encoding") is None
    assert "trace_id" not in plain.body.decode()  # type: ignore[attr-defined]


def test_metrics_can_be_restricted_to_some_families(servers: list[HttpServer]) -> None:
    registry = CollectorRegistry()
    ControllerMetrics(registry).cas_conflict("labworker")
    server = start_http_server("127.0.0.1", 0, metrics_routes(registry))
    servers.append(server)

    _, _, body = get(server, "/metrics?name[]=labctl_cas_conflicts_total")

    assert 'labctl_cas_conflicts_total{controller="labworker"} 1.0' in body
    assert "controller_runtime_reconcile_total" not in body


def test_separate_ports_for_metrics_and_health(servers: list[HttpServer]) -> None:
    started = start_observability_servers(
        HealthRegistry(), CollectorRegistry(), host="127.0.0.1", metrics_port=0, health_port=0
    )
    servers.extend(started)
    metrics_server, health_server = started

    assert metrics_server.port != health_server.port
    assert get(metrics_server, "/metrics")[0] == 200
    assert get(metrics_server, "/healthz")[0] == 404
    assert get(health_server, "/healthz")[0] == 200
    assert get(health_server, "/readyz")[0] == 200
    assert get(health_server, "/metrics")[0] == 404


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_one_port_serves_everything_when_ports_are_equal(servers: list[HttpServer]) -> None:
    port = free_port()
    started = start_observability_servers(
        HealthRegistry(), CollectorRegistry(), host="127.0.0.1", metrics_port=port, health_port=port
    )
    servers.extend(started)

    (server,) = started
    assert server.port == port
    for path in ("/metrics", "/healthz", "/readyz"):
        assert get(server, path)[0] == 200


def test_unknown_paths_failing_handlers_and_head(servers: list[HttpServer]) -> None:
    def explode(_request: Request) -> Response:
        raise RuntimeError("bug")

    server = start_http_server(
        "127.0.0.1", 0, {"/boom": explode, "/hi": lambda _r: Response(200, b"hello")}
    )
    servers.append(server)

    status, _, body = get(server, "/nope")
    assert status == 404 and "/hi" in body
    assert get(server, "/boom")[0] == 500
    assert get(server, "/hi", method="HEAD") == (200, "text/plain; charset=utf-8", "")
    assert get(server, "/hi")[2] == "hello"


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = start_http_server("127.0.0.1", 0, {})
    port = server.port
    server.stop()
    server.stop()

    rebound = start_http_server("127.0.0.1", port, {})
    rebound.stop()


def test_a_taken_port_is_reported_with_the_address(servers: list[HttpServer]) -> None:
    taken = start_http_server("127.0.0.1", 0, {})
    servers.append(taken)
    with pytest.raises(OSError, match=f"127.0.0.1:{taken.port}"):
        start_http_server("127.0.0.1", taken.port, metrics_routes(CollectorRegistry()))


def _request_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "process_request_thread" in t.name]


def test_clients_hanging_up_early_leave_no_traceback_and_the_server_serves_on(
    servers: list[HttpServer], capfd: pytest.CaptureFixture[str]
) -> None:
    # A response larger than the socket buffers: the server is still writing when the
    # client's RST arrives (BrokenPipe / ConnectionReset), as with a probe that timed out.
    served: list[str] = []

    def big(request: Request) -> Response:
        served.append(request.path)
        return Response(200, b"# metrics\n" * 300_000)

    server = start_http_server(
        "127.0.0.1", 0, {"/metrics": big, "/hi": lambda _r: Response(200, b"hi")}
    )
    servers.append(server)
    for path in ("/metrics", "/hi") * 5:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        # Linger 0: close() sends RST at once instead of a graceful FIN.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    wait_until(lambda: not _request_threads(), what="the hung-up requests to finish")

    assert get(server, "/hi") == (200, "text/plain; charset=utf-8", "hi")
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "ConnectionResetError" not in captured.err and "BrokenPipeError" not in captured.err
