from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner, Result

from pipeline.cli.main import app
from pipeline.config import Settings
from tests.harness import create_pipeline_topics, env_for


@pytest.fixture
def ops_settings(pipeline_settings: Settings) -> Settings:
    create_pipeline_topics(pipeline_settings)
    return pipeline_settings


class Cli:
    """The `pipeline` command in-process, pointed at one test's broker and topics."""

    def __init__(self, settings: Settings) -> None:
        self.env = {**env_for(settings), "PIPELINE_LOG_LEVEL": "error"}
        self.runner = CliRunner()

    def __call__(self, *args: str, **kw: Any) -> Result:
        return self.runner.invoke(app, list(args), env=self.env, catch_exceptions=False, **kw)


@pytest.fixture
def cli(ops_settings: Settings) -> Cli:
    return Cli(ops_settings)
