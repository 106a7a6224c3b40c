"""Coverage-guided fuzzing of the input stage's decode and validation with atheris (libFuzzer), optional.

    .venv/bin/pip install atheris
    PYTHONPATH=. .venv/bin/python scripts/fuzz_atheris.py -runs=200000          # or -max_total_time=600
    PYTHONPATH=. .venv/bin/python scripts/fuzz_atheris.py CORPUS_DIR -max_total_time=3600

Where ``tests/stages/test_fuzz.py`` mutates at random, libFuzzer keeps the inputs that take new branches
of the Python it instruments (the codec, the validation, the item count, the registry cache; fastavro's
compiled reader is not instrumented, so its branches guide nothing). It starts from the test's corpus
(valid requests of both versions in both framings, a ``mock://`` registry with hostile writer schemas),
written to ``CORPUS_DIR`` when given. An input fails the run when decoding raises anything but an
``EventError``, an ``EventError`` has code ``UNKNOWN`` or a stage other than DECODE and VALIDATE, or an
accepted request fails the test's oracle. Without atheris the script says so and exits 0: it is not part
of the suite's requirements.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("skipped: atheris is not installed (pip install atheris)")
        return 0
    sys.path.insert(0, str(REPO))
    with atheris.instrument_imports():
        from pipeline.serde import EventError, Stage
        from pipeline.serde.limits import DEFAULT_LIMITS
        from pipeline.serde.store import shared_store
        from tests.stages.fuzz_corpus import build_corpus, really_valid, request_codec

    store = shared_store(REPO / "schemas")
    corpus = build_corpus(store)
    decode = request_codec(store, corpus).decode
    typed = (Stage.DECODE, Stage.VALIDATE)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if dirs:
        folder = Path(dirs[0])
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(corpus.seeds + corpus.large):
            (folder / f"seed-{i:04d}").write_bytes(seed)

    def one(data: bytes) -> None:
        try:
            datum: Any = decode(data)
        except EventError as exc:
            if exc.code.value == "UNKNOWN" or exc.stage not in typed:
                raise AssertionError(f"{data!r}: {exc!r} is not a typed decode or validation failure") from exc
            return
        wrong = really_valid(datum, DEFAULT_LIMITS)
        if wrong is not None:
            raise AssertionError(f"{data!r} accepted: {wrong}")

    atheris.Setup(argv, one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
