"""The command line every peer takes (see ``designs.command``): where to read and write, its group, and
the model as files (the bench finds them in the model cache; a peer only opens them)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.plain import Model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    for name in ("bootstrap", "input", "output", "group", "model", "model-version", "model-path"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--tokenizer", help="tokenizer.json, for a text model")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--embedding-output", default="sentence_embedding", help="a text model's graph output")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--worker-id", default="peer")
    return p


def parse(argv: Sequence[str] | None = None, extra: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    return (extra or parser()).parse_args(argv)


def load_model(args: argparse.Namespace) -> Model:
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    return Model(
        args.model, args.model_version, Path(args.model_path), tokenizer, args.max_length, args.embedding_output
    )
