"""The job as a user of a streaming framework writes it, with no project code: the schema files, fastavro,
ONNX Runtime and numpy (and ``tokenizers`` for a text model). The peers (``quix_app``, ``faust_per_event``,
``raw_two_hop``) run on this module alone, so that what the bench compares the pipeline with is what a
user would build, not the pipeline's own parts moved by another framework.

What a user does here, step by step:

- Avro: the ``.avsc`` files parsed by fastavro, read with ``schemaless_reader`` and written with
  ``schemaless_writer``, framed as the Avro spec's single-object encoding (``C3 01``, the writer schema's
  CRC-64-AVRO fingerprint, the body). A request written with any version the user knows (v1, v2) is read
  into the newest. ``logicalType`` annotations are dropped at load, so an event id stays its text (the
  input stage checks that text) and times stay epoch milliseconds: cheaper than fastavro's ``UUID`` and
  ``datetime`` objects, so no peer pays for a conversion the pipeline skips.
- Validation: the input stage's rules, written out (``validate``): the size cap before decoding, a
  canonical UUID, every string and count within the default caps, non-blank text, tensors with a known
  dtype, non-negative dims within the element cap, exactly ``prod(shape) * itemsize`` bytes, finite floats.
- The model: an ``onnxruntime.InferenceSession`` on the cached file, called directly, with the session
  options the pipeline's runner sets (sequential, full graph optimisation, one intra-op thread per CPU,
  idle threads not spinning), so every design runs the same runtime configuration.
- The result: a full ``InferenceResult`` (ids, model name, version and provider, the output tensors or the
  embedding, timings, batch size, worker id, completion time).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import onnxruntime as ort
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
MAGIC = b"\xc3\x01"
HEADER = 10
# The input stage's defaults (README: Configuration).
MAX_MESSAGE_BYTES = 1_000_000
MAX_TENSOR_ELEMENTS = 16_777_216
MAX_TEXT_CHARS = 100_000
MAX_ITEMS = 10_000
DTYPES = {
    n: np.dtype(n).newbyteorder("<")
    for n in [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    ]
}
MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Invalid(ValueError):
    """A request that the input stage would refuse."""


def _plain(schema: Any) -> Any:
    """The schema without ``logicalType`` annotations."""
    if isinstance(schema, dict):
        return {k: _plain(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_plain(v) for v in schema]
    return schema


def _load(path: Path) -> tuple[bytes, Any]:
    """The schema's single-object fingerprint (from the file as written) and its parsed plain form."""
    raw = json.loads(path.read_text())
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(fastavro.parse_schema(raw)), "CRC-64-AVRO"))
    return fp, fastavro.parse_schema(_plain(raw))


class Avro:
    """Requests in (any known version, read as the newest), results out (the newest)."""

    def __init__(self, schemas: Path = SCHEMAS) -> None:
        requests = [_load(p) for p in sorted((schemas / "inference_request").glob("v*.avsc"), key=_version)]
        self.request = requests[-1][1]
        self.writers = {fp: parsed for fp, parsed in requests}
        result_fp, self.result = _load(max((schemas / "inference_result").glob("v*.avsc"), key=_version))
        self.result_header = MAGIC + result_fp
        self.request_header = MAGIC + requests[-1][0]

    def decode_request(self, value: bytes | None) -> dict[str, Any]:
        if not value or len(value) > MAX_MESSAGE_BYTES:
            raise Invalid("empty or too large")
        if value[:2] != MAGIC or len(value) < HEADER:
            raise Invalid("not a single-object record")
        writer = self.writers.get(value[2:HEADER])
        if writer is None:
            raise Invalid("unknown writer schema")
        buf = io.BytesIO(value)
        buf.seek(HEADER)
        try:
            datum = fastavro.schemaless_reader(buf, writer, None if writer is self.request else self.request)
        except Exception as exc:
            raise Invalid(f"undecodable: {exc}") from None
        if buf.tell() != len(value):
            raise Invalid("bytes after the body")
        return datum  # type: ignore[return-value]

    def encode(self, header: bytes, schema: Any, datum: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, schema, datum)
        return out.getvalue()

    def encode_request(self, datum: dict[str, Any]) -> bytes:
        return self.encode(self.request_header, self.request, datum)

    def encode_result(self, datum: dict[str, Any]) -> bytes:
        return self.encode(self.result_header, self.result, datum)


