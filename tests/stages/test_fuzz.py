"""Hostile input never hurts: a million generated and mutated records through the input stage's decode,
validation and routing.

The records are valid requests of both schema versions in both framings (single-object, and Confluent
with a ``mock://`` registry that also holds hostile writer schemas), mutated: bit flips, pokes, truncation,
splices, inserted and deleted bytes, hostile varints (counts and lengths from 2**62 to -2**63, varints that
never end), repeated chunks, other headers, random bytes; with random headers (none, empty, binary, 200 kB,
trace context, stale dead-letter context). Counts, per run:

- ``test_mutants_through_the_whole_stage``: 30,000 seeded mutants with random headers through
  ``InputStage.process`` and its ``FailureRouter``, every output record checked;
- ``test_structured_mutants_through_the_whole_stage``: 2,000 records from 1,000 hypothesis examples
  (a corpus seed or a request hypothesis builds, written with v1 or v2 in either framing; mutations;
  headers) through ``InputStage.process``;
- ``test_mutants_decode_or_fail_typed``: 968,000 seeded mutants through the stage's own decode and
  validation (``request_codec.decode``, what ``InputStage.process`` calls per record), 650,000 of them
  in a second process that runs alongside the other tests;

1,000,000 in all, about 17 s on two cores. What must hold: only :class:`EventError` escapes decoding, each
with a code other than ``UNKNOWN`` and stage ``DECODE`` or ``VALIDATE``; the stage never raises; every
record is either forwarded unchanged or answered by exactly one error event (decodable with the error
schema, code not ``UNKNOWN``) and one dead letter (the record byte for byte); an accepted request passes
an oracle that judges it without the validator.
"""

from __future__ import annotations

import asyncio
import collections
import math
import multiprocessing
import random
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import Settings, Topics
from pipeline.kafka.records import OutRecord
from pipeline.observability.metrics import Metrics
from pipeline.serde import Codecs, ErrorCode, EventCodec, EventError, SchemaStore, Stage, build_request
from pipeline.serde.deadletter import read_context
from pipeline.serde.limits import DEFAULT_LIMITS
from pipeline.serde.validation import WIRE_DTYPES
from pipeline.stages.failures import MAX_TRACE_HEADER_BYTES
from pipeline.stages.input import InputStage
from tests.stages.conftest import Consumed, batch_of, router
from tests.stages.fuzz_corpus import (
    MUTATIONS,
    Corpus,
    Tally,
    build_corpus,
    headers,
    mutant,
    really_valid,
    request_codec,
    run_mutants,
)

SEED = 20261201
BULK = 968_000
SECOND_CORE = 650_000  # of BULK; this process runs the rest after the stage tests
STAGED = 30_000
STRUCTURED = 2_000
KNOWN_MODELS = frozenset({"tiny", "minilm-l6"})
TYPED_STAGES = {Stage.DECODE, Stage.VALIDATE}


@pytest.fixture(scope="module", autouse=True)
def second_core() -> Iterator[AsyncResult[Tally]]:
    """Part of the bulk in a second process, started before this module's other tests so that it runs
    while they do: the unit tier runs one test at a time, and the second core would idle."""
    pool = multiprocessing.get_context("spawn").Pool(1)  # no fork of a process that may hold threads
    yield pool.apply_async(run_mutants, (SEED + 1, SECOND_CORE))
    pool.terminate()
    pool.join()


@dataclass
class World:
    """The input stage under test, reading both framings, and what its outputs are checked with."""

    store: SchemaStore
    corpus: Corpus
    stage: InputStage
    settings: Settings
    codecs: Codecs
    loop: asyncio.AbstractEventLoop

    def run(self, records: list[Consumed]) -> list[OutRecord]:
        return self.loop.run_until_complete(self.stage.process(batch_of(records)))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from pipeline.serde.store import shared_store

    settings = Settings(topics=Topics(), model_cache=tmp_path_factory.mktemp("models"), group="fuzz")
    store = shared_store(settings.schemas_dir)
    corpus = build_corpus(store)
    codecs = Codecs.from_settings(settings)
    request = request_codec(store, corpus)
    codecs = Codecs(request, codecs.result, codecs.error)
    metrics = Metrics()
    stage = InputStage(
        request,
        router(settings, codecs, metrics),
        settings.topics.inference,
        settings.topics.inference_priority,
        KNOWN_MODELS,
        "tiny",
        metrics,
    )
    loop = asyncio.new_event_loop()  # one for the module: a loop per call cost more than a small batch
    yield World(store, corpus, stage, settings, codecs, loop)
    loop.close()


