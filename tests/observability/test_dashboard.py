"""The example Grafana dashboard only queries metrics the worker really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.observability.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "pipeline-dashboard.json"


def test_every_dashboard_query_names_an_exported_metric() -> None:
    exported = set()
    for family in Metrics().registry.collect():
        exported.add(family.name)
        exported.update({f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"})
        exported.add(f"{family.name}_info")
    dashboard = json.loads(DASHBOARD.read_text())
    names = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bpipeline_[a-z_]+", target["expr"])
    }
    assert names and names <= exported, names - exported
