"""Simulated hosts: a broker and two worker hosts, each in a network namespace of its own on one switch
(tests/netns.py), one consumer group, a steady stream of tiny requests; then a fault on worker host w1:

(a) every process of w1 killed, as a machine that dies;
(b) 200 ms of delay on each direction of w1's traffic to the broker (a Toxiproxy: this kernel has no
    netem) and 5% of its packets dropped each way at the switch, for 10 s;
(c) w1 cut off at the switch for 20 s (every frame dropped, silently), then reconnected.

Each scenario reports events lost (must be 0), events answered twice, and the seconds until results flow
again, measured by a reader of the output topic from the fault's end (the kill, the reconnection) to the
first result that the fault had stopped: for a dead host, its keys answered by the survivor; for a slow or
cut-off host, the host's own next result. It prints them and writes them to ``results/hosts.json``.

Needs root, iproute2 and iptables (skipped with the reason elsewhere); (b) needs Toxiproxy, which
infra/toxiproxy/toxiproxy-local builds with Go (skipped with the reason where it cannot). Everything made
here (namespaces, links, addresses, iptables rules, processes) is removed at the end, also on failure.
Workers use a 10 s session timeout, so that a dead or cut-off host's partitions move within the test.
"""

from __future__ import annotations

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
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeline.config import Settings, Topics
from pipeline.kafka.clients import consumer_config, producer_config
from pipeline.ops.collect import count
from pipeline.serde import Codecs, Priority, build_request
from tests import netns
from tests.harness import REPO, WorkerProcess, create_pipeline_topics

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="simulated hosts need root (network namespaces, veth links, iptables)"
)

KAFKA_LOCAL = REPO / "infra" / "kafka" / "kafka-local"
RESULTS = REPO / "results" / "hosts.json"
HOSTS = ("w1", "w2")
FAULTY = "w1"
RATE = 250  # events per second, offered steadily
KEYS = 40
PARTITIONS = 4
SESSION_TIMEOUT_MS = 10_000
PROXY_PORT = 18474  # Toxiproxy's listener for w1, in the broker's namespace
API_PORT = 8474


