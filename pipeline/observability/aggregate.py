"""One ``/metrics`` and one ``/readyz`` for a worker whatever its process layout.

When the roles run as processes of their own, each serves its registry on a loopback port and the
supervisor answers on the configured port: a scrape fetches every process and adds the series up, so
dashboards, alerts and probes see one worker. Counters, histograms and summaries add (each process counts
its own events); identical gauge series (``pipeline_ready``, the model info) take the lowest value, so
"ready" means every process is ready.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

READINESS_CHECKS = ("connected", "partitions_assigned", "model_warm")
FETCH_TIMEOUT_S = 2.0

_ADDED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})
_SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def merge_expositions(texts: Iterable[str]) -> bytes:
    """Prometheus text expositions of several processes as one exposition."""
    families: dict[str, Metric] = {}
    series: dict[str, dict[_SeriesKey, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            values = series.setdefault(family.name, {})
            adds = family.type in _ADDED
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in values:
                    values[key] = sample.value
                elif adds and not sample.name.endswith("_created"):
                    values[key] += sample.value
                else:  # a creation time, or the same gauge seen by two processes
                    values[key] = min(values[key], sample.value)
    merged = []
    for name, metric in families.items():
        for (sample_name, labels), value in series[name].items():
            metric.add_sample(sample_name, dict(labels), value)
        merged.append(metric)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(merged))
    return generate_latest(registry)


def merge_readiness(per_process: Iterable[Mapping[str, bool] | None]) -> dict[str, bool]:
    """Each check holds only if it holds in every process; a process that did not answer holds none."""
    checks = dict.fromkeys(READINESS_CHECKS, True)
    for process in per_process:
        for name in READINESS_CHECKS:
            checks[name] = checks[name] and bool(process and process.get(name, False))
    return checks


def fetch_metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=FETCH_TIMEOUT_S) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def fetch_readiness(port: int | None) -> dict[str, bool] | None:
    """A process's /readyz checks (its 503 answer included), or None while it does not answer."""
    if port is None:
        return None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=FETCH_TIMEOUT_S) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return None
    try:
        checks = json.loads(body)["checks"]
    except (ValueError, KeyError, TypeError):
        return None
    return {str(k): bool(v) for k, v in checks.items()} if isinstance(checks, dict) else None


class ProcessEndpoints:
    """The loopback ports the worker processes reported, by process name (None until one reports)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.ports: dict[str, int | None] = dict.fromkeys(names)

    def metrics(self) -> bytes:
        texts = [fetch_metrics(port) for port in self.ports.values() if port is not None]
        return merge_expositions(text for text in texts if text is not None)

    def readiness(self) -> dict[str, bool]:
        return merge_readiness(fetch_readiness(port) for port in self.ports.values())


class _Snapshot:
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)
