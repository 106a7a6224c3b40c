"""`pipeline model` commands on the tiny model (cheap) with a temporary model cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_MODEL_CACHE", str(tmp_path))
    return tmp_path


def test_export_tiny_prints_the_path_last_and_is_idempotent(cache: Path) -> None:
    first = CliRunner().invoke(app, ["model", "export", "--model", "tiny"])
    assert first.exit_code == 0, first.output
    assert first.output.strip().splitlines()[-1] == str(cache / "tiny" / "model.onnx")
    mtime = (cache / "tiny" / "model.onnx").stat().st_mtime_ns
    again = CliRunner().invoke(app, ["model", "export", "--model", "tiny"])
    assert again.exit_code == 0 and (cache / "tiny" / "model.onnx").stat().st_mtime_ns == mtime


def test_path_fails_for_a_model_not_exported(cache: Path) -> None:
    result = CliRunner().invoke(app, ["model", "path", "--model", "minilm-l6"])
    assert result.exit_code == 1
    unknown = CliRunner().invoke(app, ["model", "path", "--model", "nope"])
    assert unknown.exit_code == 1


def test_info_and_bench_on_tiny(cache: Path) -> None:
    info = CliRunner().invoke(app, ["model", "info", "--model", "tiny", "--device", "cpu"])
    assert info.exit_code == 0, info.output
    assert "CPUExecutionProvider" in info.output and "output y" in info.output
    bench = CliRunner().invoke(app, ["model", "bench", "--model", "tiny", "--batch", "1,8", "--seconds", "0.1"])
    assert bench.exit_code == 0, bench.output
    assert "events/s" in bench.output
