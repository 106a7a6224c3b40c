"""`pipeline produce`: the JSON line format (pure), and sending to the real broker with bad lines,
--strict, stdin, rate limit and a tail -> produce round trip."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.ops.collect import read_topic
from pipeline.ops.jsonlines import DEFAULT_SOURCE, LineError, parse_line
from pipeline.serde import Codecs
from tests.ops.conftest import Cli

X = base64.b64encode(np.arange(8, dtype=np.float32).tobytes()).decode()
GOOD = '{"model": "tiny", "tensors": [{"name": "x", "dtype": "float32", "shape": [8], "data": "%s"}], "key": "k%d"}'


def test_a_line_gets_defaults_and_its_shortcuts_resolved() -> None:
    parsed = parse_line(GOOD % (X, 1), now_ms=1234)
    d = parsed.datum
    assert parsed.key == b"k1" and parsed.headers == []
    assert d["created_at"] == 1234 and d["source"] == DEFAULT_SOURCE and d["priority"] == "NORMAL"
    assert d["model"] == {"name": "tiny", "version": None} and len(d["event_id"]) == 36
    assert d["payload"]["tensors"][0]["data"] == np.arange(8, dtype=np.float32).tobytes()
    text = parse_line('{"model": {"name": "m", "version": "2"}, "text": "hi", "event_id": "e"}', 0).datum
    assert text["payload"] == {"text": "hi"} and text["event_id"] == "e" and text["model"]["version"] == "2"


def test_a_tail_row_is_accepted_with_its_key_and_headers() -> None:
    row = {"partition": 0, "offset": 3, "timestamp": 9, "key": "k", "headers": {"h": "v"}}
    row["request"] = {"model": {"name": "tiny", "version": None}, "payload": {"text": "t"}, "created_at": 5}
    parsed = parse_line(json.dumps(row), 0)
    assert parsed.key == b"k" and parsed.headers == [("h", b"v")] and parsed.datum["created_at"] == 5


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("nope", "not JSON"),
        ("[1]", "JSON object"),
        ('{"text": "x"}', "'model' is missing"),
        ('{"model": "m", "text": "x", "colour": 1}', "unknown field"),
        ('{"model": "m"}', "exactly one of"),
        ('{"model": "m", "tensors": [{"name": "x", "dtype": "f", "shape": [1], "data": "@@"}]}', "base64"),
        ('{"model": "m", "tensors": [{"name": "x"}]}', "lacks dtype, shape, data"),
    ],
)
def test_a_bad_line_says_what_is_wrong(line: str, says: str) -> None:
    with pytest.raises(LineError, match=says):
        parse_line(line, 0)


def _lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_produce_sends_the_valid_lines_and_names_the_invalid_ones(
    ops_settings: Settings, cli: Cli, tmp_path: Path
) -> None:
    settings = ops_settings
    topic = settings.topics.input
    lines = [GOOD % (X, 0), "{not json", GOOD % (X, 2), "", '{"model": "tiny", "text": ""}', GOOD % (X, 5)]
    res = cli("produce", "--topic", topic, "--file", str(_lines(tmp_path, lines)))
    assert res.exit_code == 1, res.output
    assert "line 2: not JSON" in res.output and "line 5:" in res.output and "line 4" not in res.output
    assert "sent 3, failed 0, invalid 2" in res.output
    got = read_topic(settings, topic, expected=3, idle_s=0.5)
    codec = Codecs.from_settings(settings).request
    assert sorted(r.key or b"" for r in got) == [b"k0", b"k2", b"k5"]
    assert all(codec.decode(r.value)["model"]["name"] == "tiny" for r in got)

    strict = cli("produce", "--topic", topic, "--file", str(_lines(tmp_path, lines)), "--strict")
    assert strict.exit_code == 1 and "stopped at line 2 (--strict); 1 sent before it" in strict.output
    assert len(read_topic(settings, topic, expected=4, idle_s=0.5)) == 4

    stdin = "\n".join(GOOD % (X, 10 + i) for i in range(20))
    began = time.monotonic()
    paced = cli("produce", "--topic", topic, "--rate", "40", input=stdin)
    took = time.monotonic() - began
    assert paced.exit_code == 0 and "sent 20, failed 0, invalid 0" in paced.output, paced.output
    assert took >= 19 / 40 * 0.9, took  # 20 records at 40/s: the pacing waits about half a second


def test_tail_output_produced_again_copies_the_requests(ops_settings: Settings, cli: Cli, tmp_path: Path) -> None:
    settings = ops_settings
    sent = cli("produce", "--topic", settings.topics.input, input="\n".join(GOOD % (X, i) for i in range(5)))
    assert sent.exit_code == 0, sent.output
    rows = cli("tail", settings.topics.input, "--from-beginning")
    assert rows.exit_code == 0 and len(rows.output.splitlines()) == 5, rows.output
    again = cli("produce", "--topic", settings.topics.output, input=rows.output)
    assert again.exit_code == 0, again.output
    codec = Codecs.from_settings(settings).request
    before = {codec.decode(r.value)["event_id"]: r.key for r in read_topic(settings, settings.topics.input, idle_s=0.5)}
    after = {codec.decode(r.value)["event_id"]: r.key for r in read_topic(settings, settings.topics.output, idle_s=0.5)}
    assert after == before and len(after) == 5


def test_produce_bad_input_is_one_clear_line(ops_settings: Settings, cli: Cli, tmp_path: Path) -> None:
    missing_topic = cli("produce", "--topic", "no.such.topic.here", "--file", str(_lines(tmp_path, [GOOD % (X, 0)])))
    assert missing_topic.exit_code == 1 and "does not exist" in missing_topic.output
    missing_file = cli("produce", "--file", str(tmp_path / "absent.jsonl"))
    assert missing_file.exit_code == 1 and "no such file" in missing_file.output
