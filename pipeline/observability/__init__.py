"""Seeing a running worker: Prometheus metrics, readiness, health endpoints, logs, a status line."""
