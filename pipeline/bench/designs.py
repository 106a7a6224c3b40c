"""The designs under test, each as a process of its own: how to start one, sample its memory, stop it.

Every design runs in its own process so that its peak RSS is its own and the measuring code (generator,
reader) never shares its GIL. The pipeline is the real worker (`pipeline worker`), configured through the
same environment the end-to-end tests use (``env_for``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

import psutil

from pipeline.config import Settings
from pipeline.ops.local_worker import REPO, env_for

DESIGNS = ("pipeline", "raw_loop", "faust_per_event", "quix")
LABELS = {
    "pipeline": "this pipeline (input agent -> inference topic -> inference agent)",
    "raw_loop": "raw confluent-kafka loop, one process",
    "faust_per_event": "Faust agent, one event at a time (the seed's design)",
    "quix": "Quix Streams 3.28, StreamingDataFrame.apply per event",
}
QUIX_PYTHON = REPO / ".venv-quix" / "bin" / "python"


def command(design: str, settings: Settings, model: str, batch: int, layout: str = "auto") -> list[str]:
    """The command line that runs ``design`` on ``settings``' input and output topics; ``layout`` is the
    pipeline's ``--process-per-role`` (its default: auto)."""
    t = settings.topics
    if design == "pipeline":
        return [
            sys.executable, "-m", "pipeline.cli.main", "worker", "--model", model,
            "--batch-size", str(batch), "--no-status", "--process-per-role", layout,
        ]  # fmt: skip
    common = ["--bootstrap", settings.bootstrap_servers, "--input", t.input, "--output", t.output]
    common += ["--group", f"{settings.group}.{design}", "--model", model, "--batch", str(batch)]
    if design == "raw_loop":
        return [sys.executable, "-m", "pipeline.bench.raw_loop", *common]
    if design == "faust_per_event":
        return [sys.executable, "-m", "pipeline.bench.faust_per_event", *common]
    if design == "quix":
        return [str(QUIX_PYTHON), "-m", "pipeline.bench.quix_app", *common]
    raise ValueError(f"unknown design {design!r}")


class DesignProcess:
    """A running design: its process group, the peak RSS of its process tree (sampled every 50 ms), and a
    stop that never leaves it behind (SIGTERM to the group, SIGKILL after a grace period)."""

    def __init__(self, cmd: list[str], settings: Settings, sample_s: float = 0.05) -> None:
        env = env_for(settings, PIPELINE_LOG_LEVEL="warning", PYTHONPATH=str(REPO))
        # The output goes to a file: a pipe that nobody reads while it runs would fill up and block it.
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.peak_rss = 0
        self._sample_s = sample_s
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        while not self._stopping.is_set():
            try:
                rss = root.memory_info().rss
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        rss += child.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
            except psutil.Error:
                return
            self._stopping.wait(self._sample_s)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / 2**20

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 3000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM the whole group (the design drains and commits), SIGKILL if it does not exit in time."""
        self._stopping.set()
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._sampler.join(timeout=1)
        return self.proc.wait()

    def __enter__(self) -> DesignProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


def quix_available() -> Path | None:
    return QUIX_PYTHON if QUIX_PYTHON.is_file() else None
