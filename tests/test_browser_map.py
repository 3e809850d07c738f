"""Real-browser test of the interactive embedding map: JupyterLab 4 and Voila in headless Chromium.

A small notebook builds an EmbeddingExplorer on 300 digits (clustered features, PCA map, a
compared embedding) and writes the map's coordinates and every point's neighbours to a JSON file.
The test reads it to know where each point is on screen, then in Chromium:

- hovers a point and finds the tooltip with its thumbnail and index;
- clicks it and asserts that the neighbour grid shows that point's neighbours;
- lassos a rectangle (shift + drag) and asserts that the grid shows the points inside it;
- serves the same notebook with Voila, as ``workbench app`` does (``workbench.app.voila_command``),
  and clicks a point there (its hover preview is not asserted: see the known gap below).

The front end comes from the installed jupyter-scatter wheel (Chromium has no network here).
Screenshots go to ``docs/`` with ``WORKBENCH_UPDATE_SCREENSHOTS=1`` (else a temporary folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_browser import (  # noqa: F401  (lab is a fixture)
    _CELLS_JS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DOCS,
    _free_port,
    _shrink,
    _wait_http,
    lab,
    open_notebook,
)

pytestmark = pytest.mark.browser

NOTEBOOK = "map_test.ipynb"
SOURCE = """\
import json
import numpy as np
import workbench as wb
from workbench.eval import Embeddings, nearest_neighbors

ds = wb.load_dataset("digits").subset(range(300))
rng = np.random.default_rng(0)
feats = rng.normal(size=(10, 16))[ds.labels] + 0.6 * rng.normal(size=(300, 16))
emb = Embeddings(feats, ds.labels, ds.paths, ds.class_names)
other = Embeddings(rng.normal(size=(300, 16)), ds.labels, ds.paths, ds.class_names)
ex = wb.EmbeddingExplorer(emb, data=ds, compare=other, reducer="pca", k=6, background=False)
nn, _ = nearest_neighbors(feats, np.arange(300), 7)
json.dump({"xy": ex.projection.tolist(), "nn": nn.tolist(), "error": ex.error},
          open("map_test.json", "w"))
