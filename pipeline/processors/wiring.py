"""Builds a worker's roles from Settings: codecs, model service, hooks, writer, stages."""

from __future__ import annotations

import logging
import os
import socket

from pipeline.config import Settings
from pipeline.model.registry import load_registry
from pipeline.model.service import ModelService
from pipeline.observability.metrics import observe_hook, publish_model
from pipeline.processors.app import HotPath, RoleSpec
from pipeline.processors.events import EventCodecs
from pipeline.processors.hooks import HookRegistry
from pipeline.processors.inference_stage import InferenceStage
from pipeline.processors.input_stage import InputStage
from pipeline.processors.offsets import OffsetTracker
from pipeline.processors.retry import RetryPolicy
from pipeline.processors.routing import FailureRouter

log = logging.getLogger("pipeline.wiring")


def worker_label(settings: Settings) -> str:
    """What results name as their worker: the configured id, else host and pid (never used for membership)."""
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"


def build_roles(settings: Settings, roles: tuple[str, ...], hot_path: HotPath) -> list[RoleSpec]:
    codecs = EventCodecs.from_settings(settings)
    hooks = HookRegistry.from_paths(
        settings.hooks_pre, settings.hooks_post, settings.hooks_error, observer=observe_hook
    )
    router = FailureRouter(
        hot_path.writer,
        codecs,
        settings.topics.error,
        settings.topics.dead_letter,
        group=settings.group,
        hooks=hooks,
    )
    specs: list[RoleSpec] = []
    if "input" in roles:
        registry = load_registry(settings.models_file)
        input_tracker = OffsetTracker()
        stage = InputStage(
            codecs,
            hot_path.writer,
            input_tracker,
            _with_group(router, f"{settings.group}.input"),
            settings.topics.inference,
            settings.topics.inference_priority,
            frozenset(registry.names()),
            settings.model,
            yield_every=settings.batch_size,
        )
        specs.append(RoleSpec("input", [settings.topics.input], stage, input_tracker))
    if "inference" in roles:
        models = ModelService.from_settings(settings)  # loads and warms up the default model
        runner = models.runner()
        publish_model(runner.info.name, runner.info.version, runner.provider)
        hot_path.provider = runner.provider
        retry = RetryPolicy(
            max_attempts=settings.retry_max_attempts, base_delay_s=settings.retry_base_delay_ms / 1000.0
        )
        inference_tracker = OffsetTracker()
        inference = InferenceStage(
            EventCodecs.from_settings(settings, validate=False),
            models,
            hot_path.writer,
            inference_tracker,
            _with_group(router, f"{settings.group}.inference"),
            settings.topics.output,
            worker_label(settings),
            hooks=hooks,
            retry=retry,
            batch_size=settings.batch_size,
            item_budget_s=settings.batch_max_wait_ms / 1000.0,
            max_item_batches=max(1, settings.input_batch_size // settings.batch_size),
        )
        specs.append(
            RoleSpec(
                "inference",
                [settings.topics.inference],
                inference,
                inference_tracker,
                priority_topics=[settings.topics.inference_priority],
                item_size=inference.item_size,
            )
        )
    return specs


def _with_group(router: FailureRouter, group: str) -> FailureRouter:
    return FailureRouter(
        router.writer, router.codecs, router.error_topic, router.dead_letter_topic, group, router.hooks
    )
