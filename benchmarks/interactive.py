"""Interactive latencies: import, augmentation preview redraw, projections, kNN on 10k x 512.

Each figure has a reference measured in the same run:

- ``import workbench`` (fresh interpreter, best of ``--imports``) vs ``import torch`` (what any
  torch-based tool pays) and vs importing Lightly's building blocks (``lightly.transforms``,
  ``lightly.loss``, ``lightly.models.modules``; ``import lightly`` alone loads nothing).
- AugmentationExplorer redraw (control change -> new PNG; the setting of preview_latency.py:
  6 photos x 4 simclr views at 64 px) vs the same preview through matplotlib.
- ``workbench.eval.project`` (pca, umap; cosine) on N x 512 clustered features vs
  ``umap.UMAP(metric="cosine")`` / ``sklearn.decomposition.PCA`` called directly. UMAP's first fit
  in a process pays numba's compilation: the cold figure is reported apart from the warm ones.
- ``workbench.eval.knn_accuracy`` (k=200, t=0.1, cosine) with a 10k x 512 bank and 10k queries vs
  scikit-learn's ``KNeighborsClassifier(200, metric="cosine", algorithm="brute")``.

Usage:
    MPLBACKEND=Agg .venv/bin/python benchmarks/interactive.py [--sizes 2000 10000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

CODE = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"


IMPORTS = {
    "workbench": "workbench",
    "torch": "torch",
    "lightly_blocks": "lightly.transforms, lightly.loss, lightly.models.modules",
}


def _import_seconds(modules: str) -> float:
    """Wall time of ``import <modules>`` in a fresh interpreter (start-up excluded)."""
    proc = subprocess.run(
        [sys.executable, "-c", CODE.format(m=modules)],
        capture_output=True,
        text=True,
        cwd=str(common.ROOT),
        env={**os.environ, "PYTHONPATH": str(common.ROOT)},
        check=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _features(n: int, d: int = 512, classes: int = 10, seed: int = 0) -> tuple[Any, Any]:
    """Clustered features (N, d) float32 with labels, like SSL embeddings of a labelled set."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = centres[y] + 1.5 * rng.normal(size=(n, d)).astype(np.float32)
    return x, y


