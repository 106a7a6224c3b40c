"""A fleet: workers with ids in one set of consumer groups, one added and one stopped for good while
100,000 events flow. Each topic's partitions are shared evenly (bulk and priority lane alike), nothing is
lost, per-key order holds, and the partitions that move wait for their new owner under a second or so,
not for a session timeout."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from pipeline.config import Settings
from pipeline.kafka.clients import base_config, producer_config
from pipeline.ops.collect import Record, read_topic
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs
from tests.harness import WorkerProcess, assert_per_key_order, create_pipeline_topics

N = 100_000
RATE = 4_000  # events/s offered: a steady stream, so that a pause shows as a gap in a key's results
KEYS = 120  # every tenth key is HIGH priority: the lane carries a tenth of the stream
PARTITIONS = 12


def _produce_steadily(settings: Settings, at: Callable[[int], None]) -> list[dict[str, object]]:
    """N keyed requests at RATE per second; ``at(i)`` is called as request i goes out."""
    codec = Codecs.from_settings(settings).request
    producer = Producer(producer_config(settings))
    sent: list[dict[str, object]] = []
    started = time.monotonic()
    for i, request in enumerate(tiny_requests(N, seed=77)):
        key = f"key-{i % KEYS}"
        if i % KEYS % 10 == 0:
            request["priority"] = "HIGH"
        while True:
            try:
                producer.produce(settings.topics.input, key=key.encode(), value=codec.encode(request))
                break
            except BufferError:
                producer.poll(0.05)
        sent.append({"event_id": request["event_id"], "key": key})
        at(i)
        if i % 200 == 199:
            producer.poll(0)
            ahead = started + (i + 1) / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(60) == 0
    return sent


def _shares(settings: Settings) -> dict[str, dict[str, int]]:
    """Per reader group: how many partitions each member (by instance id) holds now."""
    admin = AdminClient(base_config(settings))
    groups = [f"{settings.group}.{name}" for name in ("input", "inference", "inference.priority")]
    shares: dict[str, dict[str, int]] = {}
    for group, future in admin.describe_consumer_groups(groups).items():
        described = future.result(timeout=10)
        shares[group] = {
            str(m.group_instance_id): len(m.assignment.topic_partitions) for m in described.members if m.assignment
        }
    return shares


def _wait_even(settings: Settings, members: set[str], timeout_s: float = 60) -> dict[str, dict[str, int]]:
    """Until every group's partitions are spread over exactly ``members`` (worker ids), evenly."""
    deadline = time.monotonic() + timeout_s
    shares: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        shares = _shares(settings)
        by_worker = [{i.split(".")[0]: n for i, n in s.items()} for s in shares.values()]
        if all(
            set(s) == members and sum(s.values()) == PARTITIONS and max(s.values()) - min(s.values()) <= 1
            for s in by_worker
        ):
            return shares
        time.sleep(0.2)
    raise AssertionError(f"partitions not shared evenly by {sorted(members)} within {timeout_s} s: {shares}")


def _hand_overs(out: list[Record], settings: Settings, since: float, until: float) -> float:
    """The longest hand-over between ``since`` and ``until`` (epoch seconds, on the results' timestamps):
    per key, the time from the last result its old worker wrote to the first its new worker wrote."""
    codec = Codecs.from_settings(settings).result
    last: dict[bytes | None, tuple[str, float]] = {}
    seen: set[str] = set()
    longest = 0.0
    for record in sorted(out, key=lambda r: r.timestamp):
        result = codec.decode(record.value)
        if result["event_id"] in seen:
            continue
        seen.add(result["event_id"])
        at = record.timestamp / 1000
        before = last.get(record.key)
        if before is not None and before[0] != result["worker_id"] and since <= at and before[1] <= until:
            longest = max(longest, at - before[1])
            print(
                "HANDOVER",
                round(before[1] - since, 3),
                round(at - since, 3),
                before[0],
                result["worker_id"],
                record.key,
            )
        last[record.key] = (result["worker_id"], at)
    return longest


def test_workers_added_and_stopped_for_good_share_each_topic_and_lose_nothing(pipeline_settings: Settings) -> None:
    settings = pipeline_settings.model_copy(update={"partitions": PARTITIONS})
    create_pipeline_topics(settings)
    args = ("--model", "tiny", "--batch-size", "100", "--process-per-role", "off", "--leave-on-stop")
    workers = {w: WorkerProcess(settings, *args, "--worker-id", w) for w in ("w1", "w2", "w3", "w4")}
    marks: dict[str, float] = {}
    try:
        for w in ("w1", "w2", "w3"):
            workers[w].start()
        for w in ("w1", "w2", "w3"):
            workers[w].wait_assigned("inference", timeout_s=90)
        before = _wait_even(settings, {"w1", "w2", "w3"})

        produced = [0]
        shares: dict[str, object] = {}

        def scale() -> None:
            """A quarter in, add w4; once it has its partitions and three fifths are out, stop w1 for good:
            two rebalances, one after the other."""
            while produced[0] < N // 4:
                time.sleep(0.01)
            marks["added"] = time.time()
            workers["w4"].start()
            shares["with w4"] = _wait_even(settings, {"w1", "w2", "w3", "w4"}, timeout_s=90)
            while produced[0] < N * 3 // 5:
                time.sleep(0.01)
            marks["stopped"] = time.time()
            workers["w1"].terminate()

        controller = threading.Thread(target=scale, daemon=True)
        controller.start()

        def at(i: int) -> None:
            produced[0] = i

        sent = _produce_steadily(settings, at)
        controller.join(timeout=120)
        assert "stopped" in marks, "w4 never got partitions"
        ids = {str(s["event_id"]) for s in sent}
        codec = Codecs.from_settings(settings).result
        answered: set[str] = set()
        read = 0

        def done(records: list[Record]) -> bool:
            nonlocal read
            answered.update(codec.decode(r.value)["event_id"] for r in records[read:])
            read = len(records)
            return len(answered) >= N

        out = read_topic(settings, settings.topics.output, timeout_s=120, stop=done)
        after = _wait_even(settings, {"w2", "w3", "w4"})
        assert workers["w1"].proc is not None and workers["w1"].proc.wait(timeout=30) == 0
        assert all(workers[w].alive() for w in ("w2", "w3", "w4"))
    finally:
        for worker in workers.values():
            if worker.proc is not None and worker.alive():
                worker.kill()
    got = Counter(codec.decode(r.value)["event_id"] for r in out)
    assert set(got) == ids, f"{len(ids - set(got))} lost"
    twice = sum(c - 1 for c in got.values())
    assert_per_key_order(sent, out, settings)
    added = _hand_overs(out, settings, marks["added"], marks["stopped"] - 0.5)
    stopped = _hand_overs(out, settings, marks["stopped"], marks["stopped"] + 15)
    print(f"fleet: partitions per member, 3 workers {before}; 4 workers {shares['with w4']}; 3 again {after}")
    print(
        f"fleet: {N} events at {RATE}/s, 0 lost, {twice} answered twice; the longest hand-over of a key from "
        f"one worker to another: {added:.2f} s for the worker added, {stopped:.2f} s for the one stopped for good"
    )
    # A stopped static member that kept its partitions would stop their keys for session_timeout_ms (30 s).
    assert stopped < 5, stopped
    assert added < 5, added
