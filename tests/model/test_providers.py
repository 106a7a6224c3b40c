"""Provider choice on a machine without a usable GPU (this one): auto falls back, cuda refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipeline.model import ModelRunner, ProviderUnavailable, Registry
from pipeline.model.providers import CPU, cuda_unusable_reason, default_intra_op_threads

pytestmark = pytest.mark.skipif(cuda_unusable_reason() is None, reason="CUDA is usable on this machine")


def test_auto_falls_back_to_cpu_with_one_log_line_and_no_ort_spam(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="pipeline.model.providers"):
        runner = ModelRunner(registry.get("tiny"), tmp_path, device="auto")
    runner.close()
    records = [r for r in caplog.records if r.name == "pipeline.model.providers"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "CUDA unusable" in message and CPU in message
    assert "cannot" in message or "no CUDA provider" in message  # it says why
    assert runner.provider == CPU
    assert runner.info.provider == CPU
    out, err = capfd.readouterr()
    assert "onnxruntime" not in err and "Failed to load" not in out + err


def test_cuda_that_cannot_be_had_is_a_clear_start_up_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match=r"device=cuda but CUDA cannot be used: .+"):
        ModelRunner(registry.get("tiny"), tmp_path, device="cuda")


def test_cpu_is_quiet_and_uses_the_configured_threads(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.model.providers"):
        runner = ModelRunner(registry.get("tiny"), tmp_path, device="cpu", intra_op_threads=1)
    runner.close()
    assert not [r for r in caplog.records if r.name == "pipeline.model.providers"]
    assert runner.provider == CPU and runner.intra_op_threads == 1
    assert runner.describe()["provider"] == CPU
    assert default_intra_op_threads() >= 1
