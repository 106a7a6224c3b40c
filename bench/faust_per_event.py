"""The classic one-event-at-a-time design in Faust, as its users write it: an agent on the input topic
that, for each event, decodes and validates the request, calls ONNX Runtime and sends the encoded result.
No project code: the schema files, fastavro, ONNX Runtime (``bench/plain.py``).

Faust commits an offset only after flushing its producer (``Consumer._commit_offsets``), so the outputs
are acknowledged (acks=all) before their inputs are committed, as in every other design. ``--instances N``
runs are N workers of one app (one consumer group).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence

import faust

from bench import peer_args
from bench.plain import Avro, Invalid, result, validate


def main(argv: Sequence[str] | None = None) -> None:
    args = peer_args.parse(argv)
    avro = Avro()
    model = peer_args.load_model(args)
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        app = faust.App(
            args.group,
            broker=f"kafka://{args.bootstrap}",
            datadir=datadir,
            web_enabled=False,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            topic_partitions=1,
        )
        source = app.topic(args.input, value_serializer="raw", key_serializer="raw")
        sink = app.topic(args.output, value_serializer="raw", key_serializer="raw")

        @app.agent(source)
        async def answer(stream: faust.StreamT) -> None:
            async for event in stream.events():
                try:
                    request = avro.decode_request(event.value)
                    validate(request)
                except Invalid:
                    continue  # a user would log it or send it to a topic of its own; the bench sends none
                started = time.time()
                ((output, truncated),) = model.run([request])
                done = time.time()
                answer = result(
                    request, model, output, truncated, inference_ms=(done - started) * 1000.0, batch_size=1,
                    worker_id=args.worker_id, timestamp_ms=int(event.message.timestamp * 1000),
                    started_ms=started * 1000.0,
                )  # fmt: skip
                await sink.send(key=event.key, value=avro.encode_result(answer))

        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
        app.main()


if __name__ == "__main__":
    main()
