"""What a worker says about itself: one line at start when something it needs is wrong, /readyz while
it cannot make progress for a known reason, /healthz when it is wedged."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import Settings
from pipeline.ops.generate import tiny_requests
from pipeline.serde import Codecs, build_request
from tests.harness import (
    REPO,
    WorkerProcess,
    env_for,
    free_port,
    http_json,
    poll_http,
    produce_raw,
    produce_requests,
)


def _one_line_failure(settings: Settings, *args: str, **env: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "worker", *args],
        env=env_for(settings, **env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    output = done.stdout + done.stderr
    return done.returncode, [line for line in output.splitlines() if line.startswith("error:")], output


def test_what_a_worker_needs_is_checked_at_start_with_one_line(e2e_settings: Settings, tmp_path: Path) -> None:
    settings = e2e_settings
    url = "http://127.0.0.1:9/apis/ccompat/v7"  # nothing listens there
    cases = {
        "schema registry at": ("--model", "tiny", {"PIPELINE_SCHEMA_REGISTRY_URL": url}),
        "not in the model cache": ("--model", "minilm-l6", {"PIPELINE_MODEL_CACHE": str(tmp_path)}),
        "missing on": ("--model", "tiny", {"PIPELINE_TOPICS__OUTPUT": "no-such-topic"}),
        "setting batch_size (PIPELINE_BATCH_SIZE)": ("--model", "tiny", {"PIPELINE_BATCH_SIZE": "0"}),
    }
    for says, (flag, model, env) in cases.items():
        started = time.monotonic()
        code, errors, output = _one_line_failure(settings, flag, model, **env)
        assert code != 0 and time.monotonic() - started < 60, output[-2000:]
        assert len(errors) == 1 and says in errors[0], output[-2000:]
        assert "Traceback" not in output


def test_healthz_fails_when_the_hot_path_is_wedged_with_work_pending(e2e_settings: Settings) -> None:
    """A hook that hangs with no deadline wedges the inference agent: work is pending, nothing is held on
    purpose and nothing commits, so /healthz turns 503 after stall_timeout_s, in every layout's process."""
    settings = e2e_settings
    port = free_port()
    env = {
        "PIPELINE_HOOKS_PRE": '["tests.e2e.hooks:stall_tagged"]',
        "PIPELINE_HOOK_TIMEOUT_MS": "0",  # no deadline: nothing interrupts the hook
        "PIPELINE_STALL_TIMEOUT_S": "3",
    }
    with WorkerProcess(settings, "--model", "tiny", "--metrics-port", str(port), **env) as worker:
        assert poll_http(port, "/readyz", until=200, timeout_s=90).status == 200, worker.output()[-3000:]
        produce_requests(settings, tiny_requests(50, seed=5))
        assert http_json(port, "/healthz") == (200, {"alive": True, "stalled": []})
        codec = Codecs.from_settings(settings).request
        stuck = build_request(model="tiny", tensors={"x": np.ones(8, np.float32)}, attributes={"stall": "1"})
        produce_raw(settings, settings.topics.input, [(b"k", codec.encode(stuck), None)])
        status, body, _ = poll_http(port, "/healthz", until=503, timeout_s=30, interval_s=0.2)
        assert (status, body) == (503, {"alive": False, "stalled": ["inference"]})
        assert worker.alive()
        worker.kill()  # its agent is inside the hanging hook: no drain can finish before the hook does
