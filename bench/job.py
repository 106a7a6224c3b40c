"""The job every baseline does, written once so that the designs differ only in how they move records:
decode and validate our Avro request with our codec, run the model through the same runner the pipeline
uses, write our InferenceResult as the inference role writes it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.model.outcome import Outcome, Success
from pipeline.model.service import ModelService
from pipeline.serde import Codecs, EventCodec, EventError, now_millis
from pipeline.serde.result_wire import ResultWire
from pipeline.stages.results import success_result


@dataclass(frozen=True)
class DesignArgs:
    bootstrap: str
    input: str
    output: str
    group: str
    model: str
    batch: int


def parse_design_args(argv: Sequence[str] | None = None) -> DesignArgs:
    """The command line every baseline takes (see `designs.command`)."""
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "input", "output", "group", "model"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--batch", type=int, default=Settings().batch_size)
    ns = parser.parse_args(argv)
    return DesignArgs(ns.bootstrap, ns.input, ns.output, ns.group, ns.model, ns.batch)


@dataclass
class Job:
    codecs: Codecs
    models: ModelService
    worker_id: str = "bench"

    @classmethod
    def create(cls, args: DesignArgs, worker_id: str) -> Job:
        """Our codec with validation on (``Codecs.from_settings``) and the model loaded and warmed up."""
        settings = Settings(bootstrap_servers=args.bootstrap, model=args.model, batch_size=args.batch)
        return cls(Codecs.from_settings(settings), ModelService.from_settings(settings), worker_id)

    def run(self, values: Sequence[bytes | None]) -> list[bytes | None]:
        """One encoded result per value, in order, from one model run (None where a request was bad)."""
        requests: list[dict[str, Any] | None] = []
        for value in values:
            try:
                requests.append(self.codecs.request.decode(value))
            except EventError:
                requests.append(None)
        good = [r for r in requests if r is not None]
        started = time.time()
        outcomes = iter(self.models.run_batch([((r.get("model") or {}).get("name"), r["payload"]) for r in good]))
        inference_ms = (time.time() - started) * 1000.0
        answered = [(r, next(outcomes) if r is not None else None) for r in requests]
        return result_values(self.codecs.result, answered, inference_ms, len(good), self.worker_id)


def result_values(
    codec: EventCodec,
    answered: Sequence[tuple[dict[str, Any] | None, Outcome | None]],
    inference_ms: float,
    batch_size: int,
    worker_id: str,
) -> list[bytes | None]:
    """Each request's encoded result (None where there is none), written as the inference role writes
    them: straight to bytes (``ResultWire``) while the codec writes the schema it knows, else built and
    encoded by the codec."""
    wire = ResultWire.for_codec(codec, codec.topic or "")
    wires = wire.chunk(inference_ms=inference_ms, batch_size=batch_size, worker_id=worker_id) if wire else None
    out: list[bytes | None] = []
    for request, outcome in answered:
        if request is None or not isinstance(outcome, Success):
            out.append(None)
        elif wires is None:
            result = success_result(
                request, outcome, inference_ms=inference_ms, batch_size=batch_size, worker_id=worker_id
            )
            out.append(codec.encode(result))
        else:
            info = outcome.model
            out.append(
                wires.for_model(info.name, info.version, info.provider).write(
                    request,
                    embedding=outcome.embedding,
                    outputs=outcome.outputs,
                    truncated=outcome.truncated,
                    queued_ms=0.0,
                    completed_at=now_millis(),
                )
            )
    return out
