"""The worker's Prometheus metrics: the seed's processing time, queue length (consumer lag) and callback
(hook) time, plus the counters an operator needs to see a pipeline without reading code.

One registry per process; a worker that runs its roles as processes of their own merges them on scrape
(``aggregate.py``). Labels stay low in cardinality: roles, stages, error codes, topic names, partitions
and model names, never event ids.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

EVENTS_CONSUMED = Counter(
    "pipeline_events_consumed_total",
    "Records read by a role's batch reader.",
    ["role", "topic"],
    registry=REGISTRY,
)
EVENTS_PRODUCED = Counter(
    "pipeline_events_produced_total",
    "Records written and acknowledged by the broker (acks=all), by destination topic.",
    ["topic"],
    registry=REGISTRY,
)
PRODUCE_FAILED = Counter(
    "pipeline_produce_failed_total",
    "Records the producer could not write within the retry policy (their batch is rewound).",
    ["topic"],
    registry=REGISTRY,
)
EVENTS_FAILED = Counter(
    "pipeline_events_failed_total",
    "Events routed to the error topic, by the stage that failed and the error code.",
    ["stage", "error_code"],
    registry=REGISTRY,
)
EVENTS_DEAD_LETTERED = Counter(
    "pipeline_events_dead_lettered_total",
    "Original records sent to the dead-letter topic, by stage and error code.",
    ["stage", "error_code"],
    registry=REGISTRY,
)
RESULTS = Counter(
    "pipeline_results_total",
    "Inference results written to the output topic, by model.",
    ["model"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "pipeline_retries_total",
    "Transient failures retried with backoff, by what was retried (produce, model).",
    ["kind"],
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "pipeline_batch_processing_seconds",
    "Time an agent spends on one micro-batch, from hand-over to its last output queued.",
    ["role"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "pipeline_stage_seconds",
    "Time per processing stage of a batch (decode, inference, encode).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "pipeline_model_inference_seconds",
    "Model run time per micro-batch (in the executor thread).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "pipeline_batch_size",
    "Events per micro-batch handed to an agent.",
    ["role"],
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
HOOK_SECONDS = Histogram(
    "pipeline_hook_seconds",
    "Time per hook call (the seed's callback time), by hook kind and name.",
    ["kind", "hook"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "pipeline_consumer_lag",
    "Records behind per partition (high watermark minus committed offset), read from the broker: "
    "the seed's queue length.",
    ["group", "topic", "partition"],
    registry=REGISTRY,
)
# Registered by ``publish_model`` once a model is loaded: a process without one (the input role on its own)
# shows no unlabelled info sample.
MODEL = Info(
    "pipeline_model",
    "The model served and the ONNX Runtime execution provider actually in use.",
    registry=None,
)
READY = Gauge(
    "pipeline_ready",
    "1 when the worker is connected, has partitions assigned and its model is warmed up.",
    registry=REGISTRY,
)


def publish_model(name: str, version: str, provider: str) -> None:
    MODEL.info({"model": name, "version": version, "provider": provider})
    with contextlib.suppress(ValueError):  # registered already
        REGISTRY.register(MODEL)


def observe_hook(kind: str, name: str, seconds: float) -> None:
    HOOK_SECONDS.labels(kind, name).observe(seconds)


def observe_produced(topic: str, ok: bool) -> None:
    if ok:
        EVENTS_PRODUCED.labels(topic).inc()
    else:
        PRODUCE_FAILED.labels(topic).inc()
