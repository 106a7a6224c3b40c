"""The shared ``--filter`` language, and what it means on dead letters."""

from __future__ import annotations

import pytest

from pipeline.ops.dlq import DeadLetter, Filter
from pipeline.ops.filters import FilterError, parse_filter, parse_filters
from pipeline.serde.deadletter import PREFIX


def test_equals_any_and_not_equals_none() -> None:
    values = {"a": "x", "b": "y"}
    flt = parse_filters(["a=x,z", "b!=q, r"])
    assert flt.keeps(values.get)
    assert not parse_filters(["a=z"]).keeps(values.get)
    assert not parse_filters(["b!=y"]).keeps(values.get)
    assert parse_filters(["missing!=x"]).keeps(values.get)  # an absent field equals nothing
    assert not parse_filters(["missing=x"]).keeps(values.get)
    assert parse_filters([]).keeps(values.get) and not parse_filters([])


def test_values_are_trimmed_and_names_checked_when_a_caller_lists_them() -> None:
    cond = parse_filter(" error_code = A , B ", known=["error_code"])
    assert cond.name == "error_code" and cond.values == frozenset({"A", "B"}) and not cond.negated
    assert parse_filter("header.x-tenant=acme", known=["key"], prefixes=["header."]).name == "header.x-tenant"
    with pytest.raises(FilterError, match="unknown filter field 'eror_code'"):
        parse_filter("eror_code=A", known=["error_code"])
    with pytest.raises(FilterError, match="names no value"):
        parse_filter("error_code= , ")


def _dl(code: str, stage: str, cls: str, tenant: bytes) -> DeadLetter:
    headers = [("tenant", tenant), (PREFIX + "error_code", code.encode()), (PREFIX + "stage", stage.encode())]
    headers.append((PREFIX + "exception.class", cls.encode()))
    return DeadLetter(0, 0, 0, b"key-1", b"v", headers)


def test_dead_letter_fields_come_from_their_context_headers() -> None:
    letters = [
        _dl("HOOK_FAILED", "HOOK", "RuntimeError", b"acme"),
        _dl("MODEL_FAILED", "INFERENCE", "onnxruntime.Fail", b"acme"),
        _dl("HOOK_FAILED", "HOOK", "ValueError", b"other"),
    ]
    pick = Filter.parse([], ["stage=HOOK", "exception!=ValueError"])
    assert [dl.exception_class for dl in letters if pick.keeps(dl)] == ["RuntimeError"]
    by_header = Filter.parse(["HOOK_FAILED", "MODEL_FAILED"], ["header.tenant=acme", "key=key-1"])
    assert sum(by_header.keeps(dl) for dl in letters) == 2
    with pytest.raises(FilterError):
        Filter.parse([], ["colour=red"])
