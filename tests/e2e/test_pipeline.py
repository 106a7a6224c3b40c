"""The whole pipeline on the real broker: a worker process, real topics, real models."""

from __future__ import annotations

import os
import struct
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.model.outcome import Success
from pipeline.model.service import ModelService
from pipeline.ops.collect import Record, count, read_topic
from pipeline.ops.generate import text_requests, tiny_requests
from pipeline.serde import Codecs, EventCodec, build_request
from pipeline.serde.deadletter import PREFIX, header_value
from tests.harness import WorkerProcess, produce_raw, produce_requests


def _decode_all(codec: EventCodec, records: list[Record]) -> list[dict[str, Any]]:
    return [codec.decode(r.value) for r in records]


def test_1000_text_requests_get_embeddings_equal_to_a_direct_model_run(e2e_settings: Settings) -> None:
    requests = list(text_requests(1000))
    with WorkerProcess(e2e_settings, "--model", "minilm-l6", "--batch-size", "32") as worker:
        worker.wait_assigned()
        produce_requests(e2e_settings, requests)
        out = read_topic(e2e_settings, e2e_settings.topics.output, expected=1000, timeout_s=240)
        assert worker.alive()
    codecs = Codecs.from_settings(e2e_settings)
    results = {r["event_id"]: r for r in _decode_all(codecs.result, out)}
    assert len(out) == 1000 and set(results) == {r["event_id"] for r in requests}
    assert count(e2e_settings, e2e_settings.topics.error) == 0

    service = ModelService.from_settings(e2e_settings.model_copy(update={"model": "minilm-l6"}))
    direct = service.run_batch([("minilm-l6", r["payload"]) for r in requests])
    for request, expected in zip(requests, direct, strict=True):
        result = results[request["event_id"]]
        got = np.asarray(result["output"]["embedding"], dtype=np.float32)
        assert isinstance(expected, Success) and expected.embedding is not None
        assert got.shape == (384,)
        np.testing.assert_allclose(got, expected.embedding, atol=1e-5)
        assert result["truncated"] == expected.truncated
        assert result["model"]["provider"] == service.runner().provider  # CUDA where it is usable
        assert 1 <= result["batch_size"] <= 32
    assert any(r["truncated"] for r in results.values())  # the mixed texts include over-long ones