ex
"""


def _write_notebook(folder: Path) -> Path:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "map", "metadata": {},
                   "outputs": [], "source": SOURCE}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"}, "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    path = folder / NOTEBOOK
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


# The text of the visible tooltip whose preview is one of our data-URL thumbnails (jupyter-scatter
# draws the preview as a CSS background image), or null.
_TOOLTIP_JS = """() => {
  const el = [...document.querySelectorAll('div')].find(
    d => d.style.backgroundImage.includes('data:image/png') && d.offsetParent !== null);
  if (!el) return null;
  let box = el;
  for (let i = 0; i < 4 && box.parentElement && !box.innerText.includes('Index'); i++)
    box = box.parentElement;
  return box.innerText;
}"""


def _screen_points(xy: np.ndarray, box: dict) -> np.ndarray:
    """Where jupyter-scatter draws each point in a canvas box (page pixels).

    jupyter-scatter scales x and y to [-1, 1] over their ranges; regl-scatterplot fits that
    square into the canvas keeping the aspect ratio (the shorter side spans [-1, 1]).
    """
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    n = 2 * (xy - lo) / (hi - lo) - 1
    half = min(box["width"], box["height"]) / 2
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    return np.stack([cx + n[:, 0] * half, cy - n[:, 1] * half], axis=1)


def _isolated(pts: np.ndarray, margin: float = 25) -> int:
    """A point far from the others (a click there hits only it), away from the canvas edge."""
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    gap = d.min(axis=1)
    inside = (pts[:, 0] > pts[:, 0].min() + margin) & (pts[:, 1] > pts[:, 1].min() + margin)
    return int(np.argmax(np.where(inside, gap, -1)))


def _grid(page, css: str) -> list[int]:
    return page.eval_on_selector_all(
        f".{css} .wb-tile", "els => els.map(e => Number(e.dataset.index))"
    )


def _wait_grid(page, css: str, first: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    got: list[int] = []
    while time.monotonic() < deadline:
        got = _grid(page, css)
        if got and got[0] == first:
            return got
        page.wait_for_timeout(200)
    return got


def _map_canvas(page):
    canvas = page.locator("canvas").filter(visible=True).first
    canvas.wait_for(timeout=120_000)
    page.wait_for_timeout(1500)  # the first frame
    box = canvas.bounding_box()
    assert box and box["width"] > 150 and box["height"] > 150, box
    return canvas, box


def _hover_and_click(page, pts: np.ndarray, nn: list[list[int]], shots: Path, tag: str) -> int:
    p = _isolated(pts)
    x, y = pts[p]
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    deadline = time.monotonic() + 40
    tip, again = None, time.monotonic() + 8
    while time.monotonic() < deadline and not (tip and str(p) in tip.split()):
        tip = page.evaluate(_TOOLTIP_JS)
        page.wait_for_timeout(200)
        if time.monotonic() > again:  # a request sent while the kernel was busy: hover again
            page.mouse.move(x - 30, y - 30)
            page.mouse.move(x, y, steps=5)
            again = time.monotonic() + 8
    page.screenshot(path=str(shots / f"{tag}_hover.png"))
    assert tip is not None, "no tooltip with an image preview on hover"
    assert "Index" in tip and str(p) in tip.split(), f"hovered #{p}, the tooltip says {tip!r}"
    page.mouse.click(x, y)
    got = _wait_grid(page, "wb-neighbors", p)
    assert got == nn[p][:7], f"clicked #{p}: grid {got}, want {nn[p][:7]}"
    page.mouse.move(5, 5)  # off the map: the tooltip closes
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / f"{tag}_click.png"))
    return p


def test_map_click_lasso_hover_in_jupyterlab_and_voila(lab, tmp_path):  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    from playwright.sync_api import sync_playwright

    base, token = lab
    root = tmp_path / "notebooks"  # what the lab fixture serves
    _write_notebook(root)
    shots = tmp_path / "shots"
    shots.mkdir()
    DOCS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        try:
            open_notebook(page, base, token, NOTEBOOK)
            page.evaluate(
                "() => window.jupyterapp.commands.execute('application:toggle-left-area')"
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            deadline = time.monotonic() + 300
            state = None
            while time.monotonic() < deadline:
                state = page.evaluate(_CELLS_JS)
                if state and (state["errors"] or (all(c is not None for c in state["counts"])
                                                  and state["kernel"] == "idle")):  # fmt: skip
                    break
                time.sleep(1)
            assert state and not state["errors"], state
            info = json.loads((root / "map_test.json").read_text())
            assert info["error"] == ""
            xy, nn = np.asarray(info["xy"]), info["nn"]
            page.locator(".jp-OutputArea-output").first.evaluate(
                "e => e.scrollIntoView({block: 'start'})"
            )
            canvas, box = _map_canvas(page)
            pts = _screen_points(xy, box)
            _hover_and_click(page, pts, nn, shots, "lab")
            out = page.locator(".jp-OutputArea-output").first
            ob = out.bounding_box()
            assert ob is not None
            clip = {"x": ob["x"], "y": ob["y"], "width": min(ob["width"], 1280 - ob["x"]),
                    "height": min(ob["height"], 900, 1400 - ob["y"])}  # fmt: skip
            page.screenshot(path=str(shots / "widget_embeddings.png"), clip=clip)
            _shrink(shots / "widget_embeddings.png", DOCS / "widget_embeddings.png")
            body = page.inner_text("body")
            assert "in common with comparison" in body  # the compared embedding's grid too

            # lasso a rectangle around the middle of the map
            c = pts[np.argmin(((pts - np.median(pts, axis=0)) ** 2).sum(1))]
            half = 40
            inner = np.all(np.abs(pts - c) < half - 4, axis=1)
            outer = np.all(np.abs(pts - c) < half + 4, axis=1)
            corners = [(-half, -half), (half, -half), (half, half), (-half, half), (-half, -half)]
            # the map's toolbar: pan & zoom, lasso, ... (the first buttons of the output)
            buttons = page.locator(".jp-OutputArea-output").first.locator("button")
            buttons.nth(1).click()  # "Activate lasso selection"
            page.mouse.move(c[0] + corners[0][0], c[1] + corners[0][1])
            page.mouse.down()
            for (ax, ay), (bx, by) in zip(corners, corners[1:]):
                for t in np.linspace(0, 1, 8)[1:]:
                    page.mouse.move(c[0] + ax + t * (bx - ax), c[1] + ay + t * (by - ay))
                    page.wait_for_timeout(20)
            page.mouse.up()
            deadline = time.monotonic() + 20
            got: list[int] = []
            while time.monotonic() < deadline and not got:
                got = _grid(page, "wb-selection")
                page.wait_for_timeout(200)
            want_in, want_out = set(np.flatnonzero(inner)), set(np.flatnonzero(outer))
            assert want_in <= set(got) <= want_out, (sorted(got), sorted(want_in))
            assert f"{len(got)} images selected" in page.inner_text("body")
            assert "label make-up" in page.inner_text("body")
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "lab_lasso.png"))
            buttons.nth(0).click()  # back to pan & zoom
            for name in ("hover", "click", "lasso"):
                _shrink(shots / f"lab_{name}.png", DOCS / f"map_{name}.png", width=1100)

            # Voila, the server of `workbench app`
            _voila_click(browser, root, tmp_path, shots)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def _voila_click(browser, root: Path, tmp_path: Path, shots: Path) -> None:
    from workbench.app import voila_command

    port = _free_port()
    cmd = voila_command(root / NOTEBOOK, port=port, open_browser=False)
    log_path = tmp_path / "voila.log"
    env = dict(os.environ, MPLBACKEND="Agg", JUPYTER_RUNTIME_DIR=str(tmp_path / "voila_rt"))
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            _wait_http(f"http://127.0.0.1:{port}/", proc, 120, log_path)
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.goto(f"http://127.0.0.1:{port}/", timeout=240_000)
            canvas, box = _map_canvas(page)
            info = json.loads((root / "map_test.json").read_text())
            pts = _screen_points(np.asarray(info["xy"]), box)
            # The tooltip's preview and values come from the kernel on demand, as in JupyterLab.
            _hover_and_click(page, pts, info["nn"], shots, "voila")
            _shrink(shots / "voila_click.png", DOCS / "map_voila.png", width=1100)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
