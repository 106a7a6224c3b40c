"""The setup scripts' guard against a full disk: a venv install that cannot fit stops before it starts,
saying how much is free, instead of pip failing minutes in with a half-made venv."""

from __future__ import annotations

import subprocess
from pathlib import Path

ENV_SH = Path(__file__).resolve().parents[2] / "scripts" / "_env.sh"

_ABSURD_MB = 10**12  # more than any disk


def _bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source {ENV_SH}; {script}"], capture_output=True, text=True, timeout=60, check=False
    )


def test_need_disk_passes_when_there_is_room(tmp_path: Path) -> None:
    done = _bash(f"need_disk {tmp_path}/not/made/yet 1 'a small thing' && echo fits")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fits"


def test_need_disk_stops_and_says_how_much_is_free(tmp_path: Path) -> None:
    done = _bash(f"need_disk {tmp_path} {_ABSURD_MB} 'a huge thing'; echo went on")
    assert done.returncode == 1
    assert "went on" not in done.stdout
    assert f"a huge thing needs about {_ABSURD_MB} MB free on " in done.stderr
    assert "MB are free there" in done.stderr


def test_a_new_venv_that_cannot_fit_is_never_started(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = _bash(f"make_venv {venv} '' {_ABSURD_MB}")
    assert done.returncode == 1
    assert f"{venv} (a new venv) needs about {_ABSURD_MB} MB" in done.stderr
    assert not venv.exists()
