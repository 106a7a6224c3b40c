"""`pipeline tail`: requests, dead letters and garbage on one topic, each shown, none stopping it."""

from __future__ import annotations

import base64
import json

import numpy as np

from pipeline.config import Settings
from pipeline.serde import Codecs, build_request
from pipeline.serde.deadletter import PREFIX
from tests.harness import produce_raw
from tests.ops.conftest import Cli


def test_tail_shows_every_kind_of_record_and_survives_bad_ones(ops_settings: Settings, cli: Cli) -> None:
    settings = ops_settings
    codec = Codecs.from_settings(settings).request
    req = build_request(model="tiny", tensors={"x": np.ones(8, np.float32)})
    good = codec.encode(req)
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]] = [
        (b"a", good, [("traceparent", b"00-x-y-01")]),
        (b"a", b"\x00garbage", None),
        (b"a", b"\xff\xfe", [(PREFIX + "error_code", b"BAD_MAGIC"), (PREFIX + "stage", b"DECODE")]),
        (b"a", good, None),
    ]
    produce_raw(settings, settings.topics.input, records)
    res = cli("tail", settings.topics.input)  # reading once starts at the beginning
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert len(rows) == 4
    assert rows[0]["request"]["event_id"] == req["event_id"]
    assert rows[0]["headers"] == {"traceparent": "00-x-y-01"}
    data = rows[0]["request"]["payload"]["tensors"][0]["data"]
    assert base64.b64decode(data) == np.ones(8, np.float32).tobytes()
    assert "undecodable" in rows[1] and rows[1]["error"]
    assert rows[2]["dead_letter"] == {"error_code": "BAD_MAGIC", "stage": "DECODE"}
    assert base64.b64decode(rows[2]["value_b64"]) == b"\xff\xfe"
    assert "request" in rows[3]

    one = cli("tail", settings.topics.input, "--from-beginning", "--max", "1", "--partition", "0")
    assert len(one.output.splitlines()) <= 1
    later = cli("tail", settings.topics.input, "--from", "2999-01-01T00:00:00Z")
    assert later.exit_code == 0 and later.output == ""
    bad = cli("tail", settings.topics.input, "--from", "soon")
    assert bad.exit_code == 1 and "cannot read time" in bad.output


def test_follow_sees_records_written_after_it_started(ops_settings: Settings) -> None:
    import threading
    import time

    from pipeline.ops.tail import tail

    settings = ops_settings
    produce_raw(settings, settings.topics.output, [(b"old", b"x", None)])
    rows: list[dict[str, object]] = []
    reader = threading.Thread(
        target=lambda: rows.extend(tail(settings, settings.topics.output, follow=True, max_records=2))
    )
    reader.start()
    time.sleep(2.0)  # tail -f: the record already there is not shown
    produce_raw(settings, settings.topics.output, [(b"new1", b"y", None), (b"new2", b"z", None)])
    reader.join(timeout=30)
    assert sorted(r["key"] for r in rows) == ["new1", "new2"]  # type: ignore[type-var]
