"""``unmask view TRAJECTORY.safetensors --out view.html``: one self-contained HTML page (no network, no external
assets) that replays a saved trajectory step by step.

The page holds, per row, the decoded prompt and each completion token's text, commit step and log-probability, the
blocks and any re-mask events, and rebuilds every state in the browser from the same formula as
``Trajectory.state``: position i shows its token at step s when ``commit_step[i] < s`` (or a re-masked token
between its commit and its re-mask), else the mask glyph ``░``. A slider and a play button move through the steps;
tokens are coloured by commit step (the ones committed by the step just taken are outlined), block boundaries are
marked, hovering a token shows its commit step and log-probability, and a heatmap (position × step) shows the
commit order. The canvas's text at step s is the row's prompt and ``Trajectory.state(s)``'s completion decoded
token by token, masks as ``░`` (what the browser test checks).
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .trajectory import Trajectory

MASK_GLYPH = "░"


def row_data(traj: Trajectory, tokenizer, row: int) -> dict:
    """What the page needs of one row (JSON-ready)."""
    prompt = traj.prompt_ids[row][traj.prompt_mask[row].bool()].tolist()
    ids = traj.completion_ids[row].tolist()
    events = traj.extras.get("remask_events")
    remasks = [] if events is None else [e[1:] for e in events.long().tolist() if e[0] == row]  # pos, token, c, r
    return {"prompt": tokenizer.decode(prompt), "tokens": [tokenizer.decode([t]) for t in ids],
            "commit": traj.commit_step[row].tolist(), "logp": [round(float(x), 4) for x in traj.rollout_logp[row]],
            "steps": int(traj.num_steps[row]), "remasks": [[p, tokenizer.decode([t]), c, r] for p, t, c, r in remasks],
            "blocks": [list(b) for b in traj.blocks]}


def render_html(traj: Trajectory, tokenizer, rows: list[int] | None = None, title: str = "unmask trajectory") -> str:
    rows = list(range(traj.batch_size)) if rows is None else rows
    for r in rows:
        if not 0 <= r < traj.batch_size:
            raise ValueError(f"--row {r} is out of range: the trajectory has rows 0..{traj.batch_size - 1}")
    data = {"rows": [row_data(traj, tokenizer, r) for r in rows], "row_ids": rows, "mask": MASK_GLYPH,
            "sampler": traj.sampler, "nfe": traj.nfe}
    payload = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")  # safe inside <script>
    return PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def write_view(path: str | os.PathLike, out: str | os.PathLike, tokenizer, rows: list[int] | None = None) -> Path:
    traj = Trajectory.load(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(traj, tokenizer, rows, title=f"unmask · {Path(path).name}"), encoding="utf-8")
    return out


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:70em}
#controls{display:flex;gap:1em;align-items:center;margin-bottom:1em}
#slider{flex:1}
#canvas{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.9;border:1px solid #ddd;padding:1em;
border-radius:6px}
.prompt{color:#888}
.tok{border-radius:3px;padding:0 1px}
.masked{color:#bbb}
.new{outline:2px solid #d33}
.block{border-left:2px solid #99c;margin-left:2px}
#heat{margin-top:1em}
small{color:#666}
</style></head><body>
<h3>__TITLE__</h3>
<div id="controls">
<label>row <select id="row"></select></label>
<button id="play">play</button>
<input id="slider" type="range" min="0" value="0">
<span id="label"></span>
</div>
<div id="canvas"></div>
<svg id="heat"></svg>
<p><small>Tokens are coloured by the step that committed them (early: blue, late: red); the ones the last step
committed are outlined; ░ is a masked position; hover a token for its commit step and log-probability. The heatmap
marks, for each position (x) and step (y, down), the step that committed it; the shade covers the steps
taken.</small></p>
<script id="data" type="application/json">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById("data").textContent);
const rowSel = document.getElementById("row"), slider = document.getElementById("slider");
const canvas = document.getElementById("canvas"), label = document.getElementById("label");
DATA.row_ids.forEach((r, i) => { const o = document.createElement("option"); o.value = i; o.textContent = r;
  rowSel.appendChild(o); });
let timer = null;
function row() { return DATA.rows[+rowSel.value]; }
function hue(step, steps) { return 240 - 240 * (steps > 1 ? step / (steps - 1) : 0); }
function tokenAt(r, i, s) {
  for (const [p, tok, c, e] of r.remasks) if (p === i && c < s && s <= e) return [tok, c];
  return r.commit[i] < s ? [r.tokens[i], r.commit[i]] : null;
}
function draw() {
  const r = row(), s = +slider.value;
  canvas.textContent = "";
  const p = document.createElement("span"); p.className = "prompt"; p.textContent = r.prompt; canvas.appendChild(p);
  const starts = new Set(r.blocks.map(b => b[0]));
  r.tokens.forEach((_, i) => {
    const span = document.createElement("span"), got = tokenAt(r, i, s);
    span.className = "tok" + (starts.has(i) && i > 0 ? " block" : "");
    if (got === null) { span.textContent = DATA.mask; span.classList.add("masked");
      span.title = "position " + i + ": masked at step " + s; }
    else { const [tok, c] = got; span.textContent = tok;
      span.style.background = "hsl(" + hue(c, r.steps) + ",70%,88%)";
      if (c === s - 1) span.classList.add("new");
      span.title = "position " + i + ": committed at step " + c + ", log p = " + r.logp[i]; }
    canvas.appendChild(span);
  });
  label.textContent = "step " + s + " / " + r.steps + " · NFE " + DATA.nfe;
}
function heat() {
  const r = row(), svg = document.getElementById("heat"), n = r.tokens.length, w = Math.max(2, 600 / n),
        h = Math.max(2, 160 / Math.max(r.steps, 1));
  svg.setAttribute("width", n * w); svg.setAttribute("height", r.steps * h); svg.innerHTML = "";
  r.commit.forEach((c, i) => { if (c < 0) return; const q = document.createElementNS("http://www.w3.org/2000/svg",
    "rect"); q.setAttribute("x", i * w); q.setAttribute("y", c * h); q.setAttribute("width", w);
    q.setAttribute("height", h); q.setAttribute("fill", "hsl(" + hue(c, r.steps) + ",70%,50%)");
    svg.appendChild(q); });
}
function marker() {  // the current step on the heatmap
  const svg = document.getElementById("heat"), r = row(), h = Math.max(2, 160 / Math.max(r.steps, 1));
  let line = document.getElementById("now");
  if (!line) { line = document.createElementNS("http://www.w3.org/2000/svg", "rect"); line.id = "now";
    line.setAttribute("fill", "rgba(0,0,0,0.15)"); svg.appendChild(line); }
  line.setAttribute("x", 0); line.setAttribute("width", svg.getAttribute("width"));
  line.setAttribute("y", 0); line.setAttribute("height", +slider.value * h);
}
function show() { draw(); marker(); }
function reset() { slider.max = row().steps; slider.value = Math.min(+slider.value, row().steps); heat(); show(); }
rowSel.onchange = reset; slider.oninput = show;
document.getElementById("play").onclick = () => {
  if (timer) { clearInterval(timer); timer = null; return; }
  if (+slider.value >= +slider.max) slider.value = 0;
  timer = setInterval(() => { if (+slider.value >= +slider.max) { clearInterval(timer); timer = null; return; }
    slider.value = +slider.value + 1; show(); }, 250);
};
const hashStep = /step=(\\d+)/.exec(location.hash);
reset(); if (hashStep) { slider.value = hashStep[1]; show(); }
</script></body></html>
"""
