"""The job in Quix Streams 3.28 as its users write it: one ``StreamingDataFrame``, a function applied to
each event that decodes and validates the request, calls ONNX Runtime and returns the encoded result,
and ``to_topic``. No project code: the schema files, fastavro, ONNX Runtime (``bench/plain.py``).

It runs from ``.venv-quix`` (quixstreams pins confluent-kafka below 2.13, so it must never move the
project's pins). Quix commits at each checkpoint after flushing its producer and waiting for every
delivery: commit after acknowledgement. ``--instances N`` runs are N copies in one consumer group.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from quixstreams import Application

from bench import peer_args
from bench.plain import Avro, Invalid, result, validate


def main(argv: Sequence[str] | None = None) -> None:
    args = peer_args.parse(argv)
    avro = Avro()
    model = peer_args.load_model(args)
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

    def answer(value: bytes, key: Any, timestamp: int, headers: Any) -> bytes | None:
        try:
            request = avro.decode_request(value)
            validate(request)
        except Invalid:
            return None  # a user would log it or send it to a topic of its own; the bench sends none
        started = time.time()
        ((output, truncated),) = model.run([request])
        done = time.time()
        answer = result(
            request, model, output, truncated, inference_ms=(done - started) * 1000.0, batch_size=1,
            worker_id=args.worker_id, timestamp_ms=timestamp, started_ms=started * 1000.0,
        )  # fmt: skip
        return avro.encode_result(answer)

    app.dataframe(source).apply(answer, metadata=True).filter(lambda v: v is not None).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
