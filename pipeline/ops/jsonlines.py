"""The JSON line format of ``pipeline produce``: one InferenceRequest per line, written by people.

Pure policy (no I/O): a line becomes a :class:`ParsedLine` or a :class:`LineError` saying what is wrong,
so that the command can report it with its line number and carry on. A line is one JSON object, either

* the request itself, with shortcuts and defaults::

    {"model": "tiny", "tensors": [{"name": "x", "dtype": "float32", "shape": [8], "data": "<base64>"}]}
    {"model": {"name": "minilm-l6", "version": null}, "text": "hello", "key": "user-1", "priority": "HIGH"}

  ``model`` is a name or ``{"name", "version"}``; the payload is ``text``, ``tensors`` (each tensor's
  ``data`` is base64 of its little-endian C-order bytes) or the schema's own ``payload``; ``event_id`` (a
  new UUID), ``created_at`` (now, epoch ms), ``source`` ("pipeline-produce"), ``priority`` (NORMAL),
  ``attributes`` ({}), ``correlation_id`` and ``tenant`` (null) are filled in when missing; ``key`` (UTF-8
  text) or ``key_b64`` sets the record key (none by default); or

* the row ``pipeline tail`` prints for a request (``{"key": ..., "headers": {...}, "request": {...}}``),
  so that ``pipeline tail T --from-beginning | pipeline produce --topic T2`` copies requests.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

DEFAULT_SOURCE = "pipeline-produce"
_TAIL_ROW = {"key", "key_b64", "headers", "request", "partition", "offset", "timestamp", "topic"}
_REQUEST_FIELDS = {"event_id", "created_at", "source", "model", "priority", "payload", "attributes"}
_REQUEST_FIELDS |= {"correlation_id", "tenant"}
_SHORTCUTS = {"text", "tensors", "key", "key_b64"}


class LineError(ValueError):
    """What is wrong with one line; the caller adds the line number."""


@dataclass(frozen=True)
class ParsedLine:
    key: bytes | None
    datum: dict[str, Any]
    headers: list[tuple[str, bytes]]


def parse_line(text: str, now_ms: int) -> ParsedLine:
    """One line -> key, request datum (defaults filled, base64 decoded) and headers; the codec checks the
    datum against the schema afterwards."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise LineError(f"expected a JSON object, got {type(obj).__name__}")
    headers: list[tuple[str, bytes]] = []
    if isinstance(obj.get("request"), dict):  # a row from `pipeline tail`
        unknown = set(obj) - _TAIL_ROW
        if unknown:
            raise LineError(f"unknown field(s) beside 'request': {', '.join(sorted(unknown))}")
        headers = _headers(obj.get("headers"))
        body: dict[str, Any] = dict(obj["request"])
        key = _key(obj)
    else:
        unknown = set(obj) - _REQUEST_FIELDS - _SHORTCUTS
        if unknown:
            raise LineError(f"unknown field(s): {', '.join(sorted(unknown))}")
        body = dict(obj)
        key = _key(body)
    return ParsedLine(key, request_datum(body, now_ms), headers)


def request_datum(body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Fill defaults and turn the JSON spellings (model name, text/tensors shortcuts, base64) into the
    datum the codec writes."""
    model = body.get("model")
    if isinstance(model, str):
        model = {"name": model, "version": None}
    elif isinstance(model, dict):
        model = {"name": model.get("name"), "version": model.get("version")}
    else:
        raise LineError('\'model\' is missing (a name, or {"name": ..., "version": ...})')
    given = [k for k in ("text", "tensors", "payload") if k in body]
    if len(given) != 1:
        raise LineError("give exactly one of 'text', 'tensors' and 'payload'")
    payload = _payload(body)
    return {
        "event_id": body.get("event_id") or str(uuid.uuid4()),
        "created_at": body["created_at"] if body.get("created_at") is not None else now_ms,
        "source": body.get("source") or DEFAULT_SOURCE,
        "model": model,
        "priority": body.get("priority") or "NORMAL",
        "payload": payload,
        "attributes": body.get("attributes") or {},
        "correlation_id": body.get("correlation_id"),
        "tenant": body.get("tenant"),
    }


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    if "text" in body:
        return {"text": body["text"]}
    if "tensors" in body:
        raw = body["tensors"]
    else:
        payload = body["payload"]
        if not isinstance(payload, dict) or not ({"text", "tensors"} & set(payload)):
            raise LineError('\'payload\' must be {"text": ...} or {"tensors": [...]}')
        if "text" in payload:
            return {"text": payload["text"]}
        raw = payload["tensors"]
    if not isinstance(raw, list):
        raise LineError("'tensors' must be a list")
    return {"tensors": [_tensor(t, i) for i, t in enumerate(raw)]}


def _tensor(t: Any, i: int) -> dict[str, Any]:
    if not isinstance(t, dict):
        raise LineError(f"tensor {i} must be an object with name, dtype, shape, data")
    missing = [k for k in ("name", "dtype", "shape", "data") if k not in t]
    if missing:
        raise LineError(f"tensor {i} lacks {', '.join(missing)}")
    return {"name": t["name"], "dtype": t["dtype"], "shape": t["shape"], "data": _b64(t["data"], f"tensor {i} data")}


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise LineError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LineError(f"{what} is not valid base64") from None


def _key(obj: dict[str, Any]) -> bytes | None:
    if obj.get("key_b64") is not None:
        return _b64(obj["key_b64"], "key_b64")
    key = obj.get("key")
    if key is None:
        return None
    if not isinstance(key, str):
        raise LineError("'key' must be a string (or use key_b64)")
    return key.encode()


def _headers(value: Any) -> list[tuple[str, bytes]]:
    """Headers as ``{"name": "text"}``, the way ``pipeline tail`` prints them."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise LineError("'headers' must be an object of name -> text")
    return [(str(k), b"" if v is None else str(v).encode()) for k, v in value.items()]
