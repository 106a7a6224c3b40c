"""The tiny tensor model against numpy, per-event validation and batch isolation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pipeline.model import (
    Failure,
    ModelInput,
    ModelRunner,
    ModelService,
    Registry,
    Success,
    encode_tensor,
    tiny,
)
from pipeline.serde import ErrorCode


def x_of(value: float) -> ModelInput:
    return ModelInput(tensors={"x": np.full(8, value, dtype=np.float32)})


def y_of(outcome: object) -> np.ndarray:
    assert isinstance(outcome, Success), outcome
    return outcome.outputs["y"]


def test_tiny_model_matches_numpy(tiny_runner: ModelRunner) -> None:
    xs = np.random.default_rng(3).standard_normal((37, 8)).astype(np.float32)
    outcomes = tiny_runner.run_batch([ModelInput(tensors={"x": row}) for row in xs])
    got = np.stack([y_of(o) for o in outcomes])
    assert got.shape == (37, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, tiny.reference(xs), atol=1e-6)
    assert (got == 0).any() and (got > 0).any()  # relu both cuts and passes
    assert outcomes[0].model is not None and outcomes[0].model.name == "tiny"


def test_tiny_model_file_is_generated_once(registry: Registry, tmp_path: Path) -> None:
    spec = registry.get("tiny")
    path, written = tiny.ensure(spec.path(tmp_path))
    assert written and path.is_file()
    assert tiny.ensure(spec.path(tmp_path)) == (path, False)


def test_wire_payloads_decode_and_bad_ones_fail_alone(tiny_runner: ModelRunner) -> None:
    good = np.arange(8, dtype=np.float32) - 4
    wire = encode_tensor("x", good)
    short = {**wire, "data": wire["data"][:-4]}
    payloads = [
        {"tensors": [wire]},
        {"tensors": [{**wire, "dtype": "float64", "data": good.astype(np.float64).tobytes()}]},
        {"tensors": [short]},
        {"tensors": [{**wire, "dtype": "complex64"}]},
        ("TensorPayload", {"tensors": [wire]}),  # fastavro tuple notation
    ]
    outcomes = tiny_runner.run_batch(payloads)
    np.testing.assert_allclose(y_of(outcomes[0]), tiny.reference(good[None])[0], atol=1e-6)
    assert isinstance(outcomes[1], Failure) and outcomes[1].code == ErrorCode.BAD_DTYPE
    assert isinstance(outcomes[2], Failure) and outcomes[2].code == ErrorCode.TENSOR_SIZE_MISMATCH
    assert isinstance(outcomes[3], Failure) and outcomes[3].code == ErrorCode.BAD_DTYPE
    np.testing.assert_array_equal(y_of(outcomes[4]), y_of(outcomes[0]))


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (ModelInput(tensors={"x": np.zeros(9, dtype=np.float32)}), ErrorCode.BAD_SHAPE),
        (ModelInput(tensors={"x": np.zeros((1, 8), dtype=np.float32)}), ErrorCode.BAD_SHAPE),
        (ModelInput(tensors={"x": np.zeros(8, dtype=np.int64)}), ErrorCode.BAD_DTYPE),
        (ModelInput(tensors={"x": np.array([np.nan] + [0.0] * 7, dtype=np.float32)}), ErrorCode.NAN_TENSOR),
        (ModelInput(tensors={"z": np.zeros(8, dtype=np.float32)}), ErrorCode.BAD_SHAPE),
        (ModelInput(tensors={}), ErrorCode.BAD_SHAPE),
        (ModelInput(text="a text for a tensor model"), ErrorCode.BAD_SHAPE),
    ],
)
def test_a_bad_event_fails_alone(tiny_runner: ModelRunner, bad: ModelInput, code: ErrorCode) -> None:
    outcomes = tiny_runner.run_batch([x_of(1.0), bad, x_of(-1.0)])
    assert isinstance(outcomes[1], Failure) and outcomes[1].code == code
    assert not outcomes[1].retryable and outcomes[1].message
    np.testing.assert_allclose(y_of(outcomes[0]), tiny.reference(np.ones((1, 8), np.float32))[0])
    np.testing.assert_allclose(y_of(outcomes[2]), tiny.reference(-np.ones((1, 8), np.float32))[0])


def test_ort_failure_is_bisected_to_the_culprits(tiny_runner: ModelRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tiny_runner.session.run
    calls: list[int] = []

    def poisoned(feeds: dict[str, np.ndarray], deadline: float | None) -> list[np.ndarray]:
        calls.append(len(feeds["x"]))
        if (feeds["x"][:, 0] == 999).any():
            raise RuntimeError("[ONNXRuntimeError] forced failure")
        return real(feeds, deadline)

    monkeypatch.setattr(tiny_runner.session, "run", poisoned)
    values = [float(i) for i in range(16)]
    values[5] = values[11] = 999.0
    outcomes = tiny_runner.run_batch([x_of(v) for v in values])
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, Failure)]
    assert failed == [5, 11]
    for i in failed:
        f = outcomes[i]
        assert isinstance(f, Failure) and f.code == ErrorCode.INFERENCE_FAILED and "forced failure" in f.message
        assert not f.retryable  # its neighbours ran: the input is to blame
    for i, v in enumerate(values):
        if i not in failed:
            np.testing.assert_allclose(y_of(outcomes[i]), tiny.reference(np.full((1, 8), v, np.float32))[0])
    assert calls[0] == 16 and len(calls) < 2 * 16  # bisection, not one call per event


def test_a_batch_failing_everywhere_is_retryable(tiny_runner: ModelRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(feeds: dict[str, np.ndarray], deadline: float | None) -> list[np.ndarray]:
        raise RuntimeError("device lost")

    monkeypatch.setattr(tiny_runner.session, "run", broken)
    outcomes = tiny_runner.run_batch([x_of(1.0), x_of(2.0), x_of(3.0)])
    assert all(isinstance(o, Failure) and o.retryable and o.code == ErrorCode.INFERENCE_FAILED for o in outcomes)


def test_batches_above_the_maximum_are_split(registry: Registry, tmp_path: Path) -> None:
    spec = registry.get("tiny").model_copy(update={"max_batch_size": 4})
    runner = ModelRunner(spec, tmp_path, device="cpu")
    seen: list[int] = []
    real = runner.session.run
    runner.session.run = lambda feeds, deadline: seen.append(len(feeds["x"])) or real(feeds, deadline)  # type: ignore[method-assign]
    outcomes = runner.run_batch([x_of(float(i)) for i in range(10)])
    runner.close()
    assert all(isinstance(o, Success) for o in outcomes)
    assert seen == [4, 4, 2]


def test_async_helper_returns_the_same_outcomes(tiny_runner: ModelRunner) -> None:
    inputs = [x_of(0.5), x_of(-2.0)]
    got = asyncio.run(tiny_runner.run_batch_async(inputs))
    want = tiny_runner.run_batch(inputs)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(y_of(a), y_of(b))


def test_service_fails_unknown_models_per_event(registry: Registry, tmp_path: Path) -> None:
    service = ModelService(registry, tmp_path, default_model="tiny", device="cpu")
    outcomes = service.run_batch([("tiny", x_of(1.0)), ("no-such-model", x_of(1.0)), (None, x_of(2.0))])
    service.close()
    assert isinstance(outcomes[0], Success) and isinstance(outcomes[2], Success)
    assert isinstance(outcomes[1], Failure) and outcomes[1].code == ErrorCode.UNKNOWN_MODEL
    assert "no-such-model" in outcomes[1].message


def test_the_joined_bytes_fast_path_equals_the_per_event_path(tiny_runner: ModelRunner) -> None:
    from pipeline.model import tiny as tiny_module
    from pipeline.model.inputs import encode_tensor

    xs = np.random.default_rng(7).standard_normal((40, 8)).astype(np.float32)
    wire = [{"tensors": [encode_tensor("x", x)]} for x in xs]
    fast = tiny_runner.run_batch(wire)  # every payload well-formed: one joined array
    slow = tiny_runner.run_batch([ModelInput(tensors={"x": x}) for x in xs])  # per-event arrays
    expected = tiny_module.reference(xs)
    np.testing.assert_allclose(np.stack([y_of(o) for o in fast]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.stack([y_of(o) for o in fast]), np.stack([y_of(o) for o in slow]))
    wire[5] = {"tensors": [encode_tensor("x", np.full(8, np.nan, np.float32))]}
    mixed = tiny_runner.run_batch(wire)  # a NaN anywhere: the per-event path isolates it
    assert [i for i, o in enumerate(mixed) if not isinstance(o, Success)] == [5]


def test_fast_batches_run_inline_and_a_slow_one_moves_them_back_to_the_model_thread(
    registry: Registry, tmp_path: Path
) -> None:
    import threading
    import time

    service = ModelService(registry, tmp_path, default_model="tiny", device="cpu", inline_max_ms=5.0)
    threads: list[str] = []
    real = service.run_batch

    def spy(items: object, delay_s: float = 0.0) -> list[object]:
        threads.append(threading.current_thread().name)
        time.sleep(delay_s)
        return real(items)  # type: ignore[arg-type]

    async def run(delay_s: float = 0.0) -> None:
        service.run_batch = lambda items: spy(items, delay_s)  # type: ignore[method-assign]
        outcomes = await service.run_batch_async([(None, x_of(1.0))])
        assert isinstance(outcomes[0], Success)

    async def scenario() -> None:
        me = threading.current_thread().name
        await run()  # unknown speed: the model thread
        assert threads[-1] != me and service.runs_inline
        await run()  # fast: on the loop's own thread
        assert threads[-1] == me
        await run(delay_s=0.05)  # a slow batch, still inline, moves the average past the limit
        assert not service.runs_inline
        await run()
        assert threads[-1] != me

    try:
        asyncio.run(scenario())
    finally:
        service.close()


def test_inline_runs_are_off_by_default(registry: Registry, tmp_path: Path) -> None:
    service = ModelService(registry, tmp_path, default_model="tiny", device="cpu")
    try:
        asyncio.run(service.run_batch_async([(None, x_of(1.0))]))
        assert service.typical_batch_s < 1.0 and not service.runs_inline
    finally:
        service.close()


def _two_output_model(folder: Path) -> Registry:
    """x float32 [B, 8] -> graph outputs ``y`` (tiny's answer) and ``neg`` (-x), which the registry names
    ``answer`` and ``negated``: a model whose output names differ from the graph's."""
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.model import load_registry

    w, b = tiny.weights()
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["xwb"]),
            helper.make_node("Relu", ["xwb"], ["y"]),
            helper.make_node("Neg", ["x"], ["neg"]),
        ],
        name="two",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", tiny.IN_DIM])],
        outputs=[
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", tiny.OUT_DIM]),
            helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["batch", tiny.IN_DIM]),
        ],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", tiny.OPSET)], producer_name="tests")
    model.ir_version = tiny.IR_VERSION
    (folder / "two").mkdir()
    (folder / "two" / "model.onnx").write_bytes(model.SerializeToString())
    toml = folder / "models.toml"
    toml.write_text(
        '[models.two]\nversion = "1"\ntask = "tensor"\nonnx = "two/model.onnx"\nmax_batch_size = 64\n'
        'inputs = { x = "x" }\noutputs = { answer = "y", negated = "neg" }\n',
        encoding="utf-8",
    )
    return load_registry(toml)


def test_outputs_are_keyed_by_the_registry_names_on_both_paths(tmp_path: Path) -> None:
    """Each event gets its own row of every output, under the registry's name for it, whether the batch
    takes the joined wire path or the per-event one."""
    runner = ModelRunner(_two_output_model(tmp_path).get("two"), tmp_path, device="cpu")
    try:
        xs = np.random.default_rng(5).standard_normal((5, 8)).astype(np.float32)
        wire = runner.run_batch([{"tensors": [encode_tensor("x", row)]} for row in xs])
        per_event = runner.run_batch([ModelInput(tensors={"x": row}) for row in xs])
        for outcomes in (wire, per_event):
            for row, outcome in zip(xs, outcomes, strict=True):
                assert isinstance(outcome, Success), outcome
                assert set(outcome.outputs) == {"answer", "negated"}
                np.testing.assert_allclose(outcome.outputs["answer"], tiny.reference(row[None])[0], atol=1e-6)
                np.testing.assert_array_equal(outcome.outputs["negated"], -row)
    finally:
        runner.close()
