"""One ONNX Runtime session's runs: each under its batch's deadline, and bisected when it raises.

Batch isolation: if ONNX Runtime raises on a batch, the batch is bisected until the culprits are found, so
their neighbours still get results. A run still going at the deadline is cancelled with
``RunOptions.terminate`` (pipeline/model/deadline.py) and raises :class:`Terminated`; a terminated run is
never bisected (each half would wait for the deadline again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.model.deadline import Watchdog
from pipeline.model.outcome import Failure, Outcome
from pipeline.serde.codes import ErrorCode

log = logging.getLogger("pipeline.model.runner")

Feeds = dict[str, np.ndarray]
# ONNX tensor type -> numpy dtype, for checking requests against the graph's inputs.
ORT_DTYPES: dict[str, np.dtype[Any]] = {
    f"tensor({k})": np.dtype(v)
    for k, v in {
        "float": "float32",
        "float16": "float16",
        "double": "float64",
        "int8": "int8",
        "int16": "int16",
        "int32": "int32",
        "int64": "int64",
        "uint8": "uint8",
        "uint16": "uint16",
        "uint32": "uint32",
        "uint64": "uint64",
        "bool": "bool",
    }.items()
}
Success = Callable[[int, dict[str, np.ndarray]], Outcome]
MakeFailure = Callable[..., Failure]


class Terminated(Exception):
    """The batch's deadline passed: its run was terminated, or the next run would start after it."""


class GuardedSession:
    """Runs feeds through a session; ``failure(code, message, retryable=...)`` makes the model's failures."""

    def __init__(
        self,
        session: Any,
        output_names: list[str],
        *,
        model: str,
        on_device: bool,
        device_id: int,
        failure: MakeFailure,
    ) -> None:
        self._session = session
        self._output_names = output_names
        self._model = model
        self._on_device = on_device
        self._device_id = device_id
        self._failure = failure
        self._watchdog = Watchdog(model)  # its thread starts with the first run that has a deadline

    def run_isolated(
        self,
        positions: list[int],
        feeds: Feeds,
        success: Success,
        outcomes: list[Outcome | None],
        deadline: float | None,
    ) -> None:
        """Run one batch; on an ONNX Runtime error, bisect so that only the failing events fail."""
        culprits: list[tuple[int, str]] = []
        try:
            self._bisect(positions, feeds, success, outcomes, culprits, deadline)
        except Terminated:
            # the culprits found before the deadline failed alone: their failures are their own
            for pos, message in culprits:
                outcomes[pos] = self._failure(ErrorCode.INFERENCE_FAILED, message)
            raise
        if not culprits:
            return
        # Every event failing even alone points at the model or device, not the inputs: worth a retry.
        systemic = len(culprits) == len(positions) and len(positions) > 1
        log.warning(
            "model %s: %d of %d events failed in ONNX Runtime (%s): %s",
            self._model,
            len(culprits),
            len(positions),
            "all of them: model or device fault" if systemic else "isolated by bisection",
            culprits[0][1],
        )
        for pos, message in culprits:
            outcomes[pos] = self._failure(ErrorCode.INFERENCE_FAILED, message, retryable=systemic)

    def _bisect(
        self,
        positions: list[int],
        feeds: Feeds,
        success: Success,
        outcomes: list[Outcome | None],
        culprits: list[tuple[int, str]],
        deadline: float | None,
    ) -> None:
        try:
            results = self.run(feeds, deadline)
        except Terminated:
            raise  # never bisect a terminated run: each half would wait for the deadline again
        except Exception as exc:
            if len(positions) == 1:
                culprits.append((positions[0], f"onnxruntime: {' '.join(str(exc).split())[:500]}"))
                return
            mid = len(positions) // 2
            for part in (slice(0, mid), slice(mid, None)):
                half = {k: v[part] for k, v in feeds.items()}
                self._bisect(positions[part], half, success, outcomes, culprits, deadline)
            return
        names = self._output_names
        if len(names) == 1:  # most models: one output, one view of it per event
            name, out = names[0], results[0]
            for row, pos in enumerate(positions):
                outcomes[pos] = success(pos, {name: out[row]})
            return
        for row, pos in enumerate(positions):
            outcomes[pos] = success(pos, {name: out[row] for name, out in zip(names, results, strict=True)})

    def run(self, feeds: Feeds, deadline: float | None) -> list[np.ndarray]:
        """One ONNX Runtime call, watched when it has a deadline; raises Terminated when the deadline
        stopped it (or had passed before it could start)."""
        if deadline is None:
            return self._invoke(feeds, None)
        if time.monotonic() >= deadline:
            raise Terminated
        options = ort.RunOptions()
        # ONNX Runtime's own logger would print every cancellation as an error; any failed run reaches us as
        # its exception, which the caller logs (or turns into the batch's TIMEOUT)
        options.log_severity_level = 4
        watch = self._watchdog.watch(options, deadline)
        try:
            return self._invoke(feeds, options)
        except Exception as exc:
            if self._watchdog.release(watch):
                raise Terminated from exc
            raise
        finally:
            self._watchdog.release(watch)

    def _invoke(self, feeds: Feeds, options: ort.RunOptions | None) -> list[np.ndarray]:
        """The ONNX Runtime call; on a GPU inputs are copied once and outputs stay there until fetched."""
        if not self._on_device:
            return list(self._session.run(self._output_names, feeds, options))
        binding = self._session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(binding, options)
        return list(binding.copy_outputs_to_cpu())

    def close(self) -> None:
        self._watchdog.close()
