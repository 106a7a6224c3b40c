"""The worker's Prometheus metrics: processing time, queue length (consumer lag) and callback (hook) time,
plus the counters an operator needs to see a pipeline without reading code.

One :class:`Metrics` per worker process, made by the worker's composition root and handed to every part
that counts something; nothing is registered at import. When the worker runs its roles as processes of
their own, prometheus_client's multiprocess mode adds the processes up on scrape (the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` for them): counters and histograms add, and each gauge says how its
per-process values combine (``multiprocess_mode``). Labels stay low in cardinality: roles, stages, error
codes, topic names, partitions and model names, never event ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """Every metric of one worker process, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.events_consumed = Counter(
            "pipeline_events_consumed", "Records read by a role's batch reader.", ["role", "topic"], registry=r
        )
        self.events_produced = Counter(
            "pipeline_events_produced",
            "Records written and acknowledged by the broker (acks=all), by destination topic.",
            ["topic"],
            registry=r,
        )
        self.produce_failed = Counter(
            "pipeline_produce_failed",
            "Records the producer could not write within the retry policy (their batch is rewound).",
            ["topic"],
            registry=r,
        )
        self.records_unwritable = Counter(
            "pipeline_records_unwritable",
            "Error events or dead letters the broker refused for good: skipped, each with a log line naming "
            "the record it was about.",
            ["topic"],
            registry=r,
        )
        self.events_failed = Counter(
            "pipeline_events_failed",
            "Events routed to the error topic, by the stage that failed and the error code.",
            ["stage", "error_code"],
            registry=r,
        )
        self.events_dead_lettered = Counter(
            "pipeline_events_dead_lettered",
            "Original records sent to the dead-letter topic, by stage and error code.",
            ["stage", "error_code"],
            registry=r,
        )
        self.results = Counter(
            "pipeline_results", "Inference results written to the output topic, by model.", ["model"], registry=r
        )
        self.retries = Counter(
            "pipeline_retries",
            "Transient failures retried with backoff, by what was retried (produce, model).",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "pipeline_batch_processing_seconds",
            "Time an agent spends on one micro-batch, from hand-over to its last output queued.",
            ["role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "pipeline_stage_seconds",
            "Time per processing stage of a batch (decode, inference, encode).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "pipeline_model_inference_seconds",
            "Model run time per micro-batch (in the executor thread).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "pipeline_batch_size",
            "Events per micro-batch handed to an agent.",
            ["role"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.hook_seconds = Histogram(
            "pipeline_hook_seconds",
            "Time per hook call (the callback time), by hook kind and name.",
            ["kind", "hook"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "pipeline_consumer_lag",
            "Records behind per partition (high watermark minus committed offset), read from the broker: "
            "the queue length.",
            ["group", "topic", "partition"],
            registry=r,
            multiprocess_mode="livemax",
        )
        # A sample appears once a model is loaded: a process without one (the input role alone) shows none.
        self.model_info = Gauge(
            "pipeline_model_info",
            "1 for the model served and the ONNX Runtime execution provider actually in use.",
            ["model", "version", "provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "pipeline_ready",
            "1 when the worker is connected, has partitions assigned and its model is warmed up.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.ready_check = Gauge(
            "pipeline_ready_check",
            "Each readiness check of a worker process: 1 when it holds.",
            ["check"],
            registry=r,
            multiprocess_mode="liveall",
        )

        # What liveness is computed from (pipeline/observability/health.py), per role and process.
        self.last_progress = Gauge(
            "pipeline_last_progress_time_seconds",
            "When the role last committed (or last found work to do), seconds since the Unix epoch.",
            ["role"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.work_pending = Gauge(
            "pipeline_work_pending",
            "1 while the role has batches in flight.",
            ["role"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.holding = Gauge(
            "pipeline_holding",
            "1 while the role holds its partitions on purpose: a batch read again after a backoff, the "
            "model's circuit open, or the writer's backlog full.",
            ["role"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.unstarted_since = Gauge(
            "pipeline_unstarted_since_time_seconds",
            "Since when the role has had an assigned partition the client never started reading (found, and "
            "assigned again), seconds since the Unix epoch; 0 while it has none.",
            ["role"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.partitions_reassigned = Counter(
            "pipeline_partitions_reassigned",
            "Assigned partitions the client never started reading, assigned again, by role.",
            ["role"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "pipeline_model_circuit_open",
            "1 while the model's circuit breaker is open: the model failed, events wait in Kafka.",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rewinds = Counter(
            "pipeline_rewinds",
            "Batches read again because of a cause outside their events (broker, registry, model), by role.",
            ["role"],
            registry=r,
        )
        self.isolated = Counter(
            "pipeline_events_isolated",
            "Events an unexpected exception was narrowed down to by splitting their batch, by role.",
            ["role"],
            registry=r,
        )

    def publish_model(self, name: str, version: str, provider: str) -> None:
        self.model_info.labels(name, version, provider).set(1)

    def observe_hook(self, kind: str, name: str, seconds: float) -> None:
        self.hook_seconds.labels(kind, name).observe(seconds)

    def observe_produced(self, topic: str, ok: bool) -> None:
        if ok:
            self.events_produced.labels(topic).inc()
        else:
            self.produce_failed.labels(topic).inc()
