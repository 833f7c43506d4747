"""4×4 Sudoku: local files only (d1's CSV with a ``puzzle`` column; no Hub copy), its prompt and the rewards
that grade it.

Style: the puzzle row by row, the 16 digits of the solved grid asked for in ``<answer>`` tags
(``sudoku``). Graded by ``sudoku`` (a solved grid consistent with the puzzle; the score) and d1's cell
accuracy over the blanks (``rewards/puzzles.py``); the id is the row index.
"""
from __future__ import annotations

from unmask.rewards import sudoku, tag_content
from unmask.rewards.puzzles import sudoku_cells_d1

from .benchmark import D1_PUBLISHED, Benchmark
from .prompts import PromptTemplate, first_column, messages
from .registry import register_benchmark, register_template


def _sudoku(row: dict, system: str | None) -> list[dict]:
    puzzle = first_column(row, ("puzzle", "Puzzle"))
    return messages(f"Solve this 4x4 Sudoku (0 marks an empty cell; each row, column and 2x2 box holds 1-4 "
                    f"once). Puzzle, row by row: {puzzle}\nReturn the 16 digits of the solved grid in "
                    f"<answer> </answer> tags.", system)


register_template(PromptTemplate("sudoku", (("puzzle", "Puzzle"),), _sudoku))

register_benchmark(Benchmark(
    "sudoku", None, None, "test", "sudoku", None,
    gold=lambda row: str(row.get("solution", row.get("Solution", ""))),
    extract=lambda text, row: tag_content(text, "answer") or "",
    graders={"sudoku": sudoku, "d1_cell_accuracy": sudoku_cells_d1}, default_length=128,
    reproduces={"d1_cell_accuracy": D1_PUBLISHED + ", a cell accuracy over the blanks, not solved grids"}))
