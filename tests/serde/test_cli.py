"""`pipeline schemas check`: passes on the repository's schemas, fails naming the field on broken ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app

from .conftest import SCHEMAS

runner = CliRunner()


def _check(schemas_dir: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["schemas", "check", "--schemas-dir", str(schemas_dir)])
    return result.exit_code, result.output


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    return target


def test_repository_schemas_pass() -> None:
    code, output = _check(SCHEMAS)
    assert code == 0, output
    assert "ok" in output
    assert "examples checked" in output


def _add_request_v3(copy: Path, edit: dict[str, object]) -> None:
    v2 = json.loads((copy / "inference_request" / "v2.avsc").read_text())
    for fld in v2["fields"]:
        if fld["name"] in edit:
            change = edit[fld["name"]]
            if change is None:
                v2["fields"].remove(fld)
                break
            fld.update(change)  # type: ignore[call-overload]
    (copy / "inference_request" / "v3.avsc").write_text(json.dumps(v2))


def test_new_field_without_default_breaks_backward_compatibility(copy: Path) -> None:
    v2 = json.loads((copy / "inference_request" / "v2.avsc").read_text())
    v2["fields"].append({"name": "region", "type": "string", "doc": "new and required"})
    (copy / "inference_request" / "v3.avsc").write_text(json.dumps(v2))
    code, output = _check(copy)
    assert code == 1
    assert "backward-compatibility" in output
    assert "region" in output


def test_removed_field_without_default_breaks_forward_compatibility(copy: Path) -> None:
    _add_request_v3(copy, {"source": None})
    code, output = _check(copy)
    assert code == 1
    assert "forward-compatibility" in output
    assert "source" in output


def test_missing_doc_is_named(copy: Path) -> None:
    _add_request_v3(copy, {"tenant": {"doc": ""}})
    code, output = _check(copy)
    assert code == 1
    assert "tenant" in output and "no doc" in output


def test_invalid_example_is_named(copy: Path) -> None:
    path = copy / "inference_request" / "examples" / "v1-text.json"
    example = json.loads(path.read_text())
    example["event_id"] = "not-a-uuid"
    path.write_text(json.dumps(example))
    bad_type = copy / "inference_error" / "examples" / "v1-bad.json"
    error = json.loads((copy / "inference_error" / "examples" / "v1-decode.json").read_text())
    error["source_offset"] = "seven"
    bad_type.write_text(json.dumps(error))
    code, output = _check(copy)
    assert code == 1
    assert "v1-text.json" in output and "INVALID_UUID" in output
    assert "v1-bad.json" in output and "source_offset" in output
