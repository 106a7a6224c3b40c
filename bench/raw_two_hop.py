"""The pipeline's job by hand, with no project code: plain confluent-kafka and ``bench/plain.py`` (the
schema files, fastavro, ONNX Runtime), over the same two hops as the pipeline.

- ``--hop input`` (group ``GROUP.input``): consume up to 500 records or 20 ms' worth, decode and validate
  each (the input stage's rules), forward each valid one unchanged (value, headers, timestamp; keyed by
  its key or event id) to the inference topic, or to the priority lane when its priority is HIGH.
- ``--hop inference`` (group ``GROUP.inference``, both inference topics): consume, decode, run the model
  in batches of ``--batch``, build and encode one result per event, produce them to the output topic.
- ``--hop both``: the two loops in one process, a thread each.

Each hop produces with acks=all and idempotence, flushes (every output acknowledged) and only then
commits the offsets of what it consumed: commit after acknowledgement, as the pipeline.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Message, Producer

from bench import peer_args
from bench.plain import Avro, Invalid, Model, result, validate

INPUT_BATCH = 500
INFERENCE_BATCH = 480
WAIT_S = 0.02


def _clients(args: argparse.Namespace, group: str, topics: list[str]) -> tuple[Consumer, Producer]:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(topics)
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    return consumer, producer


def _loop(
    consumer: Consumer, producer: Producer, most: int, running: threading.Event, handle: Callable[[list[Message]], None]
) -> int:
    while running.is_set():
        messages = [m for m in consumer.consume(most, timeout=WAIT_S) if m.error() is None]
        if not messages:
            continue
        handle(messages)
        if producer.flush(30) != 0:  # not all acknowledged: never commit past them
            return 2
        consumer.commit(asynchronous=True)
    consumer.close()
    return 0


def input_hop(args: argparse.Namespace, avro: Avro, running: threading.Event) -> int:
    consumer, producer = _clients(args, f"{args.group}.input", [args.input])

    def forward(messages: list[Message]) -> None:
        for msg in messages:
            try:
                request = avro.decode_request(msg.value())
                validate(request)
            except Invalid:
                continue  # a user would send it to an error topic; the bench's backlog has none
            topic = args.priority if request["priority"] == "HIGH" else args.inference
            key = msg.key() or request["event_id"].encode()
            producer.produce(topic, msg.value(), key, headers=msg.headers(), timestamp=msg.timestamp()[1])
        producer.poll(0)

    return _loop(consumer, producer, INPUT_BATCH, running, forward)


def inference_hop(args: argparse.Namespace, avro: Avro, model: Model, running: threading.Event) -> int:
    consumer, producer = _clients(args, f"{args.group}.inference", [args.priority, args.inference])

    def answer(messages: list[Message]) -> None:
        for i in range(0, len(messages), args.batch):
            chunk = messages[i : i + args.batch]
            requests = []
            for msg in chunk:
                try:
                    requests.append((msg, avro.decode_request(msg.value())))
                except Invalid:
                    continue
            if not requests:
                continue
            started = time.time()
            outputs = model.run([r for _, r in requests])
            done = time.time()
            for (msg, request), (output, truncated) in zip(requests, outputs, strict=True):
                value = avro.encode_result(
                    result(
                        request, model, output, truncated, inference_ms=(done - started) * 1000.0,
                        batch_size=len(requests), worker_id=args.worker_id, timestamp_ms=msg.timestamp()[1],
                        started_ms=started * 1000.0,
                    )
                )  # fmt: skip
                producer.produce(args.output, value, msg.key())
            producer.poll(0)

    return _loop(consumer, producer, INFERENCE_BATCH, running, answer)


def main(argv: Sequence[str] | None = None) -> int:
    p = peer_args.parser()
    p.add_argument("--inference", required=True)
    p.add_argument("--priority", required=True)
    p.add_argument("--hop", choices=("input", "inference", "both"), default="both")
    args = p.parse_args(argv)
    avro = Avro()
    model = peer_args.load_model(args) if args.hop != "input" else None
    running = threading.Event()
    running.set()
    signal.signal(signal.SIGTERM, lambda *_: running.clear())
    if args.hop == "input":
        return input_hop(args, avro, running)
    assert model is not None
    if args.hop == "inference":
        return inference_hop(args, avro, model, running)
    codes: list[int] = []
    side = threading.Thread(target=lambda: codes.append(input_hop(args, avro, running)), name="input-hop")
    side.start()
    code = inference_hop(args, avro, model, running)
    side.join()
    return max([code, *codes])


if __name__ == "__main__":
    sys.exit(main())
