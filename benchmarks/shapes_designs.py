"""Screen candidate designs of the `shapes` generator for the augmentations lesson (#17 item 1).

A design is a set of generator parameters (palette, background, sizes, outline deformation). For
each, the random-init ResNet-18 is scored at once (3 seeds, seconds), then SimCLR is trained on one
seed at the notebook's settings but fewer epochs (a screen, not the lesson's measurement: that is
``shapes_lesson.py``, 3 seeds at 30 epochs, on the generator in ``workbench.data``):

    python benchmarks/shapes_designs.py --designs v4 v6 --epochs 10 --runs jitter nojitter
    python benchmarks/shapes_designs.py --designs v6 --random-only

kNN k=20 by shape and by colour on a stratified held-out 20 % (the notebook's convention). Each
trained screen appends a line to results/shapes_designs.jsonl; the findings are written up in
results/shapes_lesson_trials.md.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from shapes_lesson import NO_COLOUR, knn_by  # noqa: E402  (the lesson's scorer: k=20, held-out 20 %)

# Hues in degrees; bg: background grey range; noise: its pixel noise std; sat/val: HSV ranges of
# the fill; r: circumradius range (fraction of the side); luma: give every colour this grey level
# (grayscale then removes the colour; v5's red clips at 0.455, the other five are at 0.6);
# wobble: low-frequency radial deformation of the outline (unique per image); stretch:
# aspect-ratio range (1 / s .. s); count: how many shapes (all of the image's class and colour,
# not overlapping) an image holds, drawn uniformly from this range; glyph: the image's shapes
# share one outline (one deformation per image, repeated) instead of one deformation per shape;
# tile: a wallpaper of the glyph, n (drawn from this range, not an integer) periods across, at
# a random phase: crops translate and zoom it, so they remove its only layout cues;
# grid: lay the shapes out on an n x n grid (n drawn from this range, r a fraction of the cell,
# each centre moved at random as far as its shape stays in its cell) instead of at random places;
# family: each class is a family of outlines with its own continuous parameter, drawn per image
# (star inner radius, cross arm width, rectangle aspect, triangle apex, hexagon's alternate
# vertices; the circle stays round), so the instance cue lies within the class's own family.
_BASE: dict[str, Any] = dict(hues=(0, 12, 24, 36, 48, 60), r=(0.30, 0.45), bg=(80, 170),
                             noise=4.0, sat=(0.75, 1.0), val=(0.75, 1.0), hue_noise=2.0,
                             luma=None, wobble=0.0, stretch=1.0, count=(1, 1), glyph=False,
                             grid=None, family=False, tile=None)  # fmt: skip
_V4 = dict(_BASE, bg=(120, 136), noise=0.0, sat=(0.8, 0.8), val=(0.9, 0.9), hue_noise=1.0,
           r=(0.2, 0.45))  # fmt: skip
_V5 = dict(_V4, hues=(0, 24, 48, 72, 96, 120), bg=(50, 60), sat=(0.85, 0.85), val=(1.0, 1.0),
           luma=0.6)  # fmt: skip
# hues 6 degrees apart, which the jitter's +-36 swaps
_NARROW = dict(_V4, hues=(0, 6, 12, 18, 24, 30), hue_noise=0.5)
_V14 = dict(_NARROW, r=(0.3, 0.38), tile=(2.0, 4.0), family=True, glyph=True)
DESIGNS: dict[str, dict[str, Any]] = {
    "v3": dict(_BASE, r=(0.2, 0.45)),  # narrow hue band (60 degrees), grey backgrounds
    "v4": _V4,  # v3 with one plain background level and one saturation and value
    "v5": _V5,  # equal-luminance palette over 120 degrees on a dark background
    "v6": dict(_V5, r=(0.25, 0.45), wobble=0.12, stretch=1.3),  # v5 + a unique outline each
    # v4's plain background and palette with 2-4 smaller shapes: every crop holds the class, and
    # the layout (not the colour) tells images apart
    "v7": dict(_V4, r=(0.12, 0.22), count=(2, 4)),
    "v8": dict(_V4, r=(0.16, 0.28), count=(2, 3)),  # v7 with fewer, larger shapes
    # the instance cue should *be* a shape, as a writer's hand is in digits: each image repeats
    # one outline of its class, deformed once per image, so every crop holds the image's glyph
    "v9": dict(_V4, r=(0.14, 0.22), count=(2, 4), wobble=0.15, stretch=1.3, glyph=True),
    "v10": dict(_V4, r=(0.28, 0.4), grid=(2, 3), wobble=0.15, stretch=1.3, glyph=True),
    # the writer's hand made class-specific: each class varies along its own parameter
    "v11": dict(_V4, r=(0.3, 0.45), family=True),  # one large shape
    "v12": dict(_V4, r=(0.14, 0.22), count=(2, 4), family=True, glyph=True),  # v9's layout
    # colour stays the instance cue under jitter while the palette spans 60 degrees (v10): the
    # narrow palette on v10's grid (no layout cue)
    "v13": dict(_NARROW, r=(0.28, 0.4), grid=(2, 3), family=True, glyph=True),
    # v13 again puts shape below random init: the grid's cell jitter, count and radius are
    # instance cues that crops keep. A wallpaper's period and phase are what crops change
    "v14": _V14,
    # v14 + nuisances the jitter removes (background level, the fill's saturation and value),
    # which random features read; and v14 with larger glyphs (more of each outline's detail)
    "v15": dict(_V14, bg=(90, 170), sat=(0.6, 1.0), val=(0.6, 1.0)),
    "v16": dict(_V14, tile=(1.5, 3.0)),
}
# crop0.5: crops of at least half the image (what BYOL and Barlow Twins needed on 8x8 digits
# at 32 px), so that a crop keeps the shape
RUNS: dict[str, dict[str, Any] | None] = {
    "jitter": None, "nojitter": NO_COLOUR, "jitter-strength1": {"cj_strength": 1.0},
    "jitter-crop0.5": {"crop_scale": (0.5, 1.0)},
    "nojitter-crop0.5": {**NO_COLOUR, "crop_scale": (0.5, 1.0)},
}  # fmt: skip


def make(design: dict[str, Any], n: int = 1500, size: int = 32, seed: int = 0) -> Any:
    """(ImageDataset labelled by shape, shape index, colour index) for one design."""
    from PIL import Image, ImageDraw, ImageFilter

    from workbench.data.builtin import SHAPES
    from workbench.data.dataset import ImageDataset

    d = dict(_BASE, **design)
    rng = np.random.default_rng(seed)
    ss = 4 * size
    si = rng.integers(len(SHAPES), size=n)
    ci = rng.integers(len(d["hues"]), size=n)
    images = []
    for i in range(n):
        level = rng.uniform(*d["bg"])
        arr = np.clip(level + rng.normal(0, d["noise"], (ss, ss, 1)), 0, 255).repeat(3, 2)
        im = Image.fromarray(arr.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(im)
        places = (_tile(rng, d, ss) if d["tile"] else _grid(rng, d, ss) if d["grid"]
                  else _placements(rng, d, ss))  # fmt: skip
        kind = SHAPES[si[i]]
        deformed = d["wobble"] != 0 or d["stretch"] != 1.0 or d["family"]
        glyph = _outline(rng, d, kind) if d["glyph"] else None
        hue = (d["hues"][ci[i]] + rng.uniform(-d["hue_noise"], d["hue_noise"])) / 360 % 1
        rgb = colorsys.hsv_to_rgb(hue, rng.uniform(*d["sat"]), rng.uniform(*d["val"]))
        if d["luma"] is not None:
            y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
            rgb = tuple(min(1.0, c * d["luma"] / y) for c in rgb)
        fill = tuple(int(255 * v) for v in rgb)
        for rad, cx, cy in places:
            outline = glyph if glyph is not None else _outline(rng, d, kind) if deformed else None
            _draw(draw, kind, rad, cx, cy, fill, outline)
        images.append(im.filter(ImageFilter.BoxBlur(1)).resize((size, size), Image.LANCZOS))
    ds = ImageDataset("shapes-design", images=images, labels=si,
                      class_names=list(SHAPES))  # fmt: skip
    return ds, si, ci


def _placements(rng: Any, d: dict[str, Any], ss: int) -> list[tuple[float, float, float]]:
    """(radius, cx, cy) of each shape: inside the canvas, not overlapping (50 tries each)."""
    lo, hi = d["count"]
    want = int(rng.integers(lo, hi + 1)) if hi > lo else lo
    out: list[tuple[float, float, float]] = []
    for _ in range(want):
        for _try in range(50):
            rad = rng.uniform(*d["r"]) * ss
            cx, cy = rng.uniform(rad, ss - rad, 2)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (rad + r) ** 2 for r, x, y in out):
                out.append((rad, cx, cy))
                break
    return out


def _grid(rng: Any, d: dict[str, Any], ss: int) -> list[tuple[float, float, float]]:
    """(radius, cx, cy) on an n x n grid: one radius per image, centres jittered in their cell."""
    n = int(rng.integers(d["grid"][0], d["grid"][1] + 1))
    cell = ss / n
    rad = rng.uniform(*d["r"]) * cell
    out = []
    for gy in range(n):
        for gx in range(n):
            j = rng.uniform(-1, 1, 2) * max(0.0, cell / 2 - rad)
            out.append((rad, (gx + 0.5) * cell + j[0], (gy + 0.5) * cell + j[1]))
    return out


def _tile(rng: Any, d: dict[str, Any], ss: int) -> list[tuple[float, float, float]]:
    """(radius, cx, cy) of a wallpaper: a square lattice at a random period and phase, with
    the copies the canvas edge cuts."""
    period = ss / rng.uniform(*d["tile"])
    rad = rng.uniform(*d["r"]) * period
    x0, y0 = rng.uniform(0, period, 2)
    k = int(ss / period) + 2
    return [(rad, x0 + i * period, y0 + j * period) for j in range(-1, k) for i in range(-1, k)]


def _draw(draw: Any, kind: str, rad: float, cx: float, cy: float, fill: tuple[int, ...],
          outline: Any) -> None:  # fmt: skip
    """One shape: the plain ``kind`` when ``outline`` is None, else that unit outline."""
    from workbench.data.builtin import _polygon

    if outline is not None:
        draw.polygon([(cx + rad * x, cy + rad * y) for x, y in outline], fill=fill)
    elif kind == "circle":
        draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=fill)
    else:
        draw.polygon(_polygon(kind, cx, cy, rad, 0.0), fill=fill)


def _outline(rng: Any, d: dict[str, Any], kind: str) -> Any:
    """A unit outline of ``kind``, deformed by ``wobble`` and ``stretch``: (K, 2) points."""
    from workbench.data.builtin import _polygon

    if d["family"]:
        pts = _family(rng, kind)
    elif kind == "circle":
        pts = _circle()
    else:
        pts = np.array(_polygon(kind, 0, 0, 1, 0.0))
    th = np.arctan2(pts[:, 1], pts[:, 0])
    a, ph = rng.uniform(-d["wobble"], d["wobble"], 3), rng.uniform(0, 2 * np.pi, 3)
    f = 1 + sum(a[j] * np.cos(k * th + ph[j]) for j, k in enumerate((2, 3, 5)))
    sx = np.exp(rng.uniform(-np.log(d["stretch"]), np.log(d["stretch"])))
    pts = pts * f[:, None] * np.array([sx, 1 / sx])
    return pts / max(float(np.abs(pts).max()), 1.0)


def _circle(k: int = 40) -> Any:
    th = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return np.stack([np.cos(th), np.sin(th)], 1)


def _family(rng: Any, kind: str) -> Any:
    """A unit outline of ``kind`` with its class's own parameter drawn at random: (K, 2)."""
    if kind == "circle":
        return _circle()
    if kind == "square":  # a rectangle, aspect 1-1.8, lying or standing
        a = rng.uniform(1.0, 1.8) ** (1 if rng.random() < 0.5 else -1)
        return np.array([(-a, -1), (a, -1), (a, 1), (-a, 1)]) / max(a, 1.0)
    if kind == "triangle":  # the apex moves sideways: isosceles to scalene
        return np.array([(rng.uniform(-0.7, 0.7), -1), (1, 0.8), (-1, 0.8)])
    if kind == "star":  # five points, inner radius 0.3-0.6
        q = rng.uniform(0.3, 0.6)
        th = np.arange(10) * np.pi / 5 - np.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, q)
        return np.stack([rad * np.cos(th), rad * np.sin(th)], 1)
    if kind == "cross":  # arm half-width 0.18-0.42
        w = rng.uniform(0.18, 0.42)
        return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                         (-w, w), (-1, w), (-1, -w), (-w, -w)])  # fmt: skip
    if kind == "hexagon":  # every other vertex pulled in to 0.7-1.0
        q = rng.uniform(0.7, 1.0)
        th = np.arange(6) * np.pi / 3
        rad = np.where(np.arange(6) % 2 == 0, 1.0, q)
        return np.stack([rad * np.cos(th), rad * np.sin(th)], 1)
    raise ValueError(kind)


