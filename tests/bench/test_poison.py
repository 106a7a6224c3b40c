"""The poison benchmark's streams: the clean one is all valid, the mixed one fails every other record with
the kind it names, and the stage measurement runs."""

from __future__ import annotations

import collections

from bench.poison import KINDS, records, stage_rate
from pipeline.config import Settings
from pipeline.serde import Codecs, EventError


def test_every_other_record_is_poison_of_each_kind_in_turn() -> None:
    codec = Codecs.from_settings(Settings()).request
    clean, mixed = records(codec, 40, False), records(codec, 40, True)
    assert len(clean) == len(mixed) == 40
    for value in clean + mixed[::2]:
        codec.decode(value)
    codes: collections.Counter[tuple[str, str]] = collections.Counter()
    for i, value in enumerate(mixed[1::2]):
        try:
            codec.decode(value)
        except EventError as exc:
            codes[(KINDS[i % len(KINDS)], exc.code.value)] += 1
        else:
            raise AssertionError(f"poison {i} ({KINDS[i % len(KINDS)]}) decoded")
    assert {kind: code for kind, code in codes if kind != "garbage"} == {
        "unknown fingerprint": "UNKNOWN_SCHEMA",
        "bad tensor": "TENSOR_SIZE_MISMATCH",
        "tensor too large": "TENSOR_TOO_LARGE",
    }
    assert sum(codes.values()) == 20


def test_the_stage_rate_is_measured() -> None:
    codec = Codecs.from_settings(Settings()).request
    assert stage_rate(Settings(), records(codec, 200, True), repeats=1) > 0
