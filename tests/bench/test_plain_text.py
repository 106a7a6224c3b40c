"""The peers' text path (``bench/plain.py``) on a made-up tokenizer and graph: texts are tokenized without
padding, batched with a mask, truncated at the maximum length (and said so), and the embedding result is
one the pipeline's codec reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from bench.plain import Avro, Model, result, validate
from pipeline.config import Settings
from pipeline.serde import Codecs
from pipeline.serde.builders import build_request


def _files(tmp: Path) -> tuple[Path, Path]:
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 2, "c": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(tmp / "tokenizer.json"))
    # sentence_embedding [B, 2] = [number of tokens, sum of ids] (the mask and ids summed over the sequence)
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("input_ids", "attention_mask")]
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
        helper.make_node("Concat", ["attention_mask", "kept"], ["both"], axis=0),
        helper.make_node("Cast", ["both"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f", "axis"], ["sums"], keepdims=0),
        helper.make_node("Reshape", ["sums", "two_by_b"], ["r"]),
        helper.make_node("Transpose", ["r"], ["sentence_embedding"], perm=[1, 0]),
    ]
    inits = [
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        helper.make_tensor("two_by_b", TensorProto.INT64, [2], [2, -1]),
    ]
    out = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["b", 2])
    model = helper.make_model(
        helper.make_graph(nodes, "text", ints, [out], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 9
    onnx.save(model, str(tmp / "model.onnx"))
    return tmp / "model.onnx", tmp / "tokenizer.json"


def test_texts_are_embedded_in_one_batch_and_cut_at_the_maximum(tmp_path: Path) -> None:
    path, tokenizer = _files(tmp_path)
    model = Model("words", "1", path, tokenizer, max_length=3)
    avro, codec = Avro(), Codecs.from_settings(Settings(), validate=False)
    requests = []
    for text in ("a b", "c c c c c", "b"):
        request = avro.decode_request(codec.request.encode(build_request(text=text, model="words")))
        validate(request)
        requests.append(request)
    answers = model.run(requests)
    embeddings = [output[1]["embedding"] for output, _ in answers]
    assert embeddings == [[2.0, 3.0], [3.0, 9.0], [1.0, 2.0]]
    assert [cut for _, cut in answers] == [False, True, False]
    value = avro.encode_result(result(requests[1], model, *answers[1], inference_ms=1.0, batch_size=3, worker_id="w"))
    got = codec.result.decode(value)
    assert got["output"] == {"embedding": [3.0, 9.0]} and got["truncated"] is True
    assert np.isclose(got["timings"]["inference_ms"], 1.0)


class _Widths:
    """The session, with the width of every batch it was given."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.widths: list[int] = []

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> Any:
        self.widths.append(feeds["input_ids"].shape[1])
        return self.session.run(outputs, feeds)


def test_texts_of_unlike_length_run_apart_each_padded_to_its_own_longest(tmp_path: Path) -> None:
    path, tokenizer = _files(tmp_path)
    model = Model("words", "1", path, tokenizer, max_length=64)
    spy = _Widths(model.session)
    model.session = spy  # type: ignore[assignment]
    avro, codec = Avro(), Codecs.from_settings(Settings(), validate=False)
    texts = ("a b", " ".join(["c"] * 40), "b", " ".join(["a"] * 20))
    requests = [avro.decode_request(codec.request.encode(build_request(text=t, model="words"))) for t in texts]
    answers = model.run(requests)
    # the answers in the requests' order: [number of tokens, sum of ids] of each text
    assert [output[1]["embedding"] for output, _ in answers] == [[2.0, 3.0], [40.0, 120.0], [1.0, 2.0], [20.0, 20.0]]
    # up to 16 tokens, up to 32, up to 64: each group as wide as its own longest text
    assert sorted(spy.widths) == [2, 20, 40]
