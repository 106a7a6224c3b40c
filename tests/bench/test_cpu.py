"""The design's CPU, read from /proc: the stat line is parsed past a command name with spaces and
parentheses, and a process tree's seconds include its threads and its children, live or reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.cpu import TICKS_PER_S, pin, split_cpus, stat_ticks, tree_cpu_seconds


def test_the_four_time_fields_are_summed_past_an_awkward_command_name() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 110 220 330 440 20 0 3 0 99 1000 50"
    assert stat_ticks(line) == 110 + 220 + 330 + 440


def test_this_process_is_counted_with_its_threads() -> None:
    before = tree_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert tree_cpu_seconds(os.getpid()) - before >= 0.15


def test_live_and_reaped_children_count() -> None:
    burn = "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass\n"
    # a shell whose child burns and is waited for (reaped: it counts in the shell's cutime), then a live one
    script = f'{sys.executable} -c "{burn}"; {sys.executable} -c "{burn}" & sleep 30'
    shell = subprocess.Popen(["bash", "-c", script])
    try:
        time.sleep(1.2)
        spent = tree_cpu_seconds(shell.pid)
        assert spent >= 0.5, spent  # both children, the first one gone, the second alive or finished
    finally:
        shell.kill()
        shell.wait()


def test_ticks_are_seconds_at_the_kernels_rate() -> None:
    assert TICKS_PER_S >= 100


def test_a_split_gives_the_load_the_last_cores_and_none_leaves_every_core_shared() -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert split_cpus(0) is None
    if len(cores) < 2:
        pytest.skip("one core: nothing to split")
    split = split_cpus(1)
    assert split is not None
    assert split.load == {cores[-1]} and split.design == set(cores[:-1])
    with pytest.raises(ValueError, match="leave none"):
        split_cpus(len(cores))


def test_pin_moves_every_thread_of_a_process_already_running() -> None:
    everywhere = frozenset(os.sched_getaffinity(0))
    started, stop = threading.Event(), threading.Event()
    seen: list[set[int]] = []

    def worker() -> None:
        started.set()
        stop.wait(5)
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait(5)
    one = frozenset({min(everywhere)})
    try:
        pin(os.getpid(), one)
        assert os.sched_getaffinity(0) == one
    finally:
        stop.set()
        thread.join()
        pin(os.getpid(), everywhere)
    assert seen == [set(one)]
    assert os.sched_getaffinity(0) == everywhere
