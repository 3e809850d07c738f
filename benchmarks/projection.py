"""Projection speed and quality: workbench.eval.project vs umap-learn's defaults, same run.

Usage:
    MPLBACKEND=Agg python benchmarks/projection.py [--sizes 2000 10000] [--no-digits]

Data: 512-d Gaussian mixtures (10 classes, each on its own curved 5-d manifold plus isotropic
noise, tuned so 10-NN accuracy in 512-d is ~0.9, like real SSL features) and, unless
``--no-digits``, the features of scikit-learn's 1,797 digits from a random-init
``resnet18-small`` (32 px).

Both reducers are timed warm: umap-learn is imported and its numba code compiled first (times
reported separately). Quality is the 3-fold 10-NN classification accuracy in the 2-D map, next
to the same in the original space. Writes benchmarks/results/projection.json and .md, the
digits maps (projection_digits.png) and benchmarks/results/embedding_map_random_digits.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def mixture(
    n: int, d: int = 512, classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = 0.1 * rng.normal(size=(classes, d))
    basis = rng.normal(size=(classes, 5, d)) / np.sqrt(5)
    z = rng.normal(size=(n, 5))
    x = (
        centers[y]
        + np.einsum("nk,nkd->nd", z + 0.3 * z**2, basis[y])
        + 2.0 * rng.normal(size=(n, d))
    )
    return x.astype(np.float32), y


def knn_quality(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(10), x, y, cv=3).mean())


def timed(fn, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN201
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def digits_features() -> tuple[np.ndarray, np.ndarray, list[str], float]:
    import torch

    from workbench.eval.embedding import embed
    from workbench.nn.backbones import get_backbone

    torch.manual_seed(0)
    model, _ = get_backbone("resnet18-small", input_size=32)
    emb, secs = timed(embed, model, "digits", batch_size=128)
    return emb.features, emb.labels, emb.class_names, secs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--no-digits", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from workbench.eval.projection import clear_projection_cache, project, warm_up_umap

    rec: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch threads {torch.get_num_threads()}, {platform.system()}",
        "python": platform.python_version(),
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    _, rec["umap_import_s"] = timed(__import__, "umap")
    import umap

    rec["umap_version"] = umap.__version__
    _, rec["ours_first_fit_s"] = timed(warm_up_umap, wait=True)
    # Compile umap-learn's default path too (NN-descent runs from 4,096 points up).
    warm = mixture(5000, d=32, seed=1)[0]
    _, rec["default_first_fit_s"] = timed(umap.UMAP().fit_transform, warm)

    datasets: list[tuple[str, np.ndarray, np.ndarray]] = []
    digits_names: list[str] = []
    if not args.no_digits:
        xd, yd, digits_names, rec["digits_embed_s"] = digits_features()
        datasets.append(("digits, random-init resnet18-small", xd, yd))
    for n in args.sizes:
        x, y = mixture(n)
        datasets.append((f"mixture {n}", x, y))

    rows = []
    maps = {}
    for name, x, y in datasets:
        clear_projection_cache()
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        row = {"data": name, "n": int(x.shape[0]), "d": int(x.shape[1])}
        row["knn10_highdim"] = knn_quality(xn, y)
        ours, row["ours_s"] = timed(project, x, method="umap", seed=0)
        clear_projection_cache()
        ours_par, row["ours_parallel_s"] = timed(project, x, method="umap", seed=None)
        _, row["cached_s"] = timed(project, x, method="umap", seed=None)
        default, row["default_s"] = timed(umap.UMAP().fit_transform, x)
        pca, row["pca_s"] = timed(project, x, method="pca")
        row["knn10_ours"] = knn_quality(ours, y)
        row["knn10_ours_parallel"] = knn_quality(ours_par, y)
        row["knn10_default"] = knn_quality(default, y)
        row["knn10_pca"] = knn_quality(pca, y)
        row["speedup"] = row["default_s"] / row["ours_s"]
        row["speedup_parallel"] = row["default_s"] / row["ours_parallel_s"]
        rows.append(row)
        maps[name] = (ours, default, y)
        print(json.dumps(row), flush=True)
    rec["rows"] = rows
    rec["load_average_end"] = round(os.getloadavg()[0], 2)

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "projection.json").write_text(json.dumps(rec, indent=2) + "\n")
    lines = [
        "# Projection benchmark: workbench.eval.project vs umap.UMAP() defaults",
        "",
        f"{rec['date']}, {rec['machine']}, Python {rec['python']}, umap-learn "
        f"{rec['umap_version']}. Command: `{rec['command']}`. 1-min load average "
        f"{rec['load_average_start']} at start, {rec['load_average_end']} at end (a shared "
        f"machine: a load above the core count slows both columns alike; compare ratios).",
        "",
        f"One-off costs: `import umap` {rec['umap_import_s']:.1f} s; our first fit "
        f"(warm_up_umap, JIT) {rec['ours_first_fit_s']:.1f} s; umap-learn default first fit "
        f"(5,000 x 32, JIT) {rec['default_first_fit_s']:.1f} s. Timings below are warm.",
        "",
        "| data | N x D | ours (seed=0) s | ours (seed=None) s | umap defaults s | speed-up "
        "| cached s | PCA s | 10-NN acc: D-dim / ours / defaults / PCA |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['n']} x {r['d']} | {r['ours_s']:.2f} | {r['ours_parallel_s']:.2f} "
            f"| {r['default_s']:.2f} | {r['speedup']:.1f}x ({r['speedup_parallel']:.1f}x) "
            f"| {r['cached_s']:.3f} | {r['pca_s']:.2f} | {r['knn10_highdim']:.3f} / "
            f"{r['knn10_ours']:.3f} / {r['knn10_default']:.3f} / {r['knn10_pca']:.3f} |"
        )
    lines += [
        "",
        "Targets (issue 4): 2,000 x 512 in <= 5 s warm, 10,000 x 512 in <= 15 s.",
        "Speed-up = umap defaults / ours (seed=0); in brackets / ours (seed=None, all cores).",
    ]
    (RESULTS / "projection.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    if not args.no_digits:
        from workbench.plots.common import figure_to_png, new_figure
        from workbench.plots.embeddings import embedding_map

        name = datasets[0][0]
        ours, default, y = maps[name]
        title = "digits, random-init resnet18-small: UMAP (workbench)"
        fig = embedding_map(ours, y, digits_names, point_size=8, title=title)
        (RESULTS / "embedding_map_random_digits.png").write_bytes(figure_to_png(fig))
        fig = new_figure(12, 5)
        a, b = fig.subplots(1, 2)
        r = rows[0]
        embedding_map(
            ours,
            y,
            digits_names,
            ax=a,
            point_size=6,
            title=f"workbench.project {r['ours_s']:.1f} s, 10-NN {r['knn10_ours']:.2f}",
        )
        embedding_map(
            default,
            y,
            digits_names,
            ax=b,
            point_size=6,
            title=f"umap.UMAP() {r['default_s']:.1f} s, 10-NN {r['knn10_default']:.2f}",
        )
        (RESULTS / "projection_digits.png").write_bytes(figure_to_png(fig))


if __name__ == "__main__":
    main()
