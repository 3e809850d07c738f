"""The interactive embedding map at scale: 20,000 points, headless and in Chromium.

Headless (the kernel's side, what every click costs):
- ``explorer_s``: EmbeddingExplorer built with the projection already computed (cached) until
  the map widget exists (``background=True``; the kNN colouring and the compared map fill in
  afterwards, ``fill_in_s``);
- ``select_ms``: a change of the map's ``selection`` (one index, as a click sets it) until the
  neighbour grid is updated (p50 / p95 / max over 30 points); ``lasso_ms``: 500 indices until
  the selection grid and label make-up are updated; ``preview_ms``: one hover thumbnail.

In Chromium (``--browser``; headless Chromium renders WebGL through SwiftShader, on the CPU):
the same explorer in a JupyterLab notebook (``jupyterlab.on_screen_s``: the time from the
projection existing in the kernel to the map's canvas visible in the output) and served by Voila
(as ``workbench app`` does; ``chromium.on_screen_s``, the same span, which there includes the
page, its widget JavaScript and the state of every point loading after the kernel ran); then ~4 s of
wheel zooms and drags over the map while ``requestAnimationFrame`` records frame times (p50 /
p95); the WebGL renderer string is recorded.

    .venv/bin/python benchmarks/map_scale.py --browser   # -> results/map_scale.json, RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SETUP = """\
import json, time
import numpy as np
from PIL import Image
import workbench as wb
from workbench.data import ImageDataset
from workbench.eval import Embeddings
from workbench.eval.projection import project

N = {n}
rng = np.random.default_rng(0)
labels = rng.integers(0, 10, N)
feats = (rng.normal(size=(10, 64))[labels] + 0.8 * rng.normal(size=(N, 64))).astype("float32")
tiles = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(10)]
ds = ImageDataset("synthetic", images=[tiles[y] for y in labels], labels=labels,
                  class_names=[str(c) for c in range(10)])
