"""The designs under test, each as a process of its own: how to start one, sample its memory, stop it.

Every design runs in its own process so that its peak RSS is its own and the measuring code (generator,
reader) never shares its GIL. The pipeline is the real worker (`pipeline worker`), configured through the
same environment the end-to-end tests use (``env_for``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

import psutil

from bench.cpu import tree_cpu_by_process, tree_cpu_seconds
from pipeline.config import Settings
from pipeline.model.registry import load_registry
from tests.harness import REPO, env_for

DESIGNS = (
    "pipeline", "pipeline_eos", "raw_loop", "raw_two_hop", "faust_per_event", "faust_per_event_n", "quix", "quix_n",
)  # fmt: skip
LABELS = {
    "pipeline": "this pipeline (input agent -> inference topic -> inference agent)",
    "pipeline_eos": "this pipeline with processing_guarantee exactly_once (transactions per commit interval)",
    "raw_loop": "raw confluent-kafka loop, one process, one hop, on the pipeline's codec and model runner",
    "raw_two_hop": "plain confluent-kafka and fastavro, input -> inference -> output topic, a process per hop",
    "faust_per_event": "Faust agent, one event at a time, plain fastavro and ONNX Runtime",
    "faust_per_event_n": "the same Faust app, N workers in one consumer group",
    "quix": "Quix Streams 3.28, StreamingDataFrame.apply per event, plain fastavro and ONNX Runtime",
    "quix_n": "the same Quix app, N instances in one consumer group",
}
# The designs run as N copies in one consumer group, N being the pipeline's process count (supervisor aside).
GROUPED = {"faust_per_event_n": "faust_per_event", "quix_n": "quix"}
QUIX_PYTHON = REPO / ".venv-quix" / "bin" / "python"


def instances(design: str, processes: int) -> int:
    """How many copies of ``design`` run: ``processes`` (the pipeline's) for a grouped peer, else one."""
    return processes if design in GROUPED else 1


def model_args(settings: Settings, model: str) -> list[str]:
    """A peer's model, as files in the model cache: the peers open them and nothing else of the project."""
    spec = load_registry(settings.models_file).get(model)
    cache = settings.model_cache
    args = ["--model", model, "--model-version", spec.version, "--model-path", str(spec.path(cache))]
    if spec.task == "text-embedding":
        args += ["--tokenizer", str(spec.tokenizer_path(cache)), "--max-length", str(spec.max_seq_length)]
        args += ["--embedding-output", spec.outputs["embedding"]]
    return args


def groups(design: str, settings: Settings, processes: int = 1) -> dict[str, int]:
    """The consumer groups a started design joins, and how many members each has once it is ready."""
    if design in ("pipeline", "pipeline_eos"):
        return {f"{settings.group}.{name}": 1 for name in ("input", "inference", "inference.priority")}
    if design == "raw_two_hop":
        return {f"{settings.group}.{design}.input": 1, f"{settings.group}.{design}.inference": 1}
    return {f"{settings.group}.{design}": instances(design, processes)}


def command(
    design: str, settings: Settings, model: str, batch: int, layout: str = "auto", processes: int = 1
) -> list[list[str]]:
    """The command lines (one per process) that run ``design`` on ``settings``' topics; ``layout`` is the
    pipeline's ``--process-per-role`` (its default: auto), ``processes`` the pipeline's process count."""
    t = settings.topics
    if design in ("pipeline", "pipeline_eos"):
        worker = [
            sys.executable, "-m", "pipeline.cli.main", "worker", "--model", model,
            "--batch-size", str(batch), "--no-status", "--process-per-role", layout,
        ]  # fmt: skip
        if design == "pipeline_eos":
            worker += ["--guarantee", "exactly_once", "--worker-id", "bench-eos"]
        return [worker]
    common = ["--bootstrap", settings.bootstrap_servers, "--input", t.input, "--output", t.output]
    common += ["--group", f"{settings.group}.{design}", "--batch", str(batch)]
    if design == "raw_loop":
        return [[sys.executable, "-m", "bench.raw_loop", *common, "--model", model]]
    peer = [*common, *model_args(settings, model)]
    if design == "raw_two_hop":
        hops = ("input", "inference") if processes > 1 else ("both",)
        run = [sys.executable, "-m", "bench.raw_two_hop", *peer, "--inference", t.inference]
        run += ["--priority", t.inference_priority]
        return [[*run, "--hop", hop, "--worker-id", f"raw-{hop}"] for hop in hops]
    base = GROUPED.get(design, design)
    python = str(QUIX_PYTHON) if base == "quix" else sys.executable
    if base not in ("quix", "faust_per_event"):
        raise ValueError(f"unknown design {design!r}")
    n = instances(design, processes)
    return [
        [python, "-m", f"bench.{base}_app" if base == "quix" else f"bench.{base}", *peer, "--worker-id", f"{base}-{k}"]
        for k in range(n)
    ]


def launch(cmds: list[list[str]]) -> list[str]:
    """One command line for several processes: a shell that starts each, exits when the first one does
    (the bench then sees the design gone) and, on SIGTERM (sent to the whole process group), waits for
    every one to drain and exit."""
    if len(cmds) == 1:
        return cmds[0]
    script = "trap wait TERM; " + " & ".join(shlex.join(c) for c in cmds) + " & wait -n"
    return ["bash", "-c", script]


class DesignProcess:
    """A running design: its process group, the peak RSS of its process tree, and a stop that never leaves
    it behind (SIGTERM to the group, SIGKILL after a grace period).

    The peak is each process's own high-water mark (the kernel's ``VmHWM``), summed over the tree: exact
    for a one-process design, an upper bound where a design runs several processes (their peaks need not
    coincide). The marks are read every ``sample_s`` (a process's mark is gone once it exits): cheap,
    where sampling RSS every 50 ms walked /proc for the tree and took 8% of a core from the design under
    test, whose model threads pay about three times what an intruder takes (see the writer's poll).

    A pid whose command line changes runs a new program (``exec``: the pipeline's command, once it has read
    its settings, becomes its supervisor, before it starts any other process): the new image's mark
    replaces the earlier one's, which ended before the rest of the tree began (``replaced`` keeps it, for
    the log). Within one image the mark is the largest read: the kernel's can dip a little between reads."""

    def __init__(
        self, cmds: list[list[str]], settings: Settings, sample_s: float = 1.0, cpus: frozenset[int] | None = None
    ) -> None:
        env = env_for(settings, PIPELINE_LOG_LEVEL="warning", PYTHONPATH=str(REPO))
        # The output goes to a file: a pipe that nobody reads while it runs would fill up and block it.
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            launch(cmds),
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # ``cpus``: the design's cores (bench.cpu.CpuSplit); its processes and their children inherit them.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        self._marks: dict[int, int] = {}  # pid -> its peak RSS in bytes
        self.replaced: dict[int, int] = {}  # pid -> the peak of the image it replaced by exec, in bytes
        self._images: dict[int, bytes] = {}  # pid -> its command line when its mark was last read
        self._sample_s = sample_s
        self._marks_lock = threading.Lock()  # the sampler and peak_now_mb both read marks
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        self._read_marks(root)
        while not self._stopping.wait(self._sample_s):
            self._read_marks(root)
        self._read_marks(root)  # the last marks, taken before the processes are stopped

    def _read_marks(self, root: psutil.Process) -> None:
        with self._marks_lock:
            self._read_marks_locked(root)

    def _read_marks_locked(self, root: psutil.Process) -> None:
        try:
            pids = [root.pid] + [child.pid for child in root.children(recursive=True)]
        except psutil.Error:
            return
        for pid in pids:
            image = command_line(pid)
            mark = high_water_mark(pid)
            if mark is None or image is None:
                continue
            if self._images.setdefault(pid, image) != image:  # this pid exec'd
                self.replaced[pid] = self._marks.pop(pid, 0)
                self._images[pid] = image
            self._marks[pid] = max(self._marks.get(pid, 0), mark)

    @property
    def peak_rss(self) -> int:
        return sum(self._marks.values())

    def peaks(self) -> dict[int, int]:
        """Each process's own peak so far (bytes), by pid, in the order they were first seen."""
        return dict(self._marks)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / 2**20

    def peak_now_mb(self) -> float:
        """The peak so far with every mark read now, not at the sampler's last tick: the end of a phase."""
        with contextlib.suppress(psutil.Error):
            self._read_marks(psutil.Process(self.proc.pid))
        return self.peak_rss_mb

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process tree so far, children included (``bench.cpu``)."""
        return tree_cpu_seconds(self.proc.pid)

    def cpu_by_process(self) -> dict[int, float]:
        """utime + stime of each live process of the tree so far, by pid (``bench.cpu``)."""
        return tree_cpu_by_process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 3000) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-tail:]

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM the whole group (the design drains and commits), SIGKILL if it does not exit in time."""
        self._stopping.set()
        self._sampler.join(timeout=5)  # its last reading is taken now, while the processes still run
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        return self.proc.wait()

    def __enter__(self) -> DesignProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


def command_line(pid: int) -> bytes | None:
    """The process's command line as the kernel keeps it, None once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read()
    except OSError:
        return None


def high_water_mark(pid: int) -> int | None:
    """The process's peak resident set in bytes (``VmHWM``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def quix_available() -> Path | None:
    return QUIX_PYTHON if QUIX_PYTHON.is_file() else None
