"""Readers of completion files for ``unmask score``: each file becomes :class:`Completion` records carrying the
dataset columns the benchmark's graders read.

| format | recognised by | benchmark from | one problem is |
|---|---|---|---|
| ``unmask eval``'s ``<bench>.samples.jsonl`` | JSON lines with ``id``, ``completion`` | the ``id`` prefix | an ``id`` |
| d1's ``<benchmark>_..._generations.json`` | a JSON object with a ``generations`` list | the file name | a row |
| lm-eval's ``samples_<task>_<time>.jsonl`` | JSON lines with ``doc``, ``resps`` | the task name | a ``doc_id`` |

Any of them may be gzipped (``.gz``).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = "unmask eval's *.samples.jsonl, d1's *_generations.json or lm-eval's samples_*.jsonl"


@dataclass
class Completion:
    id: str
    sample: int
    prompt: str
    text: str                       # what is graded; d1's keeps its special tokens (d1's Sudoku parser reads them)
    row: dict                       # the dataset columns the graders read
    source: str                     # the file it came from
    tokens: int | None = None
    nfe: float | None = None
    seconds: float | None = None
    settings: dict = field(default_factory=dict)
    raw: str | None = None          # the completion before a template's stop strings cut it, when they did


def read_text(path: Path) -> str:
    """The text of ``path``, gunzipped when its name ends in ``.gz``."""
    return gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else path.read_text("utf-8")


def _lines(path: Path) -> list[str]:
    return [line for line in read_text(path).splitlines() if line.strip()]


def sniff(path: Path) -> str:
    """``"unmask"``, ``"d1"`` or ``"lm-eval"``: which writer made ``path``; ValueError naming the file otherwise."""
    try:
        text = read_text(path).lstrip()
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        raise ValueError(f"{path}: not a text file; unmask score reads {FORMATS}") from None
    first = text.split("\n", 1)[0]
    try:
        record = json.loads(first) if first else None
    except json.JSONDecodeError:  # one JSON object over many lines: d1's file
        record = None
    if isinstance(record, dict) and "doc" in record and "resps" in record:
        return "lm-eval"
    if isinstance(record, dict) and "id" in record and "completion" in record:
        return "unmask"
    if text.startswith("{") and path.name.removesuffix(".gz").endswith(".json"):
        return "d1"
    raise ValueError(f"{path}: not a file of completions that unmask score reads ({FORMATS})")


def benchmark_of(path: Path, fmt: str, names: list[str]) -> str | None:
    """The benchmark a file holds, from its records (ours) or its name (d1's, lm-eval's); None when unknown."""
    if fmt == "unmask":
        return str(json.loads(_lines(path)[0])["id"]).split("/")[0]
    stem = path.name.removeprefix("samples_") if fmt == "lm-eval" else path.name
    found = [n for n in names if stem == n or stem.startswith(n + "_")]
    return max(found, key=len) if found else None


def read(path: Path, fmt: str, bench: str) -> list[Completion]:
    """The completions of one file of format ``fmt`` (see :func:`sniff`) for benchmark ``bench``."""
    return {"unmask": _read_unmask, "d1": _read_d1, "lm-eval": _read_lm_eval}[fmt](path, bench)


def _read_unmask(path: Path, bench: str) -> list[Completion]:
    out = []
    for n, line in enumerate(_lines(path), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{n}: not a JSON line (a run killed mid-write? resume it with unmask eval, "
                             f"or delete the line)") from None
        row = r.get("row")
        if row is None and bench not in ("gsm8k", "math500"):
            raise ValueError(f"{path}: its records carry no dataset row (written before unmask eval recorded them), "
                             f"and the {bench} graders need more than the gold answer; run unmask eval again")
        out.append(Completion(r["id"], int(r.get("sample", 0)), _text(r.get("prompt")),
                              r.get("graded_completion", r["completion"]), row or {"answer": r.get("gold")}, str(path),
                              r.get("tokens"), r.get("nfe"), r.get("seconds"), r.get("sampler") or {}, r["completion"]))
    return out


def _read_d1(path: Path, bench: str) -> list[Completion]:
    data = json.loads(read_text(path))
    if not isinstance(data, dict) or not isinstance(data.get("generations"), list):
        raise ValueError(f"{path}: a d1 file is a JSON object with a 'generations' list; this one has none")
    settings = {k: data[k] for k in ("model_path", "gen_length", "diffusion_steps", "block_length") if k in data}
    return [Completion(f"{bench}/{path.name}#{i}", 0, item.get("question", ""), item.get("generations") or "",
                       d1_columns(bench, item), str(path), settings=settings)
            for i, item in enumerate(data["generations"])]


def d1_columns(bench: str, item: dict) -> dict:
    """The dataset columns of a d1 row (``question``, ``ground_truth``), as the benchmark's graders name them."""
    question, gold = item.get("question", ""), item.get("ground_truth")
    if bench == "gsm8k":  # d1 stores the number as a float: 18.0 -> "18", as GSM8K's own answers read
        return {"question": question, "answer": None if gold is None else _number_text(float(gold))}
    if bench == "math500":
        return {"problem": question, "answer": gold}
    if bench == "countdown":
        if isinstance(gold, list) and len(gold) == 2:
            nums, target = gold
        else:  # d1's fallback: the numbers and target written in the question
            found = re.search(r"Numbers: \[([\d, ]+)\]", question, re.IGNORECASE)
            goal = re.search(r"Target: (\d+)", question, re.IGNORECASE)
            nums, target = (found and found.group(1)), (goal and int(goal.group(1)))
        return {"question": question, "nums": nums, "target": target}
    if bench == "sudoku":  # as d1: the question's first 16 characters when they are digits, else after the label
        found = re.match(r"(\d{16})", question) or re.search(r"Sudoku puzzle: ([0-9]{16})", question)
        return {"question": question, "puzzle": found and found.group(1), "solution": gold}
    raise ValueError(f"d1 publishes gsm8k, math500, countdown and sudoku generations; not {bench!r}")


def _read_lm_eval(path: Path, bench: str) -> list[Completion]:
    out, seen = [], set()
    for line in _lines(path):
        r = json.loads(line)
        doc_id = r.get("doc_id", hashlib.sha1(json.dumps(r["doc"], sort_keys=True).encode()).hexdigest()[:12])
        if doc_id in seen:  # lm-eval writes one line per filter; the responses are the same
            continue
        seen.add(doc_id)
        resps = r["resps"][0] if r["resps"] and isinstance(r["resps"][0], list) else r["resps"]
        out += [Completion(f"{bench}/{doc_id}", k, _lm_eval_prompt(r.get("arguments")), str(text), dict(r["doc"]),
                           str(path)) for k, text in enumerate(resps)]
    return out


def _lm_eval_prompt(arguments) -> str:
    """The context of an lm-eval request: ``{"gen_args_0": {"arg_0": ctx, ...}}`` or ``[[ctx, kwargs]]``."""
    if isinstance(arguments, dict):
        arguments = [list(a.values()) if isinstance(a, dict) else a for a in arguments.values()]
    try:
        return str(arguments[0][0])
    except (TypeError, IndexError, KeyError):
        return ""


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt)
