"""The models a worker serves, by name: what a processor calls with a batch of mixed requests.

A request names its model (or none, meaning ``Settings.model``). Unknown names fail per event with
``UNKNOWN_MODEL``; known models are loaded once (the default one at start-up, so a worker that cannot
serve it does not start) and reused.

Each model's batches run under its deadline: ``batch_timeout_ms`` in its ``models.toml`` entry, else the
service's (``Settings.model_batch_timeout_ms``); a batch past it is cancelled and its unanswered events fail
as ``TIMEOUT`` (see pipeline/model/runner.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.model.errors import ModelError, UnknownModel
from pipeline.model.outcome import Failure, Outcome
from pipeline.model.registry import Registry, load_registry
from pipeline.serde.codes import ErrorCode, Stage

if TYPE_CHECKING:  # the runner (ONNX Runtime, the tokenizer) is imported when the first model loads
    from pipeline.model.providers import Device
    from pipeline.model.runner import ModelRunner, RawInput

log = logging.getLogger(__name__)


class ModelService:
    """Runners by model name, loaded on first use; ``run_batch`` groups a mixed batch by model."""

    def __init__(
        self,
        registry: Registry,
        cache: Path,
        *,
        default_model: str,
        device: Device = "auto",
        intra_op_threads: int | None = None,
        fp16: bool = False,
        preload: bool = True,
        inline_max_ms: float = 0.0,
        batch_timeout_ms: float = 0.0,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.default_model = default_model
        self._device: Device = device
        self._threads = intra_op_threads
        self._fp16 = fp16
        self._runners: dict[str, ModelRunner] = {}
        self._lock = threading.Lock()
        # One batch at a time: concurrent runs would only share the same cores or GPU stream.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-service")
        self._inline_max_s = inline_max_ms / 1000.0
        self._typical_s = float("inf")  # moving average of a batch's run time; unknown until one ran
        self._batch_timeout_ms = batch_timeout_ms  # 0: no deadline, unless a model's entry sets one
        if preload:
            self.runner(default_model)

    @classmethod
    def from_settings(cls, settings: Settings, *, preload: bool = True) -> ModelService:
        return cls(
            load_registry(settings.models_file),
            settings.model_cache,
            default_model=settings.model,
            device=settings.device,
            intra_op_threads=settings.intra_op_threads,
            preload=preload,
            inline_max_ms=settings.model_inline_max_ms,
            batch_timeout_ms=settings.model_batch_timeout_ms,
        )

    def runner(self, name: str | None = None) -> ModelRunner:
        """The loaded runner for ``name``; raises UnknownModel, ModelNotExported or ProviderUnavailable."""
        name = name or self.default_model
        with self._lock:
            found = self._runners.get(name)
            if found is None:
                from pipeline.model.runner import ModelRunner

                spec = self.registry.get(name)
                found = ModelRunner(
                    spec, self.cache, device=self._device, intra_op_threads=self._threads, fp16=self._fp16
                )
                self._runners[name] = found
            return found

    def deadline_s(self, name: str | None = None) -> float | None:
        """The model's batch deadline in seconds (None: none): its own ``batch_timeout_ms``, else the
        service's. Raises UnknownModel."""
        spec = self.registry.get(name or self.default_model)
        ms = self._batch_timeout_ms if spec.batch_timeout_ms is None else spec.batch_timeout_ms
        return ms / 1000.0 if ms > 0 else None

    def warm_pace(self, batch: int) -> float:
        """Events/s of the default model on one more warm-up batch of ``batch`` events, timed: what a reader
        sizes its fetch-ahead by before any real batch has run (``typical_batch_s`` is unknown until then)."""
        runner = self.runner()
        started = time.perf_counter()
        runner.warm_up(batch)
        return batch / max(time.perf_counter() - started, 1e-9)

    def probe(self, name: str | None = None) -> bool:
        """Whether the model answers one synthetic event within its batch deadline (see
        :meth:`ModelRunner.probe`). Runs on the caller's thread. Never raises for a model failure: a model
        that is unknown, cannot be loaded or does not answer is False."""
        try:
            runner = self.runner(name)
            deadline = self.deadline_s(name)
        except Exception as exc:  # ModelError, or ONNX Runtime refusing the file: no model to probe
            log.warning("model %s cannot be probed: %s", name or self.default_model, exc)
            return False
        return runner.probe(deadline)

    def run_batch(self, items: Sequence[tuple[str | None, RawInput]]) -> list[Outcome]:
        """``(model name or None, input)`` pairs -> one outcome each, in order."""
        outcomes: list[Outcome | None] = [None] * len(items)
        by_model: dict[str, list[int]] = {}
        for pos, (name, _) in enumerate(items):
            by_model.setdefault(name or self.default_model, []).append(pos)
        for name, positions in by_model.items():
            try:
                runner = self.runner(name)
            except UnknownModel as exc:
                for pos in positions:
                    outcomes[pos] = Failure(Stage.VALIDATE, ErrorCode.UNKNOWN_MODEL, str(exc), model=name)
                continue
            except ModelError as exc:  # known but not loadable here (not exported, no device)
                log.error("model %s cannot be loaded: %s", name, exc)
                for pos in positions:
                    outcomes[pos] = Failure(Stage.VALIDATE, ErrorCode.UNKNOWN_MODEL, str(exc), model=name)
                continue
            results = runner.run_batch([items[p][1] for p in positions], self.deadline_s(name))
            for pos, result in zip(positions, results, strict=True):
                outcomes[pos] = result
        return [o for o in outcomes if o is not None]

    async def run_batch_async(self, items: Sequence[tuple[str | None, RawInput]]) -> list[Outcome]:
        """``run_batch`` off the event loop (ONNX Runtime releases the GIL while it computes), or on it when
        this service's batches typically take less than ``inline_max_ms``: then the hop to the model
        thread and back (two thread switches, a future, a loop wake-up) costs more than the run itself.
        A slow batch moves the average up, so the next ones go back to the model thread."""
        if self._typical_s < self._inline_max_s:
            return self._timed_run(list(items))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed_run, list(items))

    @property
    def typical_batch_s(self) -> float:
        """Moving average of a batch's run time (inf until one ran)."""
        return self._typical_s

    @property
    def runs_inline(self) -> bool:
        """Whether the next batch runs on the caller's thread (see ``run_batch_async``)."""
        return self._typical_s < self._inline_max_s

    def _timed_run(self, items: list[tuple[str | None, RawInput]]) -> list[Outcome]:
        started = time.perf_counter()
        try:
            return self.run_batch(items)
        finally:
            took = time.perf_counter() - started
            typical = self._typical_s
            self._typical_s = took if typical == float("inf") else typical + 0.2 * (took - typical)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for runner in self._runners.values():
            runner.close()
