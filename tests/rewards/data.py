"""Loaders for the benchmark copies under tests/fixtures/data (see its README for origin/licence)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
GSM8K_TEST = DATA / "gsm8k" / "test.jsonl"
MATH500_TEST = DATA / "math500" / "test.jsonl"
HUMANEVAL = DATA / "humaneval" / "HumanEval.jsonl.gz"


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
