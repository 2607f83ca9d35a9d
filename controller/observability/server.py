"""A tiny threaded HTTP server for /metrics, /healthz and /readyz.

stdlib only: probes and scrapes are a handful of requests per minute, and a dependency on
a web framework would be the biggest thing in the process.
"""

from __future__ import annotations

import gzip
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, exposition

from controller.observability.health import HealthRegistry, HealthReport
from controller.observability.logging import get_logger

_log = get_logger(__name__)

TEXT_PLAIN = "text/plain; charset=utf-8"
_SHUTDOWN_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Request:
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers by lower-case name (the last one wins if repeated)."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT_PLAIN
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra response headers (Content-Type and Content-Length are always sent)."""


Handler = Callable[[Request], Response]


class _QuietThreadingHTTPServer(ThreadingHTTPServer):
    """socketserver prints a traceback to stderr for every request that raises. A probe or
    scraper that hangs up early (a timed-out kubelet probe, `curl | head`) is routine, not an
    error: it is logged at debug level; anything else is logged once, as an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):  # BrokenPipe, ConnectionReset, ConnectionAborted
            _log.debug(
                "observability client hung up before the response was sent",
                client=str(client_address),
                error=type(exc).__name__,
            )
            return
        _log.exception("observability request failed", client=str(client_address))


class _IPv6ThreadingHTTPServer(_QuietThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_request_handler(routes: Mapping[str, Handler]) -> type[BaseHTTPRequestHandler]:
    class _RouteHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, *, send_body: bool) -> None:
            parts = urlsplit(self.path)
            handler = routes.get(parts.path)
            if handler is None:
                response = Response(
                    404, f"not found; serving {', '.join(sorted(routes))}\n".encode()
                )
            else:
                try:
                    response = handler(
                        Request(
                            parts.path,
                            parse_qs(parts.query, keep_blank_values=True),
                            {name.lower(): value for name, value in self.headers.items()},
                        )
                    )
                except Exception:
                    _log.exception("observability endpoint failed; answering 500", path=parts.path)
                    response = Response(500, b"internal error\n")
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes and scrapes arrive every few seconds; access logs would drown the
            # controller's own lines.
            return

    return _RouteHandler


class HttpServer:
    """A listening socket served by a daemon thread; ``port`` is the bound port."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Handler]) -> None:
        server_class = _IPv6ThreadingHTTPServer if ":" in host else _QuietThreadingHTTPServer
        handler = _make_request_handler(dict(routes))
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot listen on {host}:{port} for {', '.join(sorted(routes))}: "
                f"{exc.strerror or exc}",
            ) from exc
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self.paths = tuple(sorted(routes))
        self._thread: threading.Thread | None = None
        self._stop_lock = threading.Lock()
        self._stopped = False

    def start(self) -> HttpServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # stop() waits up to one poll interval for the loop to notice.
                kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
                name=f"http-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wait for the serving loop to end, close the socket. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def start_http_server(host: str, port: int, routes: Mapping[str, Handler]) -> HttpServer:
    """Bind ``host:port`` (0 = ephemeral; read ``.port``) and serve ``routes`` in a thread."""
    server = HttpServer(host, port, routes).start()
    _log.info("serving HTTP", host=host, port=server.port, paths=list(server.paths))
    return server


def _health_response(report: HealthReport, endpoint: str, request: Request) -> Response:
    """Kubernetes' format: ``ok``, or one ``[+]``/``[-]`` line per check when failing
    (or with ``?verbose``), so ``curl`` shows an operator which check failed and why."""
    if report.ok and "verbose" not in request.query:
        return Response(200, b"ok")
    lines = [
        f"[{'+' if result.ok else '-'}]{result.name} {'ok' if result.ok else 'failed'}: "
        f"{result.detail}"
        for result in report.results
    ]
    lines.append(f"{endpoint} check {'passed' if report.ok else 'failed'}")
    return Response(200 if report.ok else 503, ("\n".join(lines) + "\n").encode())


def health_routes(health: HealthRegistry) -> dict[str, Handler]:
    """``/healthz`` and ``/livez`` (liveness), ``/readyz`` (readiness)."""

    def liveness(request: Request) -> Response:
        return _health_response(health.liveness(), "livez", request)

    def readiness(request: Request) -> Response:
        return _health_response(health.readiness(), "readyz", request)

    return {"/healthz": liveness, "/livez": liveness, "/readyz": readiness}


def metrics_routes(registry: CollectorRegistry) -> dict[str, Handler]:
    """``/metrics`` as prometheus_client renders it for its own servers: the format the
    scraper's ``Accept`` asks for (OpenMetrics — the only one carrying the reconcile
    histogram's trace-id exemplars — or Prometheus text 0.0.4), gzip when
    ``Accept-Encoding`` allows, and ``?name[]=…`` to fetch only some families."""

    def metrics(request: Request) -> Response:
        encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
        names = request.query.get("name[]")
        body = encoder(registry.restricted_registry(names) if names else registry)
        if exposition.gzip_accepted(request.headers.get("accept-encoding", "")):
            return Response(200, gzip.compress(body), content_type, {"Content-Encoding": "gzip"})
        return Response(200, body, content_type)

    return {"/metrics": metrics}


def start_observability_servers(
    health: HealthRegistry,
    registry: CollectorRegistry,
    *,
    host: str = "0.0.0.0",
    metrics_port: int = 8080,
    health_port: int = 8081,
) -> list[HttpServer]:
    """Metrics and health endpoints: one server when the ports are equal, else two.

    Port 0 always means separate ephemeral ports. Stop every returned server at exit.
    """
    if metrics_port == health_port and metrics_port != 0:
        return [
            start_http_server(host, metrics_port, metrics_routes(registry) | health_routes(health))
        ]
    servers = [start_http_server(host, metrics_port, metrics_routes(registry))]
    try:
        servers.append(start_http_server(host, health_port, health_routes(health)))
    except OSError:
        servers[0].stop()
        raise
    return servers