emb = Embeddings(feats, labels, list(ds.paths), list(ds.class_names))
project(feats, method="pca")  # the projection exists: what follows is the map itself
"""


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    p50, p95 = (round(float(np.percentile(a, q)), 1) for q in (50, 95))
    return {"p50": p50, "p95": p95, "max": round(float(a.max()), 1)}


def headless(n: int) -> dict[str, object]:
    t0 = time.perf_counter()
    import jscatter  # noqa: F401  (pandas, pyarrow: their import is part of the first map)

    import_s = time.perf_counter() - t0
    scope: dict[str, object] = {}
    exec(SETUP.format(n=n), scope)  # noqa: S102
    from workbench.widgets import EmbeddingExplorer

    t0 = time.perf_counter()
    ex = EmbeddingExplorer(scope["emb"], data=scope["ds"], reducer="pca", warm_umap=False)
    explorer_s = time.perf_counter() - t0
    assert ex.map is not None and ex.error == "", ex.error
    t0 = time.perf_counter()
    ex.wait()
    fill_in_s = time.perf_counter() - t0
    assert ex.knn is not None and ex.error == "", ex.error
    rng = np.random.default_rng(1)
    select = []
    for i in rng.choice(n, 30, replace=False):
        t0 = time.perf_counter()
        ex.map.selection = np.array([i])
        select.append(1000 * (time.perf_counter() - t0))
        assert ex.selected == int(i)
    lasso = []
    for _ in range(5):
        sel = rng.choice(n, 500, replace=False)
        t0 = time.perf_counter()
        ex.map.selection = sel
        lasso.append(1000 * (time.perf_counter() - t0))
        assert len(ex.selection) == 500
    preview = []
    for i in rng.choice(n, 20, replace=False):
        t0 = time.perf_counter()
        ex._preview(int(i))
        preview.append(1000 * (time.perf_counter() - t0))
    # Reference, same run: what the PNG explorer redrew on every selection (the map and the grid).
    from workbench.plots.common import figure_to_png
    from workbench.plots.embeddings import embedding_map, neighbor_grid

    png = []
    for i in rng.choice(n, 3, replace=False):
        t0 = time.perf_counter()
        hl = [int(i), *ex.neighbor_indices.tolist()]
        figure_to_png(embedding_map(ex.projection, scope["labels"], highlight=hl, point_size=4))
        imgs = [scope["ds"][int(j)][0] for j in ex.neighbor_indices]
        figure_to_png(neighbor_grid(imgs, ex.neighbor_distances))
        png.append(1000 * (time.perf_counter() - t0))
    return {"points": n, "import_jscatter_s": round(import_s, 2),
            "png_redraw_ms": _percentiles(png),
            "explorer_s": round(explorer_s, 2), "fill_in_s": round(fill_in_s, 2),
            "select_ms": _percentiles(select), "lasso_500_ms": _percentiles(lasso),
            "preview_ms": _percentiles(preview)}  # fmt: skip


_FRAMES_JS = """() => new Promise(resolve => {
  const times = [];
  const t_end = performance.now() + 4500;
  function tick(t) {
    times.push(t);
    if (t < t_end) requestAnimationFrame(tick); else resolve(times);
  }
  requestAnimationFrame(tick);
})"""

_RENDERER_JS = """() => {
  const gl = document.createElement('canvas').getContext('webgl');
  if (!gl) return 'no WebGL';
  const ext = gl.getExtension('WEBGL_debug_renderer_info');
  return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
}"""


def _map_cell(knn: bool = True) -> str:
    """The timed part: the explorer and its map, once the projection exists (``t.json``)."""
    return (
        "t_projection = time.time()\n"
        + ("" if knn else "emb.labels = None  # no kNN colouring in the background\n")
        + "ex = wb.EmbeddingExplorer(emb, data=ds, reducer='pca', warm_umap=False)\n"
        "json.dump({'t_projection': t_projection, 'error': ex.error}, open('t.json', 'w'))\n"
        "ex\n"
    )


def _app_cell(knn: bool = True) -> str:
    """As in ``workbench app``: the explorer opens in a page already on screen (a button)."""
    return (
        "import ipywidgets as widgets\n"
        + ("" if knn else "emb.labels = None  # no kNN colouring in the background\n")
        + "area = widgets.VBox()\n"
        "def open_map(_):\n"
        "    t_projection = time.time()\n"
        "    ex = wb.EmbeddingExplorer(emb, data=ds, reducer='pca', warm_umap=False)\n"
        "    area.children = [ex]\n"
        "    json.dump({'t_projection': t_projection, 'error': ex.error}, open('t.json', 'w'))\n"
        "button = widgets.Button(description='open the map')\n"
        "button.on_click(open_map)\n"
        "widgets.VBox([button, area])\n"
    )


def _write_notebook(path: Path, sources: list[str]) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
              "outputs": [], "source": src} for i, src in enumerate(sources)]  # fmt: skip
    nb = {"cells": cells,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def lab(n: int, knn: bool = True) -> dict[str, object]:
    """JupyterLab: from the projection existing in the kernel to the map's canvas on screen.

    The data and features are made in a first cell; the second builds the explorer (the timed
    part, as under Voila). Both run with "Run All" in a notebook opened in Chromium.
    """
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, lab_server, open_notebook  # tests/

    tmp = Path(tempfile.mkdtemp(prefix="map-scale-lab-"))
    _write_notebook(tmp / "notebooks" / "map.ipynb", [SETUP.format(n=n), _map_cell(knn)])
    with lab_server(tmp) as (base, token), sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1280, "height": 1000})
        open_notebook(page, base, token, "map.ipynb")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        canvas = page.locator(".jp-OutputArea-output canvas").filter(visible=True).first
        canvas.wait_for(timeout=300_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        t_screen = time.time()
        info = json.loads((tmp / "notebooks" / "t.json").read_text())
        b.close()
    return {"on_screen_s": round(t_screen - info["t_projection"], 2), "error": info["error"]}


def browser(n: int, knn: bool = True, in_app: bool = False) -> dict[str, object]:
    """Voila: the page's notebook builds the explorer as it runs (the page load is timed too), or
    (``in_app``) the page is on screen first and a click opens the explorer, as in the app."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, _wait_http  # tests/ helpers

    from workbench.app import voila_command

    folder = Path(tempfile.mkdtemp(prefix="map-scale-"))
    cell = _app_cell(knn) if in_app else _map_cell(knn)
    _write_notebook(folder / "map.ipynb", [SETUP.format(n=n) + cell])
    port = _free_port()
    log_path = folder / "voila.log"
    env = dict(os.environ, MPLBACKEND="Agg")
    with log_path.open("w") as log:
        cmd = voila_command(folder / "map.ipynb", port=port, open_browser=False)
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            _wait_http(f"http://127.0.0.1:{port}/", proc, 120, log_path)
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = b.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
                if in_app:
                    page.get_by_text("open the map").click(timeout=300_000)
                canvas = page.locator("canvas").filter(visible=True).first
                canvas.wait_for(timeout=300_000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                t_screen = time.time()
                info = json.loads((folder / "t.json").read_text())
                renderer = page.evaluate(_RENDERER_JS)
                box = canvas.bounding_box()
                assert box is not None
                cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
                page.mouse.move(cx, cy)
                frames = page.evaluate_handle(_FRAMES_JS)
                for k in range(6):  # zoom in and out, pan between
                    page.mouse.wheel(0, -240 if k % 2 == 0 else 240)
                    page.wait_for_timeout(150)
                    page.mouse.move(cx, cy)
                    page.mouse.down()
                    page.mouse.move(cx + 80, cy + 40, steps=12)
                    page.mouse.up()
                    page.wait_for_timeout(100)
                times = np.asarray(frames.json_value())
                b.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    dt = np.diff(times)
    return {"on_screen_s": round(t_screen - info["t_projection"], 2), "error": info["error"],
            "frames": int(len(dt)), "frame_ms": _percentiles(dt.tolist()),
            "webgl_renderer": renderer, "viewport": "1280x1000",
            "map_canvas": f"{box['width']:.0f}x{box['height']:.0f}"}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", type=int, default=20_000)
    p.add_argument("--browser", action="store_true", help="also measure in headless Chromium")
    p.add_argument("--name", default="map_scale", help="results/<name>.json")
    p.add_argument("--quick", action="store_true", help="500 points, headless: a smoke test")
    p.add_argument("--browser-only", action="store_true", help="skip the headless figures")
    p.add_argument("--repeat", type=int, default=3, help="browser runs of each (the median)")
    p.add_argument("--no-knn", action="store_true", help="browsers: unlabelled (no kNN thread)")
    args = p.parse_args()
    if args.quick:
        args.points, args.browser, args.name = 500, False, "map_scale_quick"
    sys.path.insert(0, str(ROOT / "tests"))
    import common

    from workbench.training.memory_format import cpu_flags

    flags = cpu_flags()
    row: dict[str, object] = {"points": args.points, "machine": common.machine(),
                              "cpu_flags": {f: f in flags for f in ("avx2", "avx512f", "amx_tile")},
                              "headless": {}}  # fmt: skip
    if not args.browser_only:
        row["headless"] = headless(args.points)
    if args.browser:  # the median of --repeat runs of each (the runs are kept)
        knn = not args.no_knn
        for key, measure in (("chromium", lambda: browser(args.points, knn)),
                             ("voila_app", lambda: browser(args.points, knn, in_app=True)),
                             ("jupyterlab", lambda: lab(args.points, knn))):  # fmt: skip
            runs = [measure() for _ in range(args.repeat)]
            times = [float(r["on_screen_s"]) for r in runs]  # type: ignore[arg-type]
            row[key] = dict(runs[int(np.argsort(times)[len(times) // 2])],
                            on_screen_runs_s=times)  # fmt: skip
    row["machine"]["loadavg"] = [round(x, 2) for x in os.getloadavg()]  # type: ignore[index]
    print(json.dumps(row, indent=1))
    print("wrote", common.write_json(args.name, row))
    if not args.quick:
        print("and", common.render())


if __name__ == "__main__":
    main()
