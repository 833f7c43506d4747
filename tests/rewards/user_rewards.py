"""A user's own rewards, outside the package: recipes name them by import path (``tests.rewards.user_rewards:...``)."""


def length_bonus(prompts, completions, scale: float = 1.0, **kwargs) -> list[float]:
    """``scale`` × the completion's length in characters (TRL's reward signature)."""
    return [scale * len(c if isinstance(c, str) else c[0]["content"]) for c in completions]


def strict(prompts, completions, answer) -> list[float]:
    """1.0 where the completion is the gold ``answer`` column, no ``**kwargs``: takes exactly these arguments."""
    return [float(c == a) for c, a in zip(completions, answer)]


NOT_A_FUNCTION = 3


CALLS: list[dict] = []


def records_its_call(prompts, completions, **kwargs) -> list[float]:
    """Scores 0 and keeps the keyword arguments it was called with (what a user's reward receives)."""
    CALLS.append({"prompts": list(prompts), "completions": list(completions), **kwargs})
    return [0.0] * len(completions)
