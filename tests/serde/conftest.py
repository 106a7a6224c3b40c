"""Fixtures of the serde tests: the schema store, and a Confluent-compatible registry for interop tests.

The registry is the real Apicurio Registry, started for this session by ``infra/registry/registry-local``
in a state folder under pytest's tmp dir and stopped afterwards (about 5-8 s). Where that script says it
cannot run here (exit 3: no Java >= 21), the tests fall back to confluent-kafka's mock registry client and
say so: a warning, and ``test_real_registry_was_used`` is skipped with the reason (both shown by ``-ra``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.serde.registry import client_module
from pipeline.serde.store import SchemaStore

client_module()  # confluent-kafka's registry client, imported without authlib's deprecation warning

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
REGISTRY_LOCAL = REPO / "infra" / "registry" / "registry-local"


@dataclass(frozen=True)
class RegistryTarget:
    url: str
    real: bool
    why_not_real: str = ""


@pytest.fixture(scope="session")
def store() -> SchemaStore:
    return SchemaStore.load(SCHEMAS)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryTarget]:
    if not REGISTRY_LOCAL.is_file():
        reason = f"{REGISTRY_LOCAL} is missing"
        warnings.warn(f"registry tests use confluent-kafka's mock registry: {reason}", stacklevel=1)
        yield RegistryTarget(f"mock://serde-{uuid.uuid4().hex[:8]}", False, reason)
        return
    state = tmp_path_factory.mktemp("registry-state")
    env = {**os.environ, "REGISTRY_LOCAL_STATE": str(state), "REGISTRY_PERSIST": "0"}
    env.pop("REGISTRY_PORT", None)
    started = subprocess.run(
        [str(REGISTRY_LOCAL), "start"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if started.returncode == 3:
        reason = "no Java >= 21 for Apicurio Registry (registry-local exit 3): " + started.stderr.strip()[-300:]
        warnings.warn(f"registry tests use confluent-kafka's mock registry: {reason}", stacklevel=1)
        yield RegistryTarget(f"mock://serde-{uuid.uuid4().hex[:8]}", False, reason)
        return
    if started.returncode != 0:
        pytest.fail(f"registry-local start failed ({started.returncode}):\n{started.stderr[-3000:]}")
    url = started.stdout.strip().splitlines()[-1]
    try:
        yield RegistryTarget(url, True)
    finally:
        subprocess.run([str(REGISTRY_LOCAL), "stop"], capture_output=True, env=env, timeout=120, check=False)


@pytest.fixture
def unique_topic() -> str:
    return f"serde.{uuid.uuid4().hex[:10]}"