def _bad_inputs(settings: Settings) -> list[tuple[str, bytes | None, str | None, str]]:
    """(kind, value, event_id or None, expected error code)."""
    codecs = Codecs.from_settings(settings)
    big = Codecs.from_settings(settings.model_copy(update={"max_message_bytes": 10_000_000}))
    good = codecs.request.encode(build_request(model="tiny", tensors={"x": np.ones(8, np.float32)}))
    header = good[:10]

    def req(**kw: Any) -> dict[str, Any]:
        return build_request(**kw)

    empty_text = req(model="minilm-l6", text="")
    unknown_model = req(model="no-such-model", text="hello")
    bad_shape = req(model="tiny", tensors={"x": np.ones(7, np.float32)})
    nan = req(model="tiny", tensors={"x": np.array([1, 2, np.nan, 4, 5, 6, 7, 8], np.float32)})
    hook = req(model="tiny", tensors={"x": np.ones(8, np.float32)}, attributes={"fail_hook": "1"})
    oversize = req(model="minilm-l6", text="word " * 40_000)
    bad_uuid = req(model="minilm-l6", text="hi")
    bad_uuid["event_id"] = "not-a-uuid"
    result = codecs.result.encode(
        {
            "event_id": unknown_model["event_id"],
            "correlation_id": None,
            "model": {"name": "x", "version": "1", "provider": "cpu"},
            "output": {"label": "a", "score": 1.0},
            "timings": {"queued_ms": 0.0, "inference_ms": 0.0, "end_to_end_ms": 0.0},
            "batch_size": 1,
            "worker_id": "w",
            "completed_at": 0,
            "truncated": False,
        }
    )
    return [
        # random bytes after a first byte that is neither framing's magic (0x00 Confluent, 0xC3 single object):
        # fully random, one run in 256 began with 0x00 and read as an unknown Confluent schema id
        ("garbage", b"\xff" + os.urandom(63), None, "BAD_MAGIC"),
        ("empty", b"", None, "EMPTY"),
        ("wrong magic", b"\xc3\x02" + good[2:], None, "BAD_MAGIC"),
        ("unknown fingerprint", b"\xc3\x01" + struct.pack("<Q", 12345) + good[10:], None, "UNKNOWN_SCHEMA"),
        ("truncated", good[: len(good) // 2], None, "TRUNCATED"),
        ("wrong schema", result, None, "SCHEMA_RESOLUTION_FAILED"),
        ("empty text", codecs.request.encode(empty_text), empty_text["event_id"], "EMPTY_TEXT"),
        ("unknown model", codecs.request.encode(unknown_model), unknown_model["event_id"], "UNKNOWN_MODEL"),
        ("bad shape", codecs.request.encode(bad_shape), bad_shape["event_id"], "BAD_SHAPE"),
        ("nan tensor", codecs.request.encode(nan), nan["event_id"], "NAN_TENSOR"),
        ("oversize", big.request.encode(oversize), None, "TOO_LARGE"),
        ("failing hook", codecs.request.encode(hook), hook["event_id"], "HOOK_FAILED"),
        ("bad uuid", codecs.request.encode(bad_uuid), "not-a-uuid", "INVALID_UUID"),
        ("header only", header, None, "TRUNCATED"),
    ]


def test_good_and_bad_events_are_each_accounted_for_once_and_bad_ones_dead_lettered(
    e2e_settings: Settings,
) -> None:
    settings = e2e_settings
    bad = _bad_inputs(settings)
    good = list(tiny_requests(300, seed=3))
    codec = Codecs.from_settings(settings).request
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = []
    for i, req in enumerate(good):
        records.append((req["event_id"].encode(), codec.encode(req), None))
        if i % 20 == 0 and i // 20 < len(bad):
            kind, value, _, _ = bad[i // 20]
            records.append((f"bad-{i // 20}".encode(), value, [("kind", kind.encode()), ("traceparent", b"00-t-s-01")]))
    assert sum(1 for r in records if r[0] and r[0].startswith(b"bad-")) == len(bad)
    env = {
        "PIPELINE_HOOKS_PRE": '["tests.e2e.hooks:fail_when_asked"]',
        "PIPELINE_MAX_MESSAGE_BYTES": "100000",
    }
    with WorkerProcess(settings, "--model", "tiny", "--batch-size", "64", **env) as worker:
        worker.wait_assigned()
        produce_raw(settings, settings.topics.input, records)
        out = read_topic(settings, settings.topics.output, expected=len(good), timeout_s=120)
        errors = read_topic(settings, settings.topics.error, expected=len(bad), timeout_s=60)
        dead = read_topic(settings, settings.topics.dead_letter, expected=len(bad), timeout_s=60)
        time.sleep(1.0)
        assert worker.alive(), worker.output()[-3000:]
    codecs = Codecs.from_settings(settings)
    result_ids = Counter(r["event_id"] for r in _decode_all(codecs.result, out))
    error_events = _decode_all(codecs.error, errors)
    assert result_ids == Counter(r["event_id"] for r in good)  # each good one exactly once
    assert len(error_events) == len(bad)
    by_offset = {(e["source_topic"], e["source_partition"], e["source_offset"]): e for e in error_events}
    assert len(by_offset) == len(bad)  # each bad record exactly once
    assert {e["source_topic"] for e in error_events} <= {settings.topics.input, settings.topics.inference}

    assert len(dead) == len(bad)
    inputs = {(r.partition, r.offset): r for r in read_topic(settings, settings.topics.input, expected=len(records))}
    forwarded = {(r.partition, r.offset): r for r in read_topic(settings, settings.topics.inference, idle_s=1.0)}
    seen_kinds = set()
    for letter in dead:
        kind = header_value(letter.headers, "kind")
        assert kind is not None
        seen_kinds.add(kind)
        expected_code = next(code for k, _, _, code in bad if k == kind)
        expected_id = next(eid for k, _, eid, _ in bad if k == kind)
        partition = int(header_value(letter.headers, PREFIX + "partition") or -1)
        offset = int(header_value(letter.headers, PREFIX + "offset") or -1)
        topic = header_value(letter.headers, PREFIX + "topic")
        original = inputs[(partition, offset)] if topic == settings.topics.input else None
        if original is None:  # failed at inference: the dead letter is the forwarded record
            original = forwarded[(partition, offset)]
        # the original record, byte for byte, with its own headers kept
        assert (letter.key, letter.value, letter.timestamp) == (original.key, original.value, original.timestamp)
        assert ("traceparent", b"00-t-s-01") in letter.headers
        assert header_value(letter.headers, PREFIX + "error_code") == expected_code, kind
        assert header_value(letter.headers, PREFIX + "group") in (
            f"{settings.group}.input",
            f"{settings.group}.inference",
        )
        assert header_value(letter.headers, PREFIX + "stage") in ("DECODE", "VALIDATE", "INFERENCE", "HOOK")
        assert header_value(letter.headers, PREFIX + "exception.class")
        assert header_value(letter.headers, PREFIX + "attempts") == "1"
        if expected_id and expected_code != "INVALID_UUID":
            assert header_value(letter.headers, PREFIX + "event_id") == expected_id
        error = by_offset[(topic, partition, offset)]
        assert error["error_code"] == expected_code
    assert seen_kinds == {kind for kind, _, _, _ in bad}
    hook_letter = next(d for d in dead if header_value(d.headers, "kind") == "failing hook")
    assert header_value(hook_letter.headers, PREFIX + "stage") == "HOOK"
    assert "RuntimeError" in (header_value(hook_letter.headers, PREFIX + "exception.class") or "")


def test_priority_events_overtake_a_bulk_backlog(e2e_settings: Settings) -> None:
    settings = e2e_settings
    bulk = list(text_requests(600, seed=5))
    high = [build_request(model="minilm-l6", text=f"urgent request number {i}", priority="HIGH") for i in range(20)]
    produce_requests(settings, bulk)
    produce_requests(settings, high)  # behind the whole backlog on the input topic
    with WorkerProcess(settings, "--model", "minilm-l6", "--batch-size", "16") as worker:
        worker.wait_assigned()
        out = read_topic(settings, settings.topics.output, expected=len(bulk) + len(high), timeout_s=240)
        assert worker.alive()
    codecs = Codecs.from_settings(settings)
    results = sorted(_decode_all(codecs.result, out), key=lambda r: r["completed_at"])
    order = [r["event_id"] for r in results]
    high_ids = {r["event_id"] for r in high}
    last_high = max(i for i, eid in enumerate(order) if eid in high_ids)
    bulk_after = sum(1 for eid in order[last_high + 1 :] if eid not in high_ids)
    print(f"the last high-priority result came at position {last_high}; {bulk_after} bulk results after it")
    # Every urgent event completes while most of the bulk backlog is still waiting.
    assert bulk_after >= len(bulk) // 2


@pytest.mark.parametrize("hook", ["tests.e2e.hooks:tag_result"])
def test_post_process_hooks_shape_the_result(e2e_settings: Settings, hook: str) -> None:
    settings = e2e_settings
    requests = list(tiny_requests(50, seed=2))
    env = {"PIPELINE_HOOKS_POST": f'["{hook}"]', "PIPELINE_WORKER_ID": "w1"}
    with WorkerProcess(settings, "--model", "tiny", **env) as worker:
        worker.wait_assigned()
        produce_requests(settings, requests)
        out = read_topic(settings, settings.topics.output, expected=50, timeout_s=60)
    results = _decode_all(Codecs.from_settings(settings).result, out)
    assert {r["worker_id"] for r in results} == {"w1+hooked"}
    x = np.frombuffer(requests[0]["payload"]["tensors"][0]["data"], dtype="<f4")
    first = next(r for r in results if r["event_id"] == requests[0]["event_id"])
    y = np.frombuffer(first["output"]["tensors"][0]["data"], dtype="<f4")
    assert y.shape == (4,) and np.all(y >= 0)
    assert x.shape == (8,)