def _scores(model: Any, ds: Any, si: np.ndarray, ci: np.ndarray, seed: int) -> list[float]:
    import workbench as wb

    f = wb.embed(model.eval(), ds, input_size=32).features
    return [knn_by(f, si, seed), knn_by(f, ci, seed)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1500, help="images per design")
    p.add_argument("--model", default="resnet18", help="the backbone (the notebook's: resnet18)")
    p.add_argument("--runs", nargs="+", default=["jitter", "nojitter"], choices=RUNS)
    p.add_argument("--random-only", action="store_true", help="score random init only")
    args = p.parse_args()
    import torch

    import workbench as wb

    for name in args.designs:
        ds, si, ci = make(DESIGNS[name], n=args.n)
        rand = []
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            rand.append(_scores(wb.get_backbone(args.model, input_size=32)[0], ds, si, ci, seed))
        m = np.mean(rand, axis=0)
        print(f"{name} ({args.model}): random init, 3 seeds: shape {m[0]:.3f} "
              f"colour {m[1]:.3f}", flush=True)  # fmt: skip
        if args.random_only:
            continue
        seed = args.seed
        res: dict[str, Any] = {"random": rand[seed]}
        curves: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for run_name in args.runs:
                t = time.perf_counter()
                run = wb.train(ds, out=Path(tmp) / run_name, method="simclr", model=args.model,
                               epochs=args.epochs, batch_size=128, input_size=32, seed=seed,
                               transform_args=RUNS[run_name])  # fmt: skip
                res[run_name] = _scores(run.backbone, ds, si, ci, seed)
                curves[run_name] = [round(h.get("knn_acc") or 0, 3) for h in run.history]
                print(f"  {run_name}: shape {res[run_name][0]:.3f} colour {res[run_name][1]:.3f}"
                      f" ({time.perf_counter() - t:.0f} s); per-epoch shape kNN "
                      f"{curves[run_name]}", flush=True)  # fmt: skip
        line = {"name": name, "kw": DESIGNS[name], "n": args.n, "model": args.model,
                "epochs": args.epochs, "seed": seed,
                "res": res, "shape_knn_per_epoch": curves, "machine": common.machine()}  # fmt: skip
        with (common.RESULTS / "shapes_designs.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
