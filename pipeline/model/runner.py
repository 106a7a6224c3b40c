"""One model, loaded from the cache into an ONNX Runtime session, answering batches event by event.

``run_batch`` is synchronous and CPU/GPU bound; ONNX Runtime releases the GIL while it computes, so a
worker should call :meth:`ModelRunner.run_batch_async`, which runs the batch on the runner's own single
thread and lets the event loop keep consuming meanwhile. One thread per runner on purpose: two batches at
once on one session would only fight over the same intra-op threads (or the same GPU stream).

Batch isolation: each event is validated before batching and fails alone with its own error code; if ONNX
Runtime still raises on a batch, the batch is bisected until the culprits are found, so their neighbours
still get results (pipeline/model/session.py runs and bisects).

Deadlines: ``run_batch`` takes an optional deadline for the whole call. A run still going at the deadline
is cancelled with ``RunOptions.terminate`` (pipeline/model/deadline.py), and every event of the batch
without an outcome by then fails as ``TIMEOUT``, retryable: the same event may well succeed later, and
whether to try again is the caller's decision. A terminated run is never bisected (each half would wait
again); nothing else of the batch runs after its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.model.errors import InputError, ModelError
from pipeline.model.inputs import ModelInput
from pipeline.model.outcome import Failure, ModelInfo, Outcome, Success
from pipeline.model.providers import CPU, Device, create_session, default_intra_op_threads
from pipeline.model.registry import TEXT_EMBEDDING, ModelSpec, resolve_model_file
from pipeline.model.session import ORT_DTYPES, Feeds, GuardedSession, Terminated
from pipeline.model.texts import mixed_texts
from pipeline.model.tokenize import TextTokenizer
from pipeline.serde.codes import ErrorCode, Stage

log = logging.getLogger(__name__)

RawInput = ModelInput | Mapping[str, Any]
_WireInput = tuple[str, str, list[int], int, np.dtype[Any], np.dtype[Any]]


class ModelRunner:
    """A loaded model. Create it once at start-up (it warms up), then call ``run_batch(_async)``."""

    def __init__(
        self,
        spec: ModelSpec,
        cache: Path,
        *,
        device: Device = "auto",
        intra_op_threads: int | None = None,
        fp16: bool = False,
        device_id: int = 0,
        warm_up: bool = True,
        warm_up_batch: int = 32,
    ) -> None:
        self.spec = spec
        self.path = resolve_model_file(spec, cache)
        self.intra_op_threads = default_intra_op_threads() if intra_op_threads is None else intra_op_threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.intra_op_threads  # 0 lets ONNX Runtime decide
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: a worker shares its cores with the Kafka
        # clients, the event loop and often the broker, and a spinning pool starves them between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session, self.provider = create_session(
            self.path, options, device, tensorrt=spec.tensorrt, device_id=device_id
        )
        fp16_path = spec.fp16_path(cache)
        if fp16 and self.provider != CPU and fp16_path is not None and fp16_path.is_file():
            self._session, self.provider = create_session(fp16_path, options, "cuda", device_id=device_id)
            self.path = fp16_path
        elif fp16:
            log.info("model %s: fp16 variant not used (provider %s, file %s)", spec.name, self.provider, fp16_path)
        self.info = ModelInfo(spec.name, spec.version, self.provider)
        self.inputs = {i.name: (i.type, list(i.shape)) for i in self._session.get_inputs()}
        self.outputs = {o.name: (o.type, list(o.shape)) for o in self._session.get_outputs()}
        self._check_mapping()
        self._wire_inputs = self._wire_input_specs()
        self._success = self._tensor_success()
        self._output_names = list(dict.fromkeys(spec.outputs.values()))
        self._tokenizer: TextTokenizer | None = None
        if spec.task == TEXT_EMBEDDING:
            assert spec.max_seq_length is not None
            self._tokenizer = TextTokenizer(spec.tokenizer_path(cache), spec.max_seq_length)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{spec.name}")
        self.session = GuardedSession(
            self._session,
            self._output_names,
            model=spec.name,
            on_device=self.provider != CPU,
            device_id=device_id,
            failure=self._failure,
        )
        log.info(
            "model %s v%s loaded from %s on %s (intra-op threads %s)",
            spec.name,
            spec.version,
            self.path,
            self.provider,
            self.intra_op_threads,
        )
        if warm_up:
            self.warm_up(warm_up_batch)

    # -- public API --------------------------------------------------------------------------------

    @property
    def max_batch_size(self) -> int:
        return self.spec.max_batch_size

    def run_batch(self, inputs: Sequence[RawInput], deadline_s: float | None = None) -> list[Outcome]:
        """One outcome per input, in order. Never raises for a bad event; see the module docstring.

        ``deadline_s`` (None: none) bounds the whole call from its start; events without an outcome when it
        passes fail as ``TIMEOUT``.
        """
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"a deadline is positive or None, not {deadline_s!r}")
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        outcomes: list[Outcome | None] = [None] * len(inputs)
        try:
            self._run_all(inputs, outcomes, deadline)
        except Terminated:
            assert deadline_s is not None
            late = sum(o is None for o in outcomes)
            ms = f"{deadline_s * 1000:g} ms"
            log.warning(
                "model %s: batch cancelled at its deadline of %s; %d of %d events time out",
                self.spec.name,
                ms,
                late,
                len(inputs),
            )
            timeout = self._failure(
                ErrorCode.TIMEOUT,
                f"model {self.spec.name!r} did not answer within its batch deadline of {ms}; the run was cancelled",
                retryable=True,
            )
            outcomes = [o if o is not None else timeout for o in outcomes]
        return [o if o is not None else self._lost() for o in outcomes]

    async def run_batch_async(self, inputs: Sequence[RawInput], deadline_s: float | None = None) -> list[Outcome]:
        """``run_batch`` on the runner's own thread, so the event loop keeps running meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_batch, list(inputs), deadline_s)

    def warm_up(self, batch: int = 32) -> None:
        """Run a representative batch so the first real batch does not pay for allocations and kernels.

        No deadline: a first run may build TensorRT engines or pick CUDA kernels for minutes, and a model
        that cannot finish it should not start; a worker stuck here never becomes ready, which is seen.
        """
        failed = [o for o in self.run_batch(self._sample(batch)) if isinstance(o, Failure)]
        if failed:
            raise ModelError(f"model {self.spec.name!r} failed its warm-up batch: {failed[0].message}")

    def probe(self, deadline_s: float | None) -> bool:
        """Whether the model answers one synthetic event (the warm-up's sample) within ``deadline_s``.

        For a caller whose batch failed as a whole and who wants to know whether the model itself works
        before blaming (and dead-lettering) the events. Never raises for a model failure: that is False.
        """
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"a deadline is positive or None, not {deadline_s!r}")
        try:
            outcomes = self.run_batch(self._sample(1), deadline_s)
        except Exception:  # run_batch answers per event; this is for the unforeseen (a closed runner, ...)
            log.warning("model %s: probe raised", self.spec.name, exc_info=True)
            return False
        failed = [o for o in outcomes if isinstance(o, Failure)]
        if failed:
            log.warning("model %s: probe failed (%s): %s", self.spec.name, failed[0].code, failed[0].message)
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """What `pipeline model info` and metrics show."""
        return {
            "name": self.spec.name,
            "version": self.spec.version,
            "task": self.spec.task,
            "provider": self.provider,
            "path": str(self.path),
            "intra_op_threads": self.intra_op_threads,
            "max_batch_size": self.max_batch_size,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.session.close()

    def _sample(self, batch: int) -> list[RawInput]:
        """A representative batch of ``batch`` events (capped at the model's batch size): mixed texts, or
        zero tensors of the graph's shapes (a dynamic axis taken as 1)."""
        n = max(1, min(batch, self.max_batch_size))
        if self._tokenizer is not None:
            return [ModelInput(text=t) for t in mixed_texts(n, seed=1)]
        zeros = {
            req: np.zeros(
                [d if isinstance(d, int) else 1 for d in self.inputs[graph][1][1:]],
                dtype=ORT_DTYPES.get(self.inputs[graph][0], np.dtype("float32")),
            )
            for req, graph in self.spec.inputs.items()
        }
        return [ModelInput(tensors=zeros) for _ in range(n)]

    def _run_all(self, inputs: Sequence[RawInput], outcomes: list[Outcome | None], deadline: float | None) -> None:
        """Fill ``outcomes``; raises Terminated when the deadline passes (the filled ones stay)."""
        if self._tokenizer is None and self._run_tensors_fast(inputs, outcomes, deadline):
            return
        valid: list[tuple[int, ModelInput]] = []
        for pos, raw in enumerate(inputs):
            try:
                item = raw if isinstance(raw, ModelInput) else ModelInput.from_payload(raw)
                valid.append((pos, item))
            except InputError as exc:
                outcomes[pos] = self._failure(exc.code, str(exc))
        if self._tokenizer is not None:
            self._run_texts(valid, outcomes, deadline)
        else:
            self._run_tensors(valid, outcomes, deadline)

    # -- text ----------------------------------------------------------------------------------------

    def _run_texts(
        self, valid: list[tuple[int, ModelInput]], outcomes: list[Outcome | None], deadline: float | None
    ) -> None:
        assert self._tokenizer is not None
        texts: list[str] = []
        positions: list[int] = []
        for pos, item in valid:
            if item.text is None or not item.text.strip():
                what = "tensors" if item.tensors else "whitespace only" if item.text else "no text"
                outcomes[pos] = self._failure(ErrorCode.EMPTY_TEXT, f"text model got {what}")
            else:
                texts.append(item.text)
                positions.append(pos)
        if not texts:
            return
        encoded = self._tokenizer.encode(texts)
        truncated = {p: e.truncated for p, e in zip(positions, encoded, strict=True)}
        out_name = self.spec.outputs["embedding"]

        def success(pos: int, row: dict[str, np.ndarray]) -> Outcome:
            emb = row[out_name].astype(np.float32, copy=False)
            return Success(self.info, embedding=emb, truncated=truncated[pos])

        for batch in self._tokenizer.batches(encoded, positions, self.max_batch_size):
            self.session.run_isolated(batch.positions, batch.feeds(self.spec.inputs), success, outcomes, deadline)

    # -- tensors -------------------------------------------------------------------------------------

    def _run_tensors(
        self, valid: list[tuple[int, ModelInput]], outcomes: list[Outcome | None], deadline: float | None
    ) -> None:
        groups: dict[tuple[tuple[int, ...], ...], list[tuple[int, dict[str, np.ndarray]]]] = {}
        for pos, item in valid:
            try:
                feeds = self._validate_tensors(item)
            except InputError as exc:
                outcomes[pos] = self._failure(exc.code, str(exc))
                continue
            key = tuple(a.shape for a in feeds.values())
            groups.setdefault(key, []).append((pos, feeds))
        success = self._success

        for members in groups.values():
            for start in range(0, len(members), self.max_batch_size):
                chunk = members[start : start + self.max_batch_size]
                stacked = {g: np.stack([f[g] for _, f in chunk]) for g in chunk[0][1]}
                self.session.run_isolated([p for p, _ in chunk], stacked, success, outcomes, deadline)

    def _run_tensors_fast(
        self, inputs: Sequence[RawInput], outcomes: list[Outcome | None], deadline: float | None
    ) -> bool:
        """The common case in one pass: every event is a wire payload whose tensors have exactly the model's
        names, dtypes and shapes, and no NaN. Their bytes are joined and read as one [B, ...] array per
        input instead of one small array per event. Anything else (or a NaN anywhere) returns False and
        the batch takes the per-event path, which finds and isolates the culprits.
        """
        n = len(inputs)
        if n == 0 or n > self.max_batch_size:
            return False
        expected = self._wire_inputs
        if expected is None:
            return False
        chunks: dict[str, list[bytes]] = {req: [] for req in expected}
        for raw in inputs:
            if raw.__class__ is not dict and (isinstance(raw, ModelInput) or not isinstance(raw, Mapping)):
                return False
            wire = raw.get("tensors")
            if not wire or len(wire) != len(expected):
                return False
            for tensor in wire:
                spec = expected.get(tensor.get("name"))
                if spec is None or tensor.get("dtype") != spec[1] or list(tensor.get("shape", ())) != spec[2]:
                    return False
                data = tensor.get("data", b"")
                if len(data) != spec[3]:
                    return False
                chunks[tensor["name"]].append(data)
        feeds: Feeds = {}
        for req, (graph, _, dims, _, want, little) in expected.items():
            if len(chunks[req]) != n:
                return False
            arr = np.frombuffer(b"".join(chunks[req]), dtype=little).reshape(n, *dims).astype(want, copy=False)
            if arr.dtype.kind == "f" and not self.spec.allow_nan and not np.isfinite(arr).all():
                return False
            feeds[graph] = arr
        success = self._success

        self.session.run_isolated(list(range(n)), feeds, success, outcomes, deadline)
        return True

    def _wire_input_specs(self) -> dict[str, _WireInput] | None:
        """Per request input name, what the one-pass path expects of a wire tensor (the graph input's name,
        dtype name, dims without the batch axis, byte length, dtype and its little-endian form), or None
        where a dim is not fixed: the session's inputs never change, so this is worked out once."""
        expected: dict[str, _WireInput] = {}
        for req, graph in self.spec.inputs.items():
            if graph not in self.inputs:
                return None
            ort_type, shape = self.inputs[graph]
            want = ORT_DTYPES.get(ort_type)
            dims = shape[1:]
            if want is None or not all(isinstance(d, int) for d in dims):
                return None
            size = int(np.prod(dims, dtype=np.int64)) * want.itemsize
            expected[req] = (graph, want.name, [int(d) for d in dims], size, want, want.newbyteorder("<"))
        return expected

    def _tensor_success(self) -> Callable[[int, dict[str, np.ndarray]], Outcome]:
        """An event's outcome from its row of the outputs, keyed by graph output name: renamed to the
        registry's names, or the row itself where the names are the same (it is made for this event). Made
        once per session, as the wire inputs' specs: the names and the model's info never change."""
        info = self.info
        inverse = {graph: name for name, graph in self.spec.outputs.items()}
        if all(graph == name for graph, name in inverse.items()):
            return lambda pos, row: Success(info, outputs=row)
        return lambda pos, row: Success(info, outputs={inverse[g]: v for g, v in row.items()})

    def _validate_tensors(self, item: ModelInput) -> dict[str, np.ndarray]:
        """Graph input name -> the event's array, or InputError with the code that says what is wrong."""
        if not item.tensors:
            raise InputError(ErrorCode.BAD_SHAPE, f"tensor model {self.spec.name!r} got no tensors")
        unexpected = set(item.tensors) - set(self.spec.inputs)
        if unexpected:
            raise InputError(ErrorCode.BAD_SHAPE, f"unexpected input tensors {sorted(unexpected)}")
        feeds: dict[str, np.ndarray] = {}
        for req, graph in self.spec.inputs.items():
            arr = item.tensors.get(req)
            if arr is None:
                raise InputError(ErrorCode.BAD_SHAPE, f"missing input tensor {req!r}")
            arr = np.asarray(arr)
            ort_type, shape = self.inputs[graph]
            want = ORT_DTYPES.get(ort_type)
            if want is None or arr.dtype != want:
                raise InputError(ErrorCode.BAD_DTYPE, f"tensor {req!r}: dtype {arr.dtype}, model wants {want}")
            dims = shape[1:]
            if arr.ndim != len(dims) or any(
                isinstance(d, int) and d != a for d, a in zip(dims, arr.shape, strict=True)
            ):
                shown = [d if isinstance(d, int) else "?" for d in dims]
                raise InputError(ErrorCode.BAD_SHAPE, f"tensor {req!r}: shape {list(arr.shape)}, model wants {shown}")
            if arr.dtype.kind == "f" and not self.spec.allow_nan and not np.isfinite(arr).all():
                raise InputError(ErrorCode.NAN_TENSOR, f"tensor {req!r} holds NaN or infinity")
            feeds[graph] = arr
        return feeds

    def _check_mapping(self) -> None:
        missing_in = set(self.spec.inputs.values()) - set(self.inputs)
        missing_out = set(self.spec.outputs.values()) - set(self.outputs)
        unmapped = set(self.inputs) - set(self.spec.inputs.values())
        if missing_in or missing_out or unmapped:
            raise ModelError(
                f"models.toml entry {self.spec.name!r} does not match {self.path}: graph inputs "
                f"{sorted(self.inputs)}, outputs {sorted(self.outputs)}"
            )

    def _failure(self, code: ErrorCode, message: str, *, retryable: bool = False) -> Failure:
        return Failure(Stage.INFERENCE, code, message, retryable=retryable, model=self.spec.name)

    def _lost(self) -> Failure:  # pragma: no cover - every path above fills its outcome
        return self._failure(ErrorCode.INFERENCE_FAILED, "no outcome was produced", retryable=True)
