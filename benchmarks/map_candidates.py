"""The map libraries tried for the EmbeddingExplorer, measured on the same 20,000 points.

For each candidate: the import, building its widget with 20,000 points coloured by 10 classes
(kernel side), and the bytes of widget state sent to the browser; and whether its wheel ships a
JupyterLab 4 front end. The browser side is measured for the chosen one in ``map_scale.py``.
Candidates that are not installed are reported as such (``pip install plotly bqplot``).

    .venv/bin/python benchmarks/map_candidates.py     # -> results/map_candidates.json
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, time, sys
import numpy as np
t0 = time.perf_counter()
{imp}
imp = time.perf_counter() - t0
rng = np.random.default_rng(0)
n = {n}
x, y = rng.normal(size=n), rng.normal(size=n)
lab = rng.integers(0, 10, n)
t0 = time.perf_counter()
w = None
{build}
build = time.perf_counter() - t0
from ipywidgets import Widget
def size(o):
    if isinstance(o, (bytes, bytearray, memoryview)): return len(o)
    if isinstance(o, dict): return sum(size(v) for v in o.values())
    if isinstance(o, (list, tuple)): return sum(size(v) for v in o)
    return len(json.dumps(o, default=str))
total = 0
for wid in list(Widget.widgets.values()):
    total += size(wid.get_state())
print(json.dumps({{"import_s": round(imp, 2), "build_s": round(build, 3),
                   "state_mib": round(total / 2**20, 2)}}))
"""

CANDIDATES = {
    "jupyter-scatter": ("jscatter", "import jscatter, pandas as pd",
        "df = pd.DataFrame({'x': x, 'y': y, 'c': pd.Categorical(lab.astype(str))})\n"
        "sc = jscatter.Scatter(x='x', y='y', data=df, color_by='c'); w = sc.widget"),
    "plotly FigureWidget (Scattergl)": ("plotly", "import plotly.graph_objects as go",
        "w = go.FigureWidget(go.Scattergl(x=x, y=y, mode='markers', marker=dict(color=lab)))"),
    "bqplot": ("bqplot", "import bqplot as bq",
        "xs, ys, cs = bq.LinearScale(), bq.LinearScale(), bq.ColorScale()\n"
        "m = bq.Scatter(x=x, y=y, color=lab, scales={'x': xs, 'y': ys, 'color': cs})\n"
        "w = bq.Figure(marks=[m])"),
}  # fmt: skip


def _front_end(module: str) -> list[str]:
    """The JavaScript bundles (> 100 kB) the package brings: in it (anywidget) or a labextension."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    pkg = Path(spec.origin).parent
    dirs = [pkg, Path(sys.prefix) / "share" / "jupyter" / "labextensions",
            pkg.parent / "share" / "jupyter" / "labextensions"]  # fmt: skip
    found = []
    for d in dirs:
        if not d.exists():
            continue
        files = d.rglob("*.js") if d == pkg else (f for f in d.rglob("*.js") if module in str(f))
        found += [str(f.relative_to(d.parent)) for f in files if f.stat().st_size > 100_000]
    return sorted(found)[:3]


def main() -> None:
    import common

    out: dict[str, object] = {"machine": common.machine(), "points": 20_000, "candidates": {}}
    for name, (module, imp, build) in CANDIDATES.items():
        if importlib.util.find_spec(module) is None:
            out["candidates"][name] = {"installed": False}  # type: ignore[index]
            continue
        code = CHILD.format(imp=imp, build=build, n=20_000)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
            "error": proc.stderr.strip().splitlines()[-1]}  # fmt: skip
        row["front_end"] = _front_end(module)
        out["candidates"][name] = row  # type: ignore[index]
    print(json.dumps(out["candidates"], indent=1))
    print("wrote", common.write_json("map_candidates", out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
