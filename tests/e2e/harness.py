"""The end-to-end tests' harness; it lives in the package so that scripts and benchmarks share it."""

from pipeline.ops.local_worker import (
    REPO,
    WorkerProcess,
    create_pipeline_topics,
    env_for,
    produce_raw,
    produce_requests,
)

__all__ = ["REPO", "WorkerProcess", "create_pipeline_topics", "env_for", "produce_raw", "produce_requests"]