def _version(path: Path) -> int:
    return int(path.stem[1:])


def _text(where: str, value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        raise Invalid(f"{where}: longer than {MAX_TEXT_CHARS} chars")


def validate(request: dict[str, Any]) -> None:
    """The input stage's checks of a decoded request; raises :class:`Invalid`."""
    event_id = request.get("event_id")
    if not isinstance(event_id, str) or len(event_id) != 36 or UUID.fullmatch(event_id) is None:
        raise Invalid("event_id is not a UUID")
    for name in ("source", "correlation_id", "tenant"):
        _text(name, request.get(name))
    model = request.get("model") or {}
    _text("model.name", model.get("name"))
    _text("model.version", model.get("version"))
    attributes = request.get("attributes") or {}
    items = len(attributes)
    if items > MAX_ITEMS:
        raise Invalid("too many attributes")
    for key, value in attributes.items():
        _text("attribute", key)
        _text("attribute", value)
    payload = request.get("payload")
    if isinstance(payload, dict) and "text" in payload:
        text = payload["text"]
        if not isinstance(text, str) or not text.strip():
            raise Invalid("empty text")
        _text("payload.text", text)
        return
    tensors = payload.get("tensors") if isinstance(payload, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise Invalid("no tensors")
    items += len(tensors)
    names: set[str] = set()
    for tensor in tensors:
        _check_tensor(tensor, names, items)
        items += len(tensor["shape"])


def _check_tensor(tensor: dict[str, Any], names: set[str], items: int) -> None:
    name = tensor["name"]
    _text("tensor name", name)
    if name in names:
        raise Invalid(f"tensor {name!r} given twice")
    names.add(name)
    dtype = DTYPES.get(tensor["dtype"])
    if dtype is None:
        raise Invalid(f"unknown dtype {tensor['dtype']!r}")
    shape = tensor["shape"]
    if items + len(shape) > MAX_ITEMS or len(shape) > MAX_DIMS:
        raise Invalid("too many dims")
    extent, elements = 1, 1
    for d in shape:
        if d < 0:
            raise Invalid("negative dim")
        if d > 1:
            extent *= d
            if extent > MAX_TENSOR_ELEMENTS:
                raise Invalid("tensor too large")
        elements *= d
    data = tensor["data"]
    if len(data) != elements * dtype.itemsize:
        raise Invalid("data does not match the shape")
    if dtype.kind == "f" and not _finite(data, dtype):
        raise Invalid("NaN or infinity")


def _finite(data: bytes, dtype: np.dtype[Any]) -> bool:
    """No NaN or infinity: a few numbers are checked one by one (numpy's per-call cost is larger)."""
    if dtype.itemsize in (4, 8) and len(data) <= 256:
        return all(map(math.isfinite, memoryview(data).cast("f" if dtype.itemsize == 4 else "d")))
    return bool(np.isfinite(np.frombuffer(data, dtype=dtype)).all())


def session_options() -> ort.SessionOptions:
    """The pipeline runner's settings, written out as ONNX Runtime's threading docs describe them."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Model:
    """One ONNX model file, run on requests: tensors stacked on a batch axis, or texts tokenized."""

    def __init__(
        self,
        name: str,
        version: str,
        path: Path,
        tokenizer: Path | None = None,
        max_length: int = 256,
        embedding: str = "sentence_embedding",
    ) -> None:
        self.name, self.version, self.embedding = name, version, embedding
        self.session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
        self.provider = self.session.get_providers()[0]
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.tokenizer = None
        if tokenizer is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(tokenizer))
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(max_length=max_length)

    def run(self, requests: Sequence[dict[str, Any]]) -> list[tuple[Any, bool]]:
        """One result ``output`` per request, from one model call, and whether its text was cut. The
        output is in fastavro's tuple notation (branch name, value): the writer then need not try each
        branch of the union in turn."""
        if self.tokenizer is not None:
            return self._texts([r["payload"]["text"] for r in requests])
        feeds = {}
        for name in self.inputs:
            arrays = [_array(r, name) for r in requests]
            feeds[name] = arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
        outs = self.session.run(self.outputs, feeds)
        names = [_dtype_name(o.dtype) for o in outs]
        return [
            (
                (
                    "pipeline.events.TensorOutput",
                    {
                        "tensors": [
                            {"name": n, "dtype": d, "shape": list(o.shape[1:]), "data": o[k].tobytes()}
                            for n, d, o in zip(self.outputs, names, outs, strict=True)
                        ]
                    },
                ),
                False,
            )
            for k in range(len(requests))
        ]

    def _texts(self, texts: list[str]) -> list[tuple[Any, bool]]:
        """Texts of like length run together, each group padded to its own longest: one long text in a
        batch of short ones would otherwise make every row of the batch as costly as the long one."""
        assert self.tokenizer is not None
        encodings = self.tokenizer.encode_batch(texts)
        groups: dict[int, list[int]] = {}
        for k, e in enumerate(encodings):
            groups.setdefault(length_bound(len(e.ids)), []).append(k)
        answers: list[tuple[Any, bool]] = [(None, False)] * len(texts)
        for members in groups.values():
            width = max(len(encodings[k].ids) for k in members)
            ids = np.zeros((len(members), width), np.int64)
            mask = np.zeros((len(members), width), np.int64)
            for row, k in enumerate(members):
                n = len(encodings[k].ids)
                ids[row, :n] = encodings[k].ids
                mask[row, :n] = 1
            given = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (embeddings,) = self.session.run([self.embedding], {n: given[n] for n in self.inputs})
            for row, k in zip(embeddings, members, strict=True):
                answers[k] = (
                    ("pipeline.events.EmbeddingOutput", {"embedding": row.tolist()}),
                    bool(encodings[k].overflowing),
                )
        return answers


def length_bound(tokens: int) -> int:
    """The group a text of ``tokens`` tokens runs in: the next power of two, at least 16."""
    bound = 16
    while bound < tokens:
        bound *= 2
    return bound


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: np.dtype[Any]) -> str:
    """numpy computes ``dtype.name`` in Python on each access: once per dtype is enough."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


def _array(request: dict[str, Any], name: str) -> np.ndarray:
    for t in request["payload"]["tensors"]:
        if t["name"] == name:
            return np.frombuffer(t["data"], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    raise Invalid(f"no tensor {name!r}")


def result(
    request: dict[str, Any],
    model: Model,
    output: Any,
    truncated: bool,
    *,
    inference_ms: float,
    batch_size: int,
    worker_id: str,
    timestamp_ms: int | None = None,
    started_ms: float | None = None,
) -> dict[str, Any]:
    """The ``InferenceResult`` answering ``request``: ``timestamp_ms`` is the record's Kafka timestamp,
    ``started_ms`` when its model run began (epoch ms; queued time is the difference)."""
    now = int(time.time() * 1000)
    queued = max(0.0, started_ms - timestamp_ms) if timestamp_ms and started_ms else 0.0
    return {
        "event_id": request["event_id"],
        "correlation_id": request.get("correlation_id"),
        "model": {"name": model.name, "version": model.version, "provider": model.provider},
        "output": output,
        "timings": {
            "queued_ms": queued,
            "inference_ms": inference_ms,
            "end_to_end_ms": float(max(0, now - request["created_at"])),
        },
        "batch_size": batch_size,
        "worker_id": worker_id,
        "completed_at": now,
        "truncated": truncated,
    }
