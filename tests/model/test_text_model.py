"""minilm-l6 through the runner: same numbers as a plain ONNX Runtime run, truncation, isolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from pipeline.model import Failure, ModelInput, ModelRunner, Success
from pipeline.model.tokenize import TextTokenizer, bucket_bound
from pipeline.serde import ErrorCode

LONG = "kafka stream " * 300  # 600 words: far past 256 tokens


def emb(outcome: object) -> np.ndarray:
    assert isinstance(outcome, Success) and outcome.embedding is not None, outcome
    return outcome.embedding


def test_embedding_equals_a_direct_onnxruntime_run(minilm_runner: ModelRunner) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    (outcome,) = minilm_runner.run_batch([ModelInput(text=text)])
    tok = Tokenizer.from_file(str(minilm_runner.spec.tokenizer_path(minilm_runner.path.parent.parent)))
    tok.no_padding()
    enc = tok.encode(text)
    feeds = {
        "input_ids": np.array([enc.ids], dtype=np.int64),
        "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
    }
    session = ort.InferenceSession(str(minilm_runner.path), providers=["CPUExecutionProvider"])
    (direct,) = session.run(["sentence_embedding"], feeds)
    got = emb(outcome)
    assert got.shape == (384,) and got.dtype == np.float32
    np.testing.assert_allclose(got, direct[0], atol=1e-5)
    assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5  # L2-normalised inside the graph


def test_truncation_is_flagged_per_event(minilm_runner: ModelRunner) -> None:
    outcomes = minilm_runner.run_batch([ModelInput(text="short text"), ModelInput(text=LONG)])
    assert isinstance(outcomes[0], Success) and not outcomes[0].truncated
    assert isinstance(outcomes[1], Success) and outcomes[1].truncated


def test_bucketing_does_not_change_results(minilm_runner: ModelRunner) -> None:
    texts = ["hi", "a medium sentence about consumer groups and offsets", LONG, "café 東京 😀"]
    together = [emb(o) for o in minilm_runner.run_batch([ModelInput(text=t) for t in texts])]
    for text, vec in zip(texts, together, strict=True):
        (alone,) = minilm_runner.run_batch([ModelInput(text=text)])
        np.testing.assert_allclose(emb(alone), vec, atol=1e-5)


@pytest.mark.parametrize("bad", [ModelInput(text=""), ModelInput(text="   \n"), ModelInput(), {"text": None}])
def test_empty_text_fails_alone(minilm_runner: ModelRunner, bad: object) -> None:
    outcomes = minilm_runner.run_batch([ModelInput(text="left"), bad, ModelInput(text="right")])  # type: ignore[list-item]
    assert isinstance(outcomes[1], Failure) and outcomes[1].code == ErrorCode.EMPTY_TEXT
    assert isinstance(outcomes[0], Success) and isinstance(outcomes[2], Success)


def test_tokenizer_pads_per_bucket_not_to_128(minilm_runner: ModelRunner, model_cache: Path) -> None:
    tok = TextTokenizer(minilm_runner.spec.tokenizer_path(model_cache), 256)
    texts = ["one", "two words", "x " * 40, LONG]
    encoded = tok.encode(texts)
    assert [e.truncated for e in encoded] == [False, False, False, True]
    assert len(encoded[3].ids) == 256
    batches = tok.batches(encoded, [10, 11, 12, 13], max_batch=64)
    widths = {tuple(b.positions): b.input_ids.shape[1] for b in batches}
    assert widths == {(10, 11): 4, (12,): 42, (13,): 256}
    short = next(b for b in batches if b.positions == [10, 11])
    assert short.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert [bucket_bound(n) for n in (1, 16, 17, 200, 256)] == [16, 16, 32, 256, 256]
