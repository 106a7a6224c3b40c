"""Deterministic, varied texts for the export check, warm-up and benchmarks.

Every kind of text that tends to break an export or a tokenizer setting is here: very short, long enough
to be truncated (> 256 tokens), punctuation, several scripts and emoji, numbers. The same seed gives the
same texts on every machine (``random.Random`` with an int seed is stable), so benchmark figures compare.
"""

from __future__ import annotations

import random

_WORDS = [
    "kafka",
    "stream",
    "event",
    "model",
    "batch",
    "latency",
    "throughput",
    "partition",
    "offset",
    "consumer",
    "producer",
    "broker",
    "inference",
    "embedding",
    "vector",
    "token",
    "sentence",
    "network",
    "request",
    "result",
    "error",
    "retry",
    "commit",
    "schema",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "it",
    "be",
    "are",
    "was",
    "were",
    "has",
    "have",
    "will",
    "can",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "river",
    "mountain",
    "city",
    "winter",
    "summer",
    "coffee",
    "music",
    "library",
]
_UNICODE = (
    "café",
    "naïve",
    "Zürich",
    "façade",
    "smörgåsbord",
    "東京",
    "北京大学",
    "안녕하세요",
    "Привет",
    "мир",
    "مرحبا",
    "שלום",
    "γειά",
    "😀",
    "🚀",
    "👍🏽",
    "日本語のテキスト",
    "ñandú",
    "Ærøskøbing",
    "İstanbul",
)
_PUNCT = ("!", "?", "...", ";", ":", "--", "(", ")", '"', "'", ",", "&", "@", "#", "%", "*", "/", "<>")
KINDS = ("short", "medium", "long", "punctuation", "unicode", "numbers")


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(_WORDS) for _ in range(n)]


def make_text(kind: str, rng: random.Random) -> str:
    """One text of ``kind`` (see :data:`KINDS`)."""
    if kind == "short":
        return " ".join(_words(rng, rng.randint(1, 6)))
    if kind == "medium":
        return " ".join(_words(rng, rng.randint(12, 40))).capitalize() + "."
    if kind == "long":  # 300-420 words: well past 256 tokens, so it is truncated
        return " ".join(_words(rng, rng.randint(300, 420)))
    if kind == "punctuation":
        parts = [w + (rng.choice(_PUNCT) if rng.random() < 0.6 else "") for w in _words(rng, rng.randint(4, 20))]
        return " ".join(parts)
    if kind == "unicode":
        parts = [rng.choice(_UNICODE) if rng.random() < 0.5 else rng.choice(_WORDS) for _ in range(rng.randint(3, 18))]
        return " ".join(parts)
    if kind == "numbers":
        parts = [
            str(rng.randint(0, 10 ** rng.randint(1, 9))),
            f"{rng.uniform(-1e4, 1e4):.3f}",
            f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"+44 {rng.randint(1000, 9999)} {rng.randint(100000, 999999)}",
            f"{rng.randint(1, 99)}%",
            *_words(rng, rng.randint(1, 8)),
        ]
        rng.shuffle(parts)
        return " ".join(parts)
    raise ValueError(f"unknown text kind {kind!r}")


def varied_texts(n: int = 120, seed: int = 20261124) -> list[str]:
    """``n`` texts cycling through every kind, for the export check (each kind equally often)."""
    rng = random.Random(seed)
    return [make_text(KINDS[i % len(KINDS)], rng) for i in range(n)]


def mixed_texts(n: int = 512, seed: int = 7) -> list[str]:
    """``n`` texts in a traffic-like mix (mostly short and medium, 5% long), for benchmarks and warm-up."""
    rng = random.Random(seed)
    weights = {"short": 30, "medium": 35, "long": 5, "punctuation": 10, "unicode": 10, "numbers": 10}
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=n)
    return [make_text(kind, rng) for kind in kinds]