def test_the_seeds_are_valid_and_cover_both_versions_and_framings(world: World) -> None:
    assert BULK + STAGED + STRUCTURED == 1_000_000
    corpus = world.corpus
    decode = world.stage.request_codec.decode
    valid = [s for s, kind in zip(corpus.seeds, corpus.kinds, strict=True) if kind != "hostile"]
    assert all(really_valid(decode(s), DEFAULT_LIMITS) is None for s in valid)
    kinds = collections.Counter(corpus.kinds)
    for version in (1, 2):
        for framing in ("single-object", "confluent"):
            assert kinds[f"v{version} {framing}"] > 20
    hostile = {name: _code(decode, b"\x00" + i.to_bytes(4, "big") + b"\x00") for name, i in corpus.hostile_ids.items()}
    assert hostile == {
        "too_new": ErrorCode.SCHEMA_TOO_NEW,
        "nulls": ErrorCode.SCHEMA_RESOLUTION_FAILED,
        "recursive": ErrorCode.SCHEMA_RESOLUTION_FAILED,
        "result": ErrorCode.SCHEMA_RESOLUTION_FAILED,
    }


def _code(decode: Any, value: bytes) -> ErrorCode | None:
    try:
        decode(value)
    except EventError as exc:
        return exc.code
    return None


def _check_outputs(
    records: list[Consumed], out: list[OutRecord], settings: Settings, codecs: Codecs
) -> collections.Counter[str]:
    """Each record forwarded unchanged, or answered by one error event and one dead letter of its own."""
    topics = settings.topics
    by_source: dict[int, list[OutRecord]] = collections.defaultdict(list)
    for record in out:
        if record.topic in (topics.inference, topics.inference_priority):
            assert record.source is not None
            by_source[record.source.offset()].append(record)
        elif record.topic == topics.error:
            offset = codecs.error.decode(record.value)["source_offset"]
            by_source[offset].append(record)
        else:
            assert record.topic == topics.dead_letter
            by_source[int(read_context(record.headers)["offset"])].append(record)
    outcomes: collections.Counter[str] = collections.Counter()
    for msg in records:
        answer = by_source.pop(msg.offset())
        if len(answer) == 1:
            forward = answer[0]
            assert forward.value == msg.value_ and forward.headers == msg.headers_
            request = codecs.request.decode(forward.value)
            assert really_valid(request, DEFAULT_LIMITS) is None
            assert (request["model"]["name"] or "tiny") in KNOWN_MODELS  # none named: the default
            high = request["priority"] == "HIGH"
            assert forward.topic == (topics.inference_priority if high else topics.inference)
            outcomes["forwarded"] += 1
            continue
        error, letter = answer
        assert (error.topic, letter.topic) == (topics.error, topics.dead_letter)
        event = codecs.error.decode(error.value)
        assert event["error_code"] != "UNKNOWN" and event["stage"] in {"DECODE", "VALIDATE"}, event
        assert event["error_code"] in ErrorCode.__members__ and len(event["message"]) <= 4000
        assert letter.value == msg.value_
        context = read_context(letter.headers)
        assert (context["error_code"], context["stage"]) == (event["error_code"], event["stage"])
        assert all(len(v or b"") <= MAX_TRACE_HEADER_BYTES for _, v in error.headers or ())
        outcomes[event["error_code"]] += 1
    assert not by_source, f"outputs for no record: {by_source}"
    return outcomes


def test_mutants_through_the_whole_stage(world: World) -> None:
    corpus = world.corpus
    rng = random.Random(4096)
    outcomes: collections.Counter[str] = collections.Counter()
    done = 0
    while done < STAGED:
        records = [
            Consumed(mutant(rng, corpus.seeds, corpus.large), rng.choice([None, b"k", rng.randbytes(8)]), headers(rng))
            for _ in range(500)
        ]
        outcomes += _check_outputs(records, world.run(records), world.settings, world.codecs)
        done += len(records)
    assert sum(outcomes.values()) == STAGED
    assert outcomes["forwarded"] > 0 and len(outcomes) > 8


HEADER_KEYS = st.sampled_from(["traceparent", "tracestate", "", "x", "__pipeline.errors.offset"])
HEADER_VALUES = st.none() | st.binary(max_size=64) | st.just(b"\x00" * 70_000)
HEADERS = st.none() | st.lists(st.tuples(HEADER_KEYS, HEADER_VALUES), max_size=4)
EDITS = st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 2**32)), max_size=3)


