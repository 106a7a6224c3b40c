"""The ceiling for Python on Kafka: one confluent-kafka loop in one process doing the same job.

consume up to the pipeline's input batch (or its batch wait) -> decode and validate -> model runs at the
pipeline's batch size -> encode -> produce (acks=all, idempotent) -> flush (every output acknowledged)
-> commit. No second topic hop, no hand-off between threads: what the pipeline is held to.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from confluent_kafka import Consumer, Producer

from bench.job import Job, parse_design_args
from pipeline.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_design_args(argv)
    defaults = Settings()
    job = Job.create(args, "raw-loop")
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    consumer.subscribe([args.input])
    wait_s = defaults.batch_max_wait_ms / 1000.0
    while running:
        messages = [m for m in consumer.consume(defaults.input_batch_size, timeout=wait_s) if m.error() is None]
        if not messages:
            continue
        for i in range(0, len(messages), args.batch):
            chunk = messages[i : i + args.batch]
            for msg, value in zip(chunk, job.run([m.value() for m in chunk]), strict=True):
                if value is not None:
                    producer.produce(args.output, value=value, key=msg.key())
            producer.poll(0)
        if producer.flush(30) != 0:  # not all acknowledged: never commit past them
            return 2
        consumer.commit(asynchronous=True)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