@dataclass
class Site:
    lan: netns.Lan
    bootstrap: str
    tmp: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The namespaces and the broker (kafka-local in the broker's namespace, on its private address),
    shared by the scenarios; everything removed afterwards."""
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("hosts")
    lan = netns.Lan(["broker", *HOSTS])
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_PORT"}
    env.update(
        KAFKA_LOCAL_STATE=str(tmp / "broker"), KAFKA_LOCAL_PYTHON=sys.executable, KAFKA_LOCAL_HOST=lan.addr["broker"]
    )
    kafka_local = [*lan.exec_prefix("broker"), str(KAFKA_LOCAL)]
    with lan:
        try:
            started = subprocess.run([*kafka_local, "start"], capture_output=True, text=True, env=env, timeout=300)
            assert started.returncode == 0, f"kafka-local start in the broker's namespace:\n{started.stderr[-3000:]}"
            yield Site(lan, started.stdout.strip().splitlines()[-1], tmp)
        finally:
            subprocess.run([*kafka_local, "stop"], capture_output=True, env=env, timeout=120)
    assert not lan.leftovers(), lan.leftovers()


@pytest.fixture(scope="module")
def toxiproxy(site: Site) -> Iterator[netns.Toxiproxy]:
    server, why = netns.toxiproxy_server()
    if server is None:
        pytest.skip(why)
    proxy = netns.Toxiproxy(site.lan, "broker", server, API_PORT, site.tmp / "toxiproxy.log")
    try:
        proxy.proxy(FAULTY, f"{site.lan.addr['broker']}:{PROXY_PORT}", site.bootstrap)
        yield proxy
    finally:
        proxy.close()


# ----------------------------------------------------------------------------------- the stream


class Stream(threading.Thread):
    """``n`` tiny requests on ``KEYS`` keys, offered at ``RATE`` per second from the driver. Odd keys are
    ``HIGH`` priority, so the bulk topic and the priority lane both carry work through every fault."""

    def __init__(self, settings: Settings, n: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.n, self.seed = settings, n, seed
        self.sent: list[tuple[str, str]] = []  # (key, event_id) in the order sent
        self.sent_at: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            codec = Codecs.from_settings(self.settings).request
            rng = np.random.default_rng(self.seed)
            producer = Producer(producer_config(self.settings))
            start = time.monotonic()
            for i in range(self.n):
                pause = start + i / RATE - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                key = i % KEYS
                request = build_request(  # made as it is sent: its created_at is its send time
                    model="tiny",
                    tensors={"x": rng.standard_normal(8).astype(np.float32)},
                    priority=Priority.HIGH if key % 2 else Priority.NORMAL,
                )
                producer.produce(self.settings.topics.input, value=codec.encode(request), key=f"key-{key}".encode())
                self.sent.append((f"key-{key}", request["event_id"]))
                self.sent_at[request["event_id"]] = time.time()
                producer.poll(0)
            assert producer.flush(60) == 0
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@dataclass(frozen=True)
class Seen:
    at: float  # when the watcher received it (wall clock)
    worker: str
    event_id: str
    key: str
    partition: int
    offset: int


class Watcher(threading.Thread):
    """Reads the output topic from the driver as results arrive, noting when each arrived."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.seen: list[Seen] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            codec = Codecs.from_settings(self.settings).result
            consumer = Consumer(consumer_config(self.settings, f"{self.settings.group}.watcher"))
            topic = self.settings.topics.output
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
            try:
                while not self.stop.is_set():
                    batch = consumer.consume(1000, 0.05)
                    now = time.time()
                    for msg in batch:
                        if msg.error() is not None:
                            continue
                        result = codec.decode(msg.value())
                        self.seen.append(
                            Seen(
                                now,
                                result["worker_id"],
                                result["event_id"],
                                (msg.key() or b"").decode(),
                                msg.partition(),
                                msg.offset(),
                            )
                        )
            finally:
                consumer.close()
        except BaseException as exc:
            self.error = exc

    def answered(self) -> set[str]:
        return {s.event_id for s in list(self.seen)}

    def by(self, worker: str) -> list[Seen]:
        return [s for s in list(self.seen) if s.worker == worker]


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float, *workers: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(w.output()[-1500:] for w in workers)
            raise AssertionError(f"not within {timeout_s} s: {what}\n{tails}")
        time.sleep(0.05)


@dataclass
class Scenario:
    name: str
    settings: Settings
    lan: netns.Lan
    workers: dict[str, WorkerProcess]
    watcher: Watcher
    stream: Stream | None = None

    def start_stream(self, n: int, seed: int) -> Stream:
        self.stream = Stream(self.settings, n, seed)
        self.stream.start()
        return self.stream

    def wait_both_answering(self, at_least: int, timeout_s: float = 60) -> None:
        """Until ``at_least`` results are out and each host has answered some (the fault's precondition)."""
        wait_for(
            f"{at_least} results, both hosts answering",
            lambda: (
                self.watcher.error is None
                and len(self.watcher.seen) >= at_least
                and all(len(self.watcher.by(h)) >= 20 for h in HOSTS)
            ),
            timeout_s,
            *self.workers.values(),
        )

    def finish(self, timeout_s: float = 90) -> Stream:
        """The stream sent, then every event answered or the timeout passed (what is missing then counts
        as lost in the outcome)."""
        stream = self.stream
        assert stream is not None
        stream.join(timeout=timeout_s)
        assert stream.error is None and not stream.is_alive(), stream.error
        ids = {event_id for _, event_id in stream.sent}
        assert len(ids) == stream.n
        deadline = time.monotonic() + timeout_s
        while not ids <= self.watcher.answered() and time.monotonic() < deadline:
            assert self.watcher.error is None, self.watcher.error
            time.sleep(0.05)
        time.sleep(1.0)  # a result written twice would show by now
        return stream


@contextmanager
def scenario(site: Site, name: str, redirect_to: str | None = None) -> Iterator[Scenario]:
    """Fresh topics and group; both worker hosts running ``pipeline worker`` in their namespaces (w1's
    broker connections sent to ``redirect_to`` when given); a watcher on the output topic."""
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{role: f"{topic}.{name}.{tag}" for role, topic in Topics().all().items()})
    settings = Settings(
        bootstrap_servers=site.bootstrap, topics=topics, group=f"hosts-{name}-{tag}", partitions=PARTITIONS
    )
    create_pipeline_topics(settings)
    workers: dict[str, WorkerProcess] = {}
    watcher = Watcher(settings)
    try:
        if redirect_to:
            site.lan.redirect(FAULTY, site.bootstrap, redirect_to)
        for host in HOSTS:
            worker = WorkerProcess(
                settings,
                "--model", "tiny", "--worker-id", host,
                PIPELINE_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
            )  # fmt: skip
            worker.cmd = [*site.lan.exec_prefix(host), *worker.cmd]
            workers[host] = worker.start()
        for worker in workers.values():
            worker.wait_assigned(timeout_s=90)
        watcher.start()
        yield Scenario(name, settings, site.lan, workers, watcher)
    finally:
        watcher.stop.set()
        for host, worker in workers.items():
            if worker.alive():
                worker.kill()
            site.lan.kill_host(host)
            (site.tmp / f"{name}.{host}.log").write_text(worker.output())  # kept for a failure's reader
        site.lan.heal(FAULTY)
        if redirect_to:
            site.lan.unredirect(FAULTY)
        watcher.join(timeout=10)