@st.composite
def light_requests(draw: st.DrawFn, version: int) -> dict[str, Any]:
    """A request of ``version``, lighter to draw than ``tests.serde.strategies.requests`` (whose numpy
    arrays cost milliseconds each): a text, or tensors of drawn dtypes and shapes with drawn bytes."""
    common: dict[str, Any] = {
        "model": draw(st.sampled_from(["tiny", "minilm-l6", "other", ""])),
        "priority": draw(st.sampled_from(["LOW", "NORMAL", "HIGH"])),
        "attributes": draw(st.dictionaries(st.text(max_size=4), st.text(max_size=8), max_size=2)),
        "correlation_id": draw(st.none() | st.text(max_size=8)),
    }
    if draw(st.booleans()):
        request = build_request(text=draw(st.text(min_size=1, max_size=40)), **common)
    else:
        tensors = {}
        for name in draw(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=2, unique=True)):
            dtype = np.dtype(draw(st.sampled_from(sorted(WIRE_DTYPES))))
            shape = draw(st.lists(st.integers(0, 3), max_size=3))
            raw = draw(
                st.binary(min_size=math.prod(shape) * dtype.itemsize, max_size=math.prod(shape) * dtype.itemsize)
            )
            tensors[name] = np.frombuffer(raw, dtype).reshape(shape)
        request = build_request(tensors=tensors, **common)
    if version == 2:
        request["tenant"] = draw(st.none() | st.text(max_size=6))
    return request


# A base record: a corpus seed (by index), or a request hypothesis builds, written with v1 or v2, in either
# framing (None: no value at all).
BASES = st.one_of(
    st.integers(0, 10**6),
    st.tuples(st.tuples(st.just(1), st.booleans()), light_requests(1)),
    st.tuples(st.tuples(st.just(2), st.booleans()), light_requests(2)),
    st.none(),
)
RECORDS = st.lists(st.tuples(BASES, EDITS, HEADERS), min_size=2, max_size=2)


def _structured(
    base: Any, edits: list[tuple[Any, int]], corpus: Corpus, writers: dict[Any, EventCodec]
) -> bytes | None:
    if base is None:
        return None
    if isinstance(base, int):
        value = corpus.seeds[base % len(corpus.seeds)]
    else:
        (version, confluent), datum = base
        value = writers[(version, confluent)].encode(datum)
    for mutate, seed in edits:
        value = bytes(mutate(random.Random(seed), bytearray(value), corpus.seeds))
    return value


STRUCTURED_SETTINGS = settings(
    max_examples=STRUCTURED // 2,  # two records per example
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_structured_mutants_through_the_whole_stage(world: World) -> None:
    corpus = world.corpus
    writers = {
        (version, confluent): EventCodec(
            world.store,
            "inference_request",
            writer_version=version,
            framing="confluent" if confluent else "single-object",
            registry=corpus.registry,
            topic="fuzz.input",
        )
        for version in (1, 2)
        for confluent in (False, True)
    }
    seen = []

    @STRUCTURED_SETTINGS
    @given(RECORDS)
    def check(items: list[tuple[Any, list[tuple[Any, int]], Any]]) -> None:
        records = [Consumed(_structured(base, edits, corpus, writers), None, hdrs) for base, edits, hdrs in items]
        _check_outputs(records, world.run(records), world.settings, world.codecs)
        seen.append(len(records))

    check()
    assert sum(seen) == STRUCTURED


def test_mutants_decode_or_fail_typed(second_core: AsyncResult[Tally]) -> None:
    mine = run_mutants(SEED, BULK - SECOND_CORE)
    other = second_core.get(timeout=300)
    failures = mine.failures + other.failures
    assert not failures, "\n".join(failures)
    codes = collections.Counter(mine.codes) + collections.Counter(other.codes)
    accepted = mine.accepted + other.accepted
    assert accepted + sum(codes.values()) == BULK == mine.inputs + other.inputs
    # the mutations reach past the framing: the body's and the validator's codes are all hit
    reached = {
        "TRUNCATED",
        "INVALID_DATUM",
        "BAD_MAGIC",
        "UNKNOWN_SCHEMA",
        "SCHEMA_RESOLUTION_FAILED",
        "SCHEMA_TOO_NEW",
        "EMPTY",
        "INVALID_UUID",
        "BAD_DTYPE",
        "BAD_SHAPE",
        "TENSOR_SIZE_MISMATCH",
        "TENSOR_TOO_LARGE",
        "TOO_MANY_ITEMS",
    }
    assert reached <= set(codes), f"never seen: {reached - set(codes)}"
    assert accepted > BULK // 100  # some mutants stay valid (a flipped bit in a text, say)
    print(
        f"\n{BULK:,} mutants in {mine.seconds:.1f} s and {other.seconds:.1f} s: {accepted:,} accepted, "
        f"{dict(codes.most_common())}"
    )
