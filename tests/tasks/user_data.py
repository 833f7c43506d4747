"""A user's own datasets, outside the package: recipes name them by import path (``tests.tasks.user_data:...``)."""

ROWS = [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4"}]
SPLITS = {"train": ROWS, "test": ROWS[:1]}


def make_rows(split: str) -> list[dict]:
    """Rows of ``split``: the function takes only the arguments it needs."""
    return SPLITS[split]


def hub_style():
    """A ``datasets.DatasetDict``, as ``datasets.load_dataset`` returns."""
    import datasets

    return datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)})


NOT_ROWS = [1, 2]
