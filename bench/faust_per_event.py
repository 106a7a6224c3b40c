"""The classic one-event-at-a-time design on Faust: an agent on the input topic that handles each event.

Faust commits an offset only after flushing its producer (``Consumer._commit_offsets``), so the outputs
are acknowledged (acks=all) before their inputs are committed, as in every other design.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence

import faust

from bench.job import Job, parse_design_args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_design_args(argv)
    job = Job.create(args, "faust-per-event")
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
        async def process(stream: faust.StreamT) -> None:
            async for event in stream.events():
                (value,) = job.run([event.value])
                if value is not None:
                    await sink.send(key=event.key, value=value)

        sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
        app.main()


if __name__ == "__main__":
    main()