def _preview(changes: int) -> dict[str, Any]:
    import torch  # noqa: F401

    import workbench as wb
    from workbench.augment.transforms import torch_threads
    from workbench.plots.augment import augmentation_grid
    from workbench.plots.common import figure_to_png
    from workbench.widgets import AugmentationExplorer

    photos = wb.load_dataset("photos")
    images = [photos.image(i % len(photos)) for i in range(6)]
    ex = AugmentationExplorer(images, method="simclr", n_images=6, input_size=64, count=4)
    steps = [
        ("view_cj_prob", [0.5, 0.8]),
        ("view_crop_scale", [(0.3, 1.0), (0.08, 1.0)]),
        ("view_gray_prob", [0.6, 0.2]),
        ("view_blur_prob", [1.0, 0.5]),
        ("view_cj_strength", [1.0, 0.5]),  # 0.5 is the default at <= 64 px
        ("view_hflip_prob", [1.0, 0.5]),
    ]
    for v in (0.7, 0.8):  # warm-up: first-call costs (fonts, dispatch caches)
        ex.controls["view_cj_prob"].value = v
    ours, ref = [], []
    for i in range(changes):  # alternate: one widget redraw, one matplotlib render
        key, values = steps[i % len(steps)]
        before = ex.preview.value
        t0 = time.perf_counter()
        ex.controls[key].value = values[(i // len(steps)) % 2]
        ours.append(time.perf_counter() - t0)
        if ex.error.value or ex.preview.value == before:
            raise RuntimeError(f"preview did not redraw for {key}: {ex.error.value}")
        t0 = time.perf_counter()
        with torch_threads(1):
            figure_to_png(augmentation_grid(images, ex.transform, seed=i))
        ref.append(time.perf_counter() - t0)
    return {
        "setting": "6 photos x 4 simclr views at 64 px",
        "redraw_median_ms": 1000 * common.median(ours),
        "matplotlib_median_ms": 1000 * common.median(ref),
        "ratio_matplotlib/ours": common.median(ref) / common.median(ours),
        "changes": changes,
    }


def _projection(sizes: list[int], repeats: int, umap_ref: bool, ref_max: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    from workbench.eval.projection import clear_projection_cache, project

    out: dict[str, Any] = {}
    x0, _ = _features(500, seed=99)
    t0 = time.perf_counter()
    project(x0, method="umap")
    out["umap_cold_s"] = time.perf_counter() - t0  # numba compilation on first use
    if umap_ref:
        import umap

        t0 = time.perf_counter()
        umap.UMAP(metric="cosine", random_state=0).fit_transform(x0)
        out["umap_learn_cold_s"] = time.perf_counter() - t0  # its own code paths compile too
    for n in sizes:
        x, _ = _features(n)
        xn = x / (1e-12 + (x**2).sum(1, keepdims=True) ** 0.5)
        res: dict[str, Any] = {}

        def ours_pca(x: Any = x) -> None:
            clear_projection_cache()
            project(x, method="pca")

        def ours_umap(x: Any = x) -> None:
            clear_projection_cache()
            project(x, method="umap")

        res["pca_s"] = common.median(_timed(ours_pca, repeats))
        res["sklearn_pca_s"] = common.median(
            _timed(lambda xn=xn: PCA(2, random_state=0).fit_transform(xn), repeats)
        )
        res["umap_s"] = common.median(_timed(ours_umap, 1 if n > 5000 else repeats))
        if umap_ref and n <= ref_max:
            import umap

            res["umap_learn_default_s"] = common.median(
                _timed(lambda x=x: umap.UMAP(metric="cosine", random_state=0).fit_transform(x), 1)
            )
            res["ratio_umap_learn/ours"] = res["umap_learn_default_s"] / res["umap_s"]
        out[f"{n}x512"] = res
    return out


def _knn(n: int, repeats: int) -> dict[str, Any]:
    from sklearn.neighbors import KNeighborsClassifier

    from workbench.eval import knn_accuracy

    feats, labels = _features(2 * n, seed=1)  # one draw: queries share the bank's classes
    x, y, q, qy = feats[:n], labels[:n], feats[n:], labels[n:]
    acc: list[float] = []
    ours = _timed(lambda: acc.append(knn_accuracy(x, y, q, qy, k=200, temperature=0.1)), repeats)

    def ref() -> None:
        clf = KNeighborsClassifier(200, metric="cosine", algorithm="brute", weights="distance")
        clf.fit(x, y).score(q, qy)

    sk = _timed(ref, repeats)
    return {
        "bank": f"{n}x512",
        "queries": n,
        "knn_accuracy_s": common.median(ours),
        "sklearn_knn_s": common.median(sk),
        "ratio_sklearn/ours": common.median(sk) / common.median(ours),
        "top1": acc[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    p.add_argument(
        "--umap-reference-max", type=int, default=2000, help="largest N for umap-learn direct"
    )
    p.add_argument("--knn-size", type=int, default=10000)
    p.add_argument("--imports", type=int, default=3, help="fresh interpreters per import")
    p.add_argument("--changes", type=int, default=12, help="preview control changes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-umap-reference", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    args = p.parse_args()
    if args.quick:
        # 6 changes: every control of the preview step list once, so none can rot
        args.sizes, args.knn_size, args.imports, args.changes, args.repeats = [300], 500, 1, 6, 1
    os.environ.setdefault("MPLBACKEND", "Agg")

    data: dict[str, Any] = {"benchmark": "interactive", "settings": vars(args).copy()}
    imports: dict[str, list[float]] = {k: [] for k in IMPORTS}
    for _ in range(args.imports):  # alternate the interpreters
        for name, mods in IMPORTS.items():
            imports[name].append(_import_seconds(mods))
    data["import"] = {f"{k}_best_s": min(v) for k, v in imports.items()}
    data["import"]["ratio_torch/workbench"] = min(imports["torch"]) / min(imports["workbench"])
    print("import", json.dumps(data["import"]), flush=True)
    data["preview"] = _preview(args.changes)
    print("preview", json.dumps(data["preview"]), flush=True)
    data["knn"] = _knn(args.knn_size, args.repeats)
    print("knn", json.dumps(data["knn"]), flush=True)
    data["projection"] = _projection(
        args.sizes, args.repeats, not args.no_umap_reference, args.umap_reference_max
    )
    print("projection", json.dumps(data["projection"]), flush=True)
    data["machine"] = common.machine()
    path = common.write_json(args.out or "interactive" + ("_quick" if args.quick else ""), data)
    print(f"wrote {path}")
    if not args.quick:
        print(f"wrote {common.render()}")


if __name__ == "__main__":
    main()
