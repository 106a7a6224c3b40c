"""One small HTTP server per worker: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

``/readyz`` answers 200 only while the worker is connected to the broker, has partitions, has its model
warm and holds nothing (no batch waiting out a backoff, the model's circuit closed), so an orchestrator
sends no traffic (and counts no restart) before then. ``/healthz`` answers 503 only when the hot path is
stuck with work pending and no known reason (pipeline/observability/health.py): the one case a restart
helps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

ReadinessProbe = Callable[[], dict[str, bool]]
LivenessProbe = Callable[[], dict[str, bool]]
MetricsSource = Callable[[], bytes]


class HealthServer:
    """``metrics`` and ``readiness`` are one process's own, or a supervisor's view of all its processes."""

    def __init__(
        self,
        port: int,
        readiness: ReadinessProbe,
        metrics: MetricsSource,
        liveness: LivenessProbe | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        probe = readiness
        alive = liveness or dict

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the http.server API names it
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    roles = alive()
                    stalled = sorted(role for role, ok in roles.items() if not ok)
                    body = json.dumps({"alive": not stalled, "stalled": stalled}).encode() + b"\n"
                    self._send(503 if stalled else 200, body, "application/json")
                elif path == "/readyz":
                    checks = probe()
                    ready = bool(checks) and all(checks.values())
                    body = json.dumps({"ready": ready, "checks": checks}).encode() + b"\n"
                    self._send(200 if ready else 503, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log lines
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
