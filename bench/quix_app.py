"""The same job in Quix Streams, as its users would write it: ``StreamingDataFrame.apply`` per event.

It runs from ``.venv-quix`` (quixstreams pins confluent-kafka below 2.13, so it must never move the
project's pins). Quix commits at each checkpoint after flushing its producer: commit after acknowledgement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quixstreams import Application

from bench.job import Job, parse_design_args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_design_args(argv)
    job = Job.create(args, "quix")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        auto_create_topics=False,
        loglevel="WARNING",
        producer_extra_config={"acks": "all", "enable.idempotence": True},
    )
    source = app.topic(args.input, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(args.output, value_serializer="bytes", key_serializer="bytes")

    def run(value: Any) -> Any:
        return job.run([value])[0]

    app.dataframe(source).apply(run).filter(lambda v: v is not None).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
