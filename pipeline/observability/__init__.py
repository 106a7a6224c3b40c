"""Seeing a running worker: Prometheus metrics, health endpoints, consumer lag, logs, a status line."""
