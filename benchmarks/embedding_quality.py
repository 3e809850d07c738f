"""Does pretraining beat a random-init backbone? The trained run's map next to random init's.

Opens the EmbeddingExplorer (headless) on a run with ``compare="random"`` and a UMAP map, as a user
would, and saves what it shows: the side-by-side map (with each embedding's leave-one-out kNN in
the panel titles) and a nearest-neighbour grid. It also scores both backbones on the run's own
held-out split (train-split bank, held-out queries, k=200, t=0.1), the figure wb.train monitors.

Usage:
    python benchmarks/embedding_quality.py --run runs/simclr-digits-30   # an existing run
    python benchmarks/embedding_quality.py --epochs 30                   # train one first (~3 min)

Writes benchmarks/results/embedding_quality.json/.md, embedding_trained_vs_random_digits.png and
embedding_neighbors_digits.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# WORKBENCH_BENCH_RESULTS redirects the outputs (the tests write into a temporary folder).
RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="an existing run folder")
    p.add_argument("--epochs", type=int, default=30, help="epochs when training a new run")
    p.add_argument("--method", default="simclr")
    p.add_argument("--data", default="digits")
    p.add_argument("--reducer", default="umap", choices=["umap", "pca", "tsne"])
    p.add_argument("--select", type=int, default=0, help="image whose neighbours are shown")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="1 epoch, PCA, run kept under --out-dir")
    args = p.parse_args()
    if args.quick:
        args.epochs, args.reducer = 1, "pca"

    import workbench as wb
    from workbench.eval.embedding import random_init_like

    t0 = time.perf_counter()
    if args.run is not None:
        run = wb.load_run(args.run)
    else:
        runs_root = args.out_dir / "runs" if args.quick else "runs"
        run = wb.train(args.data, method=args.method, epochs=args.epochs, runs_root=runs_root)
    train_minutes = (time.perf_counter() - t0) / 60
    cfg = run.config
    ds = wb.load_dataset(cfg["data"])

    # The held-out figure, as wb.train's monitor computes it (same split, same preprocessing).
    split = {k: cfg[k] for k in ("input_size", "seed", "val_fraction", "mean", "std")}
    random_init = random_init_like(run.backbone, cfg)
    split_knn = {
        name: common.heldout_knn(model, ds, **split)
        for name, model in (("trained", run.backbone), ("random init", random_init))
    }

    t1 = time.perf_counter()
    ex = wb.EmbeddingExplorer(run, data=cfg["data"], compare="random", reducer=args.reducer,
                              background=False)  # fmt: skip
    ex.select(args.select)
    explorer_s = time.perf_counter() - t1
    if ex.error:
        raise SystemExit(f"EmbeddingExplorer reported an error: {ex.error}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tag = cfg["data"] if isinstance(cfg["data"], str) else "data"
    map_png = args.out_dir / f"embedding_trained_vs_random_{tag}.png"
    nb_png = args.out_dir / f"embedding_neighbors_{tag}.png"
    # The explorer's map is drawn in the browser; the PNGs come from workbench.plots.
    from workbench.plots.common import figure_to_png, new_figure
    from workbench.plots.embeddings import embedding_map, neighbor_grid

    emb = ex.embeddings
    fig = new_figure(14.0, 5.2)
    for ax, xy, name in zip(fig.subplots(1, 2), (ex.projection, ex.compare_projection), ex.names):
        hl = [args.select, *ex.neighbor_indices.tolist()]
        embedding_map(xy, emb.labels, emb.class_names, highlight=hl, ax=ax,
                      title=f"{name} ({ex.projection_method.upper()})")  # fmt: skip
    map_png.write_bytes(figure_to_png(fig))
    lab = emb.labels
    nb_labels = None if lab is None else lab[ex.neighbor_indices]
    query_label = None if lab is None else int(lab[args.select])
    grid = neighbor_grid(ex.neighbor_images, ex.neighbor_distances, nb_labels, emb.class_names,
                         query_image=ds[args.select][0], query_label=query_label)  # fmt: skip
    nb_png.write_bytes(figure_to_png(grid))
    row = {
        "run": str(run.out),
        "method": cfg["method"],
        "model": cfg["model"],
        "epochs": cfg["epochs"],
        "data": cfg["data"],
        "input_size": cfg["input_size"],
        "seed": cfg["seed"],
        "heldout_knn_top1": {k: round(float(v), 4) for k, v in split_knn.items()},
        "leave_one_out_knn_top1": {
            "trained": round(ex.knn["top1"], 4),
            "random init": round(ex.compare_knn["top1"], 4),
        },
        "reducer": args.reducer,
        "explorer_seconds": round(explorer_s, 1),
        "train_minutes": round(train_minutes, 1) if args.run is None else None,
        "figures": [map_png.name, nb_png.name],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "torch": cfg["versions"]["torch"],
    }
    (args.out_dir / "embedding_quality.json").write_text(json.dumps(row, indent=2))
    h, loo = row["heldout_knn_top1"], row["leave_one_out_knn_top1"]
    md = [
        f"# Trained vs random init on {tag}: kNN top-1 and the map",
        "",
        f"Produced by `python benchmarks/embedding_quality.py` on {row['date']} "
        f"({cfg['method']}, {cfg['model']}, {cfg['epochs']} epochs, {cfg['input_size']} px, "
        f"seed {cfg['seed']}, torch {row['torch']}, CPU).",
        "",
        "| backbone | held-out kNN (k=200, t=0.1) | leave-one-out kNN (widget) |",
        "|---|---|---|",
        f"| trained | {h['trained']:.3f} | {loo['trained']:.3f} |",
        f"| random init (same architecture) | {h['random init']:.3f} | {loo['random init']:.3f} |",
        "",
        f"Map: `{map_png.name}` ({args.reducer.upper()}, the EmbeddingExplorer's own figure); "
        f"neighbours of image #{args.select}: `{nb_png.name}`. The explorer took "
        f"{explorer_s:.1f} s to embed both backbones, score them and project both maps.",
    ]
    (args.out_dir / "embedding_quality.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
