"""The demo's learning curves — training reward per RL step and held-out accuracy at its evaluation steps
(``rl/demo.py`` reads them from the RL run's ``metrics.jsonl``: ``reward`` and ``eval/reward``, the README's
metrics table).

Always written as a CSV; drawn as a PNG when matplotlib (the ``plot`` extra: ``pip install "unmask[plot]"``)
is installed. matplotlib is imported only here, inside ``plot_curves``, so importing unmask never needs it.
"""
from __future__ import annotations

import csv
from itertools import zip_longest
from pathlib import Path
from typing import Callable

COLUMNS = ("step", "train_reward", "heldout_accuracy")
SERIES = (("reward_curve", "training reward (batch mean)"), ("accuracy_curve", "held-out accuracy"))


def write_curve_csv(path: str | Path, summary: dict) -> Path:
    """Write ``summary``'s reward and accuracy curves as one row per step (an empty cell where a curve has
    no value at that step); floats are written in full, so reading them back gives the same numbers."""
    by_step: dict[int, tuple[list, list]] = {}
    for column, (key, _) in enumerate(SERIES):
        for step, value in summary[key]:
            by_step.setdefault(step, ([], []))[column].append(value)
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for step in sorted(by_step):
            for reward, accuracy in zip_longest(*by_step[step], fillvalue=""):
                writer.writerow([step, reward, accuracy])
    return path


def plot_curves(path: str | Path, summary: dict) -> Path | None:
    """Draw both curves to a 640×400 PNG at ``path``; return None (drawing nothing) without matplotlib."""
    try:
        import matplotlib  # noqa: F401  (imported first so a missing or blocked matplotlib stops here)
    except ImportError:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100)  # the object API: no pyplot, no global backend switch
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (key, label), style in zip(SERIES, ({"linewidth": 1.2}, {"marker": "o", "linewidth": 2.0})):
        steps, values = zip(*summary[key]) if summary[key] else ((), ())
        ax.plot(steps, values, label=label, **style)
    values = [v for key, _ in SERIES for _, v in summary[key]]
    ax.set_ylim(min([0.0, *values]) - 0.03, max([1.0, *values]) + 0.03)
    ax.set(title=f"unmask demo: {summary['algorithm']} on 2-digit addition", xlabel="RL step",
           ylabel="reward / accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def write_curves(out: str | Path, summary: dict, log: Callable[[str], None] = print) -> list[Path]:
    """Write ``out/curve.csv`` and, with matplotlib, ``out/curve.png``; return the paths written. Without
    matplotlib, say so in one ``log`` line."""
    out = Path(out)
    written = [write_curve_csv(out / "curve.csv", summary)]
    png = plot_curves(out / "curve.png", summary)
    if png is None:
        log(f'wrote {written[0]}; matplotlib is not installed, so no curve.png: pip install "unmask[plot]" draws it')
    else:
        written.append(png)
    return written
