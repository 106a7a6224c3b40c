"""`scripts/faults`: every fault the worker must ride through, at full size, and what each cost.

For each fault: fresh topics, N tiny requests on 1,000 keys pre-loaded on the input topic, a real
`pipeline worker` (one process per role, a worker id), the fault a third of the way through, then until
every event is answered. Per fault it prints: events lost (never answered by a result or an error),
answered twice, the seconds from the end of the fault until results flow again, the longest stall of the
output topic, and whether every key's results came out in the order its events went in.

    scripts/faults                         every fault at 100,000 events
    scripts/faults --events 20000 --faults kill-9,broker-stop --json results.json
    scripts/faults --guarantee exactly_once --faults kill-9,broker-stop   (then 0 twice: read_committed)

Uses brokers of its own (a single node and a three-node cluster under infra/kafka/.local/faults-*), and
the local registry for the registry fault (skipped where no Java 21 runs it). Stops them all at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from pipeline.config import Settings, Topics  # noqa: E402
from pipeline.kafka.clients import consumer_config  # noqa: E402
from pipeline.observability.logs import configure_logging  # noqa: E402
from pipeline.ops.generate import tiny_requests  # noqa: E402
from pipeline.serde import Codecs, EventCodec, build_request  # noqa: E402
from tests.harness import WorkerProcess, create_pipeline_topics, produce_raw  # noqa: E402

KAFKA_LOCAL = ROOT / "infra" / "kafka" / "kafka-local"
REGISTRY_LOCAL = ROOT / "infra" / "registry" / "registry-local"
STATE = ROOT / "infra" / "kafka" / ".local"
KEYS = 1000
FAULTS = ("poison", "kill-9", "kill-9-no-id", "sigterm", "broker-stop", "broker-kill-1-of-3", "registry-stop")


@dataclass
class Outcome:
    fault: str
    events: int
    lost: int = 0
    twice: int = 0
    flowing_again_s: float | None = None
    longest_stall_s: float = 0.0
    per_key_order: bool = True
    took_s: float = 0.0
    notes: list[str] = field(default_factory=list)


class Watch(threading.Thread):
    """The output and error topics' end offsets every 50 ms: when results last grew, and the longest
    stall between two growths."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.total = 0
        self.grew_at: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        topics = (self.settings.topics.output, self.settings.topics.error)
        consumer: Consumer | None = None
        parts: list[TopicPartition] = []
        try:
            while not self._halt.wait(0.05):
                if consumer is None:  # (again) after a failure: fresh metadata, leaders that moved included
                    consumer = Consumer(consumer_config(self.settings, f"faults-watch-{uuid.uuid4().hex[:6]}"))
                    parts = []
                try:
                    if not parts:
                        md = consumer.list_topics(timeout=5).topics
                        parts = [TopicPartition(t, p) for t in topics for p in md[t].partitions]
                    total = sum(consumer.get_watermark_offsets(tp, timeout=1, cached=False)[1] for tp in parts)
                except (KafkaException, KeyError):
                    consumer.close()  # the broker is away, or a leader moved: no growth is the stall
                    consumer = None
                    continue
                if total > self.total:
                    self.total = total
                    self.grew_at.append((time.monotonic(), total))
        finally:
            if consumer is not None:
                consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def first_growth_after(self, t: float, than: int) -> float | None:
        return next((at - t for at, total in self.grew_at if at >= t and total > than), None)

    def longest_stall(self, start: float) -> float:
        times = [start, *(at for at, _ in self.grew_at if at >= start)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@contextmanager
def broker(name: str, nodes: int = 1) -> Iterator[tuple[str, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_PORT", "KAFKA_BOOTSTRAP")}
    env.update(KAFKA_LOCAL_STATE=str(STATE / f"faults-{name}"), KAFKA_LOCAL_PYTHON=sys.executable)
    subprocess.run([str(KAFKA_LOCAL), "stop"], capture_output=True, env=env, timeout=120)
    subprocess.run(["rm", "-rf", env["KAFKA_LOCAL_STATE"]], check=True)
    bootstrap = _run([str(KAFKA_LOCAL), "start", "--nodes", str(nodes)], env)
    try:
        yield bootstrap, env
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop"], capture_output=True, env=env, timeout=120)


def fresh_settings(bootstrap: str, **update: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{role: f"{name}.faults-{tag}" for role, name in Topics().all().items()})
    settings = Settings(
        bootstrap_servers=bootstrap, topics=topics, group=f"faults-{tag}", partitions=8, replication_factor=None
    )
    settings = settings.model_copy(update=update)
    create_pipeline_topics(settings)
    return settings


def preload(settings: Settings, n: int, seed: int, poison_every: int = 0, codec: EventCodec | None = None) -> list[str]:
    """N tiny requests on KEYS keys; every ``poison_every``-th one tagged for the poison hook."""
    codec = codec or Codecs.from_settings(settings).request
    ids: list[str] = []

    def records() -> Iterator[tuple[bytes, bytes, None]]:
        for i, request in enumerate(tiny_requests(n, seed=seed)):
            if poison_every and i % poison_every == poison_every // 2:
                x = np.frombuffer(request["payload"]["tensors"][0]["data"], dtype="<f4")
                request = build_request(model="tiny", tensors={"x": x}, attributes={"poison": "1"})
            ids.append(request["event_id"])
            yield f"key-{i % KEYS}".encode(), codec.encode(request), None

    produce_raw(settings, settings.topics.input, records())
    return ids


def account(settings: Settings, ids: list[str], outcome: Outcome, timeout_s: float = 300) -> None:
    """Read every result and error until each event is answered (or the timeout): lost, twice, order."""
    codecs = Codecs.from_settings(settings)
    wanted = set(ids)
    position = {event_id: i for i, event_id in enumerate(ids)}
    answers: Counter[str] = Counter()
    firsts: dict[bytes | None, list[int]] = {}
    consumer = Consumer(consumer_config(settings, f"faults-read-{uuid.uuid4().hex[:6]}"))
    topics = {settings.topics.output: codecs.result, settings.topics.error: codecs.error}
    md = consumer.list_topics(timeout=10).topics
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in md[t].partitions])
    deadline = time.monotonic() + timeout_s
    last_growth = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(5000, timeout=0.5)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                event_id = topics[msg.topic()].decode(msg.value())["event_id"]
                if event_id is None:
                    continue
                if answers[event_id] == 0 and msg.topic() == settings.topics.output:
                    firsts.setdefault(msg.key(), []).append(position.get(event_id, -1))
                answers[event_id] += 1
            if msgs:
                last_growth = time.monotonic()
            if wanted <= set(answers) and time.monotonic() - last_growth > 3:
                break
    finally:
        consumer.close()
    outcome.lost = len(wanted - set(answers))
    outcome.twice = sum(c - 1 for c in answers.values())
    outcome.per_key_order = all(order == sorted(order) for order in firsts.values())


def wait_output(watch: Watch, at_least: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while watch.total < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {watch.total} results within {timeout_s:.0f} s")
        time.sleep(0.05)


GUARANTEE = ["--guarantee", "at_least_once"]


def worker_args(worker_id: str | None) -> list[str]:
    args = ["--model", "tiny", "--batch-size", "100", *GUARANTEE]
    return [*args, "--worker-id", worker_id] if worker_id else args


def run_fault(name: str, n: int, bootstrap: str, env: dict[str, str], seed: int) -> Outcome:
    outcome = Outcome(name, n)
    started = time.monotonic()
    extra: dict[str, str] = {}
    settings = fresh_settings(bootstrap)
    if name == "poison":
        extra["PIPELINE_HOOKS_POST"] = '["tests.e2e.hooks:poison_tagged"]'
    ids = preload(settings, n, seed, poison_every=1000 if name == "poison" else 0)
    watch = Watch(settings)
    watch.start()
    worker_id = None if name == "kill-9-no-id" else "faults"
    worker = WorkerProcess(settings, *worker_args(worker_id), PIPELINE_LOG_LEVEL="warning", **extra).start()
    try:
        wait_output(watch, n // 3)
        before = watch.total
        fault_at = time.monotonic()
        if name in ("kill-9", "kill-9-no-id"):
            worker.kill()
            time.sleep(0.5)  # what the dead worker had already written reaches the watch
            before = watch.total
            worker = WorkerProcess(settings, *worker_args(worker_id), PIPELINE_LOG_LEVEL="warning").start()
        elif name == "sigterm":
            code = worker.terminate(timeout_s=30)
            outcome.notes.append(f"exit {code} {time.monotonic() - fault_at:.1f} s after SIGTERM")
            before = watch.total
            worker = WorkerProcess(settings, *worker_args(worker_id), PIPELINE_LOG_LEVEL="warning").start()
        elif name == "broker-stop":
            _run([str(KAFKA_LOCAL), "stop"], env)
            time.sleep(10)
            _run([str(KAFKA_LOCAL), "start"], env)
            outcome.notes.append(f"broker back {time.monotonic() - fault_at:.1f} s after it stopped")
        elif name == "broker-kill-1-of-3":
            _run([str(KAFKA_LOCAL), "kill-node", "2"], env)
        end = time.monotonic()
        outcome.flowing_again_s = watch.first_growth_after(end, before)
        alive_before = worker.proc.pid if worker.proc else None
        account(settings, ids, outcome)
        if worker.proc is None or worker.proc.pid != alive_before or not worker.alive():
            outcome.notes.append("the worker process changed or died")
        if outcome.flowing_again_s is None:
            outcome.flowing_again_s = watch.first_growth_after(end, before)
        outcome.longest_stall_s = watch.longest_stall(fault_at)
    finally:
        watch.stop()
        if worker.alive():
            worker.terminate(timeout_s=30)
        if name == "broker-kill-1-of-3":
            subprocess.run([str(KAFKA_LOCAL), "start-node", "2"], capture_output=True, env=env, timeout=180)
    outcome.took_s = time.monotonic() - started
    return outcome


def run_registry_fault(n: int, bootstrap: str, seed: int) -> Outcome:
    """Registry mode: half the events written with a schema version the worker has not seen yet, while
    the registry is down for 10 s; they wait, and are answered once it is back."""
    outcome = Outcome("registry-stop", n)
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY_PORT"}
    env.update(REGISTRY_LOCAL_STATE=str(STATE.parent.parent / "registry" / ".local" / "faults-registry"))
    subprocess.run([str(REGISTRY_LOCAL), "stop"], capture_output=True, env=env, timeout=120)
    subprocess.run(["rm", "-rf", env["REGISTRY_LOCAL_STATE"]], check=True)
    done = subprocess.run([str(REGISTRY_LOCAL), "start"], capture_output=True, text=True, env=env, timeout=600)
    if done.returncode == 3:
        outcome.notes.append("skipped: no Java 21 or newer for the local registry")
        return outcome
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    url = done.stdout.strip().splitlines()[-1]
    try:
        settings = fresh_settings(bootstrap, schema_registry_url=url)
        half = n // 2
        ids = preload(settings, half, seed, codec=EventCodec.from_settings(settings, "request", writer_version=1))
        watch = Watch(settings)
        watch.start()
        worker = WorkerProcess(
            settings, *worker_args("faults"), PIPELINE_LOG_LEVEL="warning", PIPELINE_SCHEMA_REGISTRY_URL=url
        ).start()
        try:
            wait_output(watch, half // 3)
            v2 = EventCodec.from_settings(settings, "request", writer_version=2)
            v2.encode(next(tiny_requests(1, seed=seed + 1)))  # registers v2; the rest encode from its cached id
            subprocess.run([str(REGISTRY_LOCAL), "stop"], capture_output=True, env=env, timeout=120, check=True)
            fault_at = time.monotonic()
            ids += preload(settings, n - half, seed + 2, codec=v2)
            time.sleep(max(0.0, 10 - (time.monotonic() - fault_at)))
            before = watch.total
            subprocess.run([str(REGISTRY_LOCAL), "start"], capture_output=True, env=env, timeout=300, check=True)
            end = time.monotonic()
            account(settings, ids, outcome)
            outcome.flowing_again_s = watch.first_growth_after(end, before)
            outcome.longest_stall_s = watch.longest_stall(fault_at)
            if not worker.alive():
                outcome.notes.append("the worker died")
        finally:
            watch.stop()
            if worker.alive():
                worker.terminate(timeout_s=30)
    finally:
        subprocess.run([str(REGISTRY_LOCAL), "stop"], capture_output=True, env=env, timeout=120)
    outcome.took_s = time.monotonic() - started
    return outcome


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| fault | events | lost | answered twice | results again after (s) | longest stall (s) | per-key order "
        "| notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for o in outcomes:
        again = "-" if o.flowing_again_s is None else f"{o.flowing_again_s:.1f}"
        rows.append(
            f"| {o.fault} | {o.events:,} | {o.lost} | {o.twice:,} | {again} | {o.longest_stall_s:.1f} | "
            f"{'kept' if o.per_key_order else 'BROKEN'} | {'; '.join(o.notes)} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--guarantee", choices=("at_least_once", "exactly_once"), default="at_least_once")
    args = parser.parse_args(argv)
    GUARANTEE[1] = args.guarantee
    configure_logging("warning")  # the clients' own reconnect chatter during the faults is not a finding
    wanted = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = set(wanted) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
    outcomes: list[Outcome] = []
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    single = [f for f in wanted if f != "broker-kill-1-of-3"]
    if single:
        with broker("single") as (bootstrap, env):
            for i, name in enumerate(single):
                say(f"fault {name} at {args.events:,} events ...")
                if name == "registry-stop":
                    outcome = run_registry_fault(args.events, bootstrap, seed=100 + i)
                else:
                    outcome = run_fault(name, args.events, bootstrap, env, seed=100 + i)
                outcomes.append(outcome)
                say(table([outcome]).splitlines()[-1])
    if "broker-kill-1-of-3" in wanted:
        with broker("cluster", nodes=3) as (bootstrap, env):
            say(f"fault broker-kill-1-of-3 at {args.events:,} events ...")
            outcome = run_fault("broker-kill-1-of-3", args.events, bootstrap, env, seed=200)
            outcomes.append(outcome)
            say(table([outcome]).splitlines()[-1])
    print(f"processing_guarantee {args.guarantee}; results and errors read with read_committed")
    print(table(outcomes))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    return 0 if all(o.lost == 0 and o.per_key_order for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
