"""The priority lane's rule, without a broker: the bulk reader holds its partitions while the lane's reader
reports records, and only then; the lane's reader may be left without partitions without the worker
turning not ready."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from pipeline.kafka.holds import Holds
from pipeline.kafka.lane import LaneSignal
from pipeline.observability.health import Health
from pipeline.observability.metrics import Metrics
from pipeline.worker.readers import LANE, reader_names
from tests.kafka.fakes import Record


class _Client:
    """What holds ask of a consumer: pause, resume, positions and seeks, recorded."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()

    def pause(self, tps: list[TopicPartition]) -> None:
        self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in tps)

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 7) for tp in tps]

    def seek(self, tp: TopicPartition) -> None:
        pass


def test_the_bulk_is_held_while_the_lane_reports_records_and_released_when_it_stops() -> None:
    lane = LaneSignal()
    holds = Holds(yields_to=lane)
    client: Any = _Client()
    assigned = {("bulk", 0), ("bulk", 1)}
    pending: list[Any] = [Record("bulk", 0, 7), Record("bulk", 1, 3)]
    assert holds.apply(client, assigned, pending) == pending and not client.paused
    lane.report(True)
    assert holds.waiting()  # a held bulk polls briefly, so the lane's end is seen soon
    assert holds.apply(client, assigned, pending) == []  # fetched bulk records are dropped, read again later
    assert client.paused == assigned
    assert holds.reason is None  # the lane is ordinary operation: not a reason to report not ready
    lane.report(True)
    lane.report(False)
    holds.apply(client, assigned, [])
    assert not client.paused and not holds.waiting()
    assert lane.pauses == 1


def test_a_reader_without_a_lane_never_yields() -> None:
    holds = Holds()
    client: Any = _Client()
    holds.apply(client, {("bulk", 0)}, [])
    assert not client.paused and not holds.waiting()


def test_the_inference_role_reads_the_lane_in_a_reader_of_its_own() -> None:
    assert reader_names(["input", "inference"]) == ("input", "inference", LANE)
    assert reader_names(["input"]) == ("input",)
    assert reader_names(["inference"]) == ("inference", LANE)


def test_a_lane_reader_without_partitions_leaves_the_worker_ready() -> None:
    health = Health(Metrics(), reader_names(["inference"]), standby=(LANE,))
    health.built(model_warm=True)
    health.assignment("inference", 6)
    health.assignment(LANE, 0)
    assert health.ready
    health.assignment("inference", 0)
    assert not health.checks()["partitions_assigned"]
