from __future__ import annotations

import pytest

from pipeline.config import Settings
from tests.harness import create_pipeline_topics


@pytest.fixture
def e2e_settings(pipeline_settings: Settings) -> Settings:
    settings = pipeline_settings.model_copy(update={"partitions": 4})
    create_pipeline_topics(settings)
    return settings
