"""Shared test fixtures: paths to the bundled checkpoints, goldens and data (no downloads)."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tests.paths import FIXTURES


@pytest.fixture(scope="session")
def dream_tokenizer_dir(tmp_path_factory) -> Path:
    """The real Dream tokenizer, its large files stored gzipped in the repo, unpacked once per session."""
    out = tmp_path_factory.mktemp("dream-tokenizer")
    for f in (FIXTURES / "dream-tokenizer").iterdir():
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as src, open(out / f.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, out / f.name)
    return out