# --------------------------------------------------------------------------------- the outcome


@dataclass
class Outcome:
    scenario: str
    fault: str
    events: int
    lost: int
    answered_twice: int
    errors: int  # error events (none expected: an event answered by an error instead counts as lost)
    results_again_s: float | None  # from the fault's end (or the kill) to the first result it had stopped
    measured_from: str
    longest_output_stall_s: float  # the longest gap between results arriving, during the scenario
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long the scenario took, workers' start included


def outcome(sc: Scenario, fault: str, results_again_s: float | None, measured_from: str, **details: Any) -> Outcome:
    assert sc.stream is not None
    seen = list(sc.watcher.seen)
    got = Counter(s.event_id for s in seen)
    sent = {event_id for _, event_id in sc.stream.sent}
    arrivals = sorted(s.at for s in seen)
    return Outcome(
        scenario=sc.name,
        fault=fault,
        events=len(sent),
        lost=len(sent - set(got)),
        answered_twice=sum(c - 1 for c in got.values()),
        results_again_s=None if results_again_s is None else round(results_again_s, 2),
        measured_from=measured_from,
        errors=count(sc.settings, sc.settings.topics.error),
        longest_output_stall_s=longest_gap(arrivals),
        details=details,
    )


def record(result: Outcome, started: float) -> None:
    result.seconds = round(time.monotonic() - started, 1)
    print(
        f"\n{result.scenario}: {result.fault}: {result.events} events, {result.lost} lost,"
        f" {result.answered_twice} answered twice, {result.errors} errors,"
        f" results again {result.results_again_s} s after {result.measured_from};"
        f" longest output stall {result.longest_output_stall_s} s; {result.details}; {result.seconds} s"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    try:
        kept = {r["scenario"]: r for r in json.loads(RESULTS.read_text())}
    except (OSError, ValueError, TypeError, KeyError):
        kept = {}
    kept[result.scenario] = asdict(result)
    RESULTS.write_text(json.dumps(list(kept.values()), indent=2) + "\n")


def first_after(seen: list[Seen], t: float, keep: Callable[[Seen], bool]) -> float | None:
    """Seconds from ``t`` to the first result received after it that ``keep`` accepts."""
    later = [s.at for s in seen if s.at > t and keep(s)]
    return min(later) - t if later else None


def assert_per_key_order(stream: Stream, seen: list[Seen]) -> None:
    """Per key, results first appear in the order the events were sent (read partition by partition)."""
    position = {event_id: i for i, (_, event_id) in enumerate(stream.sent)}
    firsts: dict[str, list[int]] = {}
    done: set[str] = set()
    for s in sorted(seen, key=lambda s: (s.partition, s.offset)):
        if s.event_id not in done:
            done.add(s.event_id)
            firsts.setdefault(s.key, []).append(position[s.event_id])
    for key, order in firsts.items():
        assert order == sorted(order), f"results of {key} out of order"


# Run on a host: Kafka ApiVersions round trips to ADDR PORT on one connection; prints the fastest in ms.
_RTT_PROBE = """
import socket, struct, sys, time
def read(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
request = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"
best = None
for _ in range(3):
    start = time.monotonic()
    sock.sendall(struct.pack(">i", len(request)) + request)
    read(sock, struct.unpack(">i", read(sock, 4))[0])
    took = (time.monotonic() - start) * 1000
    best = took if best is None else min(best, took)
print(round(best, 1))
"""


def kafka_rtt_ms(lan: netns.Lan, host: str, bootstrap: str) -> float:
    """The fastest of three request-response round trips from ``host`` to the broker, in ms: what the
    host's Kafka clients see of its link (through the redirect, when there is one)."""
    addr, port = bootstrap.rsplit(":", 1)
    return float(lan.run_on(host, sys.executable, "-c", _RTT_PROBE, addr, port).stdout.strip())


def lane_of(seen: Seen) -> str:
    """Odd keys are HIGH priority (``Stream``): they take the priority lane."""
    return "priority" if int(seen.key.rsplit("-", 1)[1]) % 2 else "bulk"


def longest_gap(times: list[float]) -> float:
    return round(max((b - a for a, b in itertools.pairwise(sorted(times))), default=0.0), 2)


def owned_before(seen: list[Seen], host: str, t: float, window_s: float = 3.0) -> set[str]:
    """The keys ``host`` answered in the last ``window_s`` before ``t``: the partitions it held then."""
    return {s.key for s in seen if s.worker == host and t - window_s <= s.at <= t}


# ---------------------------------------------------------------------------------- scenarios


def test_a_worker_host_killed_whole_loses_nothing_and_the_other_host_takes_its_keys(site: Site) -> None:
    started = time.monotonic()
    n = RATE * 14
    with scenario(site, "kill") as sc:
        stream = sc.start_stream(n, seed=71)
        sc.wait_both_answering(n // 3)
        assert stream.is_alive(), "the stream had ended before the kill"
        t_kill = time.time()
        killed = site.lan.kill_host(FAULTY)
        assert killed and not sc.workers[FAULTY].alive()
        sc.finish()
        assert sc.workers["w2"].alive(), sc.workers["w2"].output()[-3000:]
    seen = list(sc.watcher.seen)
    keys = owned_before(seen, FAULTY, t_kill)
    assert keys, "w1 answered nothing just before the kill"
    again = first_after(seen, t_kill, lambda s: s.worker == "w2" and s.key in keys)
    result = outcome(
        sc,
        "every process of worker host w1 killed (SIGKILL), not restarted",
        again,
        "the kill, to w2's first result for a key w1 held",
        processes_killed=len(killed),
        keys_w1_held=len(keys),
        w2_longest_stall_after_kill_s={
            lane: longest_gap([s.at for s in seen if s.worker == "w2" and s.at >= t_kill and lane_of(s) == lane])
            for lane in ("bulk", "priority")
        },
        session_timeout_s=SESSION_TIMEOUT_MS / 1000,
    )
    record(result, started)
    assert result.lost == 0
    assert again is not None and again < SESSION_TIMEOUT_MS / 1000 + 20, again
    assert_per_key_order(stream, seen)


def test_b_a_slow_lossy_link_to_one_host_loses_nothing(site: Site, toxiproxy: netns.Toxiproxy) -> None:
    started = time.monotonic()
    n = RATE * 20  # 4 s before the fault, 10 s of it, 6 s after (less what the probes take)
    fault_s = 10.0
    proxy = f"{site.lan.addr['broker']}:{PROXY_PORT}"
    with scenario(site, "slow-link", redirect_to=proxy) as sc:
        stream = sc.start_stream(n, seed=72)
        sc.wait_both_answering(n // 5)
        rtt_before = kafka_rtt_ms(site.lan, FAULTY, site.bootstrap)
        t0 = time.time()
        toxiproxy.latency(FAULTY, 200)
        site.lan.lose(FAULTY, 0.05)
        rtt_during = kafka_rtt_ms(site.lan, FAULTY, site.bootstrap)
        time.sleep(max(0.0, t0 + fault_s - time.time()))
        counters = site.lan.run_on_switch("iptables", "-L", "FORWARD", "-v", "-x", "-n").stdout
        toxiproxy.clear(FAULTY)
        site.lan.heal(FAULTY)
        t1 = time.time()
        assert stream.is_alive(), "the stream ended before the fault did: nothing left to measure after it"
        sc.finish()
        assert all(w.alive() for w in sc.workers.values())
    seen = list(sc.watcher.seen)
    dropped = sum(int(line.split()[0]) for line in counters.splitlines() if "fault-" + FAULTY in line)
    mine = [s for s in seen if s.worker == FAULTY]
    during = [s for s in mine if t0 + 1 <= s.at <= t1]
    before = [s for s in mine if t0 - 5 <= s.at <= t0]
    gaps = [b.at - a.at for a, b in itertools.pairwise(during)]
    again = first_after(seen, t1, lambda s: s.worker == FAULTY)
    assert before, "w1 answered nothing in the 5 s before the fault"
    result = outcome(
        sc,
        f"w1<->broker: +200 ms each way (Toxiproxy) and 5% of frames dropped each way at the switch, {fault_s:.0f} s",
        again,
        "the fault's end, to w1's next result",
        w1_results_per_s_before=round(len(before) / 5, 1),
        w1_results_per_s_during=round(len(during) / (t1 - t0 - 1), 1),
        w1_longest_stall_during_s=round(max(gaps, default=t1 - t0), 2),
        frames_dropped=dropped,
        w1_kafka_round_trip_ms_before=rtt_before,
        w1_kafka_round_trip_ms_during=rtt_during,
    )
    record(result, started)
    assert result.lost == 0
    assert dropped > 0, counters  # the loss was in effect
    # and so was the delay, 200 ms each way (the round trip before it is only reported: load alone has
    # made it 175 ms on two busy cores)
    assert rtt_during >= 400, result.details
    assert during, "w1 answered nothing during the fault"
    assert again is not None and again < 30, again
    assert_per_key_order(stream, seen)


def test_c_a_host_cut_off_for_20s_rides_through_and_answers_again(site: Site) -> None:
    started = time.monotonic()
    n = RATE * 37  # 3 s before the cut, 20 s cut off, 14 s to come back
    cut_s = 20.0
    with scenario(site, "cut") as sc:
        stream = sc.start_stream(n, seed=73)
        sc.wait_both_answering(n // 12)
        t_cut = time.time()
        site.lan.cut(FAULTY)
        time.sleep(cut_s)
        site.lan.heal(FAULTY)
        t_back = time.time()
        assert stream.is_alive(), "the stream ended before the reconnection: nothing left to measure after it"
        sc.finish()
        alive = {h: w.alive() for h, w in sc.workers.items()}
        assert all(alive.values()), sc.workers[FAULTY].output()[-4000:]  # rode through, no restart
    seen = list(sc.watcher.seen)
    keys = owned_before(seen, FAULTY, t_cut)
    sent_at = stream.sent_at
    again = first_after(seen, t_back, lambda s: s.worker == FAULTY)
    fresh = first_after(seen, t_back, lambda s: s.worker == FAULTY and sent_at.get(s.event_id, 0) > t_back)
    moved = first_after(seen, t_cut, lambda s: s.worker == "w2" and s.key in keys)
    during = [s for s in seen if s.worker == FAULTY and t_cut + 1 < s.at < t_back]
    result = outcome(
        sc,
        f"worker host w1 cut off at the switch for {cut_s:.0f} s, then reconnected",
        again,
        "the reconnection, to w1's next result",
        w1_results_during_cut=len(during),
        w1_first_result_of_an_event_sent_after_reconnection_s=None if fresh is None else round(fresh, 2),
        w2_took_w1_keys_after_cut_s=None if moved is None else round(moved, 2),
        session_timeout_s=SESSION_TIMEOUT_MS / 1000,
    )
    record(result, started)
    assert result.lost == 0
    assert not during, f"{len(during)} results from w1 while it was cut off: the cut was not in effect"
    assert again is not None and again < 30, again
    assert_per_key_order(stream, seen)
