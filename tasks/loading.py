"""Rows of a dataset (dicts of columns) for training and evaluation, and the check that they hold the
columns a template or reward reads.

Sources (a recipe's ``data.dataset``): a Hub dataset (``datasets.load_dataset(dataset, dataset_config)``),
local files (``data_files`` with the ``json``/``csv``/``parquet`` builder), a built-in generated set
(``DATASETS`` in ``tasks/registry.py``, e.g. ``synthetic_addition``: the bundled addition task of
``tasks/synthetic.py``, no download), or the user's own by import path ``package.module:name`` (a
``datasets.Dataset``, a dict of splits, a list of dicts, or a function returning one, called with whichever of
``config``, ``split`` and ``seed`` it takes). Rewards receive every column of the row (TRL's convention).
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

from unmask.rewards.registry import import_object, is_import_path

from .registry import DATASETS

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def load_rows(dataset: str, config: str | None, split: str, data_files=None, limit: int | None = None,
              seed: int = 0) -> list[dict]:
    """Rows (dicts of columns) of a Hub dataset, local files or a built-in set."""
    if dataset in DATASETS:
        rows = DATASETS.get(dataset)(config, split, seed)
    elif is_import_path(dataset):
        rows = user_rows(dataset, config, split, seed)
    else:
        import datasets  # the Hub library: only when a Hub dataset or local file is read
        if data_files is not None:
            files = [data_files] if isinstance(data_files, str) else list(data_files)
            builder = dataset if dataset in ("json", "csv", "parquet", "text") else next(
                (b for ext, b in FILE_BUILDERS.items() if str(files[0]).endswith(ext)), "json")
            ds = datasets.load_dataset(builder, data_files=files, split="train")
        else:
            ds = datasets.load_dataset(dataset, config, split=split)
        rows = [dict(r) for r in ds]
    if not rows:
        raise ValueError(f"dataset {dataset!r} (split {split!r}) has no rows")
    return rows[:limit] if limit else rows


def user_rows(path: str, config: str | None, split: str, seed: int) -> list[dict]:
    """The rows of the dataset an import path names (see the module docstring)."""
    obj = import_object(path, "dataset")
    if callable(obj):
        given = {"config": config, "split": split, "seed": seed}
        params = inspect.signature(obj).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        obj = obj(**{k: v for k, v in given.items() if takes_all or k in params})
    if isinstance(obj, Mapping):  # a DatasetDict or a dict of splits
        if split not in obj:
            raise ValueError(f"dataset {path!r} has no split {split!r}; its splits are {sorted(obj.keys())}")
        obj = obj[split]
    rows = [dict(r) if isinstance(r, Mapping) else r for r in obj]
    if any(not isinstance(r, dict) for r in rows):
        raise ValueError(f"dataset {path!r} gave rows that are not dicts of columns (e.g. {rows[0]!r}); give a "
                         f"datasets.Dataset or a list of dicts")
    return rows


def load_checked_rows(field: str, dataset: str, config: str | None, split: str, data_files, limit: int | None,
                      seed: int, needed: tuple[tuple[str, ...], ...], needed_by: str, fix: str) -> list[dict]:
    """:func:`load_rows`, failing with the recipe field, the missing columns and the fix when a needed
    column (``needed``: alternatives per entry) is absent."""
    return check_columns(f"{field} {dataset!r}", load_rows(dataset, config, split, data_files, limit, seed=seed),
                         needed, needed_by, fix)


def check_columns(what: str, rows: list[dict], needed: tuple[tuple[str, ...], ...], needed_by: str,
                  fix: str) -> list[dict]:
    """``rows`` (not empty), failing with ``what``, the missing columns and the fix when a needed column is absent."""
    missing = missing_columns(list(rows[0]), needed)
    if missing:
        raise ValueError(f"{what} has no column {', '.join(missing)} (needed by {needed_by}); its "
                         f"columns are {sorted(rows[0])}: {fix}")
    return rows


def missing_columns(columns: list[str], needed: tuple[tuple[str, ...], ...]) -> list[str]:
    """The needed column sets none of whose alternatives is present, written ``a|b``."""
    return ["|".join(alt) for alt in needed if not any(a in columns for a in alt)]
