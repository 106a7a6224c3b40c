"""Choosing the execution provider, and saying which one is in use and why.

onnxruntime-gpu lists CUDA (and TensorRT) as *available* on any machine, then prints a red error about a
missing ``libcublasLt.so.13`` when a session asks for it, and quietly runs on CPU. So for ``auto`` we
find out ourselves, quietly, before ONNX Runtime gets a chance to complain: the CUDA libraries are
preloaded from the nvidia-* wheels when present, the CUDA provider's shared library is loaded (its
``OSError`` names the missing library), and the session is created with ONNX Runtime's stderr silenced
and its providers checked. The fallback is then one log line with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from pipeline.cpus import available_cpus
from pipeline.model.errors import ProviderUnavailable

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

Device = Literal["auto", "cpu", "cuda"]
ProviderList = list[str | tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """The providers a session is created with, in order; ``fallback_reason`` says why CUDA is not in it."""

    providers: ProviderList
    wants_cuda: bool
    fallback_reason: str | None = None


def default_intra_op_threads() -> int:
    """One intra-op thread per CPU this process may run on."""
    return available_cpus()


@contextlib.contextmanager
def quiet_native_output() -> Iterator[io.StringIO]:
    """Silence Python prints and native writes to fd 1/2 (ONNX Runtime's own log) inside the block.

    What was written is kept in the yielded buffer so a caller can log it at debug level. Other threads'
    output during the block is captured too; it is used only around the short start-up probe.
    """
    captured = io.StringIO()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                yield captured
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.write(sink.read().decode("utf-8", "replace"))


def cuda_unusable_reason() -> str | None:
    """``None`` when the CUDA provider can load here, else a short human reason (the missing library)."""
    if CUDA not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no CUDA provider; install onnxruntime-gpu"
    capi = Path(ort.__file__).parent / "capi"
    shared = capi / "libonnxruntime_providers_shared.so"
    cuda_lib = capi / "libonnxruntime_providers_cuda.so"
    with quiet_native_output() as out:
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            with contextlib.suppress(Exception):
                preload(cuda=True, cudnn=True, msvc=False)
        try:
            if shared.exists():
                ctypes.CDLL(str(shared), mode=ctypes.RTLD_GLOBAL)
            if cuda_lib.exists():
                ctypes.CDLL(str(cuda_lib))
        except OSError as exc:
            return f"the CUDA provider cannot load: {_short(str(exc))}"
    if out.getvalue().strip():
        log.debug("CUDA library preload said: %s", out.getvalue().strip())
    return None


def plan_providers(device: Device, *, tensorrt: bool = False, device_id: int = 0) -> ProviderPlan:
    """Providers for ``device``; ``cuda`` that cannot be had raises :class:`ProviderUnavailable`."""
    if device == "cpu":
        return ProviderPlan([CPU], wants_cuda=False)
    reason = cuda_unusable_reason()
    if reason is not None:
        if device == "cuda":
            raise ProviderUnavailable(f"device=cuda but CUDA cannot be used: {reason}")
        return ProviderPlan([CPU], wants_cuda=False, fallback_reason=reason)
    providers: ProviderList = []
    if tensorrt and TENSORRT in ort.get_available_providers():
        providers.append((TENSORRT, {"device_id": device_id, "trt_fp16_enable": False}))
    providers += [(CUDA, {"device_id": device_id}), CPU]
    return ProviderPlan(providers, wants_cuda=True)


def create_session(
    model: Path | bytes,
    options: ort.SessionOptions,
    device: Device,
    *,
    tensorrt: bool = False,
    device_id: int = 0,
) -> tuple[ort.InferenceSession, str]:
    """An InferenceSession on the best provider ``device`` allows; returns it and the provider in use.

    ``auto`` logs exactly one warning when it falls back to CPU; ``cuda`` raises when CUDA is not the
    provider ONNX Runtime actually enabled (no GPU, no driver) instead of running on CPU unnoticed.
    """
    plan = plan_providers(device, tensorrt=tensorrt, device_id=device_id)
    source = str(model) if isinstance(model, Path) else model
    if not plan.wants_cuda:
        cpu_session = ort.InferenceSession(source, options, providers=plan.providers)
        if plan.fallback_reason is not None:
            log.warning("device=auto: CUDA unusable (%s); running on %s", plan.fallback_reason, CPU)
        return cpu_session, cpu_session.get_providers()[0]
    session: ort.InferenceSession | None = None
    error = ""
    with quiet_native_output() as out:
        try:
            session = ort.InferenceSession(source, options, providers=plan.providers)
        except Exception as exc:  # a GPU provider that loads but cannot start
            error = _short(str(exc))
    said = _last_error_line(out.getvalue())
    if session is not None and session.get_providers()[0] in (CUDA, TENSORRT):
        return session, session.get_providers()[0]
    reason = f"onnxruntime did not enable CUDA: {error or said or 'no GPU visible'}"
    if device == "cuda":
        raise ProviderUnavailable(f"device=cuda but CUDA cannot be used: {reason}")
    log.warning("device=auto: CUDA unusable (%s); running on %s", reason, CPU)
    return ort.InferenceSession(source, options, providers=[CPU]), CPU


def _short(message: str, limit: int = 200) -> str:
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _last_error_line(text: str) -> str:
    """ONNX Runtime's most telling line from captured output, without its colour codes."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in clean.splitlines() if ln.strip()]
    for ln in lines:
        if "with error:" in ln:
            return _short(ln.split("with error:", 1)[1])
    return _short(lines[-1]) if lines else ""
