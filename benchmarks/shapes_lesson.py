"""The augmentations lesson on `shapes`: SimCLR with and without colour jitter, kNN by shape/colour.

What notebook 02 teaches, measured at its normal settings over several seeds: a backbone
pretrained with colour jitter keeps shape and loses colour; one pretrained without jitter keeps
colour. The random-init backbone (same architecture, same seed) is measured in the same run.

Usage:
    python benchmarks/shapes_lesson.py                    # 1,500 images, 32 px, 30 epochs, 3 seeds
    python benchmarks/shapes_lesson.py --seeds 0 --epochs 10 --tag trial
    python benchmarks/shapes_lesson.py --quick            # tiny settings (CI smoke test)

Appends one JSON object per (seed, settings) to benchmarks/results/shapes_lesson.jsonl (so a long
run can stop and go on, one seed at a time) and rewrites benchmarks/results/shapes_lesson.md from
it. Design trials of the generator are recorded in benchmarks/results/shapes_lesson_trials.md.
kNN: k=20, cosine, t=0.1, on a stratified held-out 20 % (the notebook's convention).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import workbench as wb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# WORKBENCH_BENCH_RESULTS redirects the outputs (the tests write into a temporary folder).
RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))
NO_COLOUR = {"cj_prob": 0.0, "gray_prob": 0.0}  # the notebook's "without colour jitter"


def knn_by(features: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """kNN top-1 (k=20) on a stratified held-out 20 % of ``labels``."""
    train_idx, test_idx = wb.stratified_split(labels, val_fraction=0.2, seed=seed)
    return float(
        wb.knn_accuracy(
            features[train_idx], labels[train_idx], features[test_idx], labels[test_idx], k=20
        )
    )


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import torch

    by_shape = wb.load_dataset("shapes", n=args.n, image_size=args.input_size, label_by="shape")
    by_color = wb.load_dataset("shapes", n=args.n, image_size=args.input_size, label_by="color")
    common_kw: dict[str, Any] = dict(
        method="simclr", model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        input_size=args.input_size, seed=seed,
    )  # fmt: skip
    torch.manual_seed(seed)
    random_backbone, _ = wb.get_backbone(args.model, input_size=args.input_size)
    models: dict[str, Any] = {"random init": random_backbone.eval()}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, targs in (("with colour jitter", None), ("without colour jitter", NO_COLOUR)):
            t = time.perf_counter()
            run = wb.train(by_shape, out=Path(tmp) / name.replace(" ", "-"),
                           transform_args=targs, **common_kw)  # fmt: skip
            seconds[name] = time.perf_counter() - t
            models[name] = run.backbone.eval()
            print(f"seed {seed} {name}: {run.status} in {seconds[name]:.0f}s", flush=True)
        rows = {}
        for name, model in models.items():
            feats = wb.embed(model, by_shape, input_size=args.input_size).features
            rows[name] = {
                "shape": knn_by(feats, by_shape.labels, seed),
                "color": knn_by(feats, by_color.labels, seed),
            }
            print(f"seed {seed} {name:22s} shape {rows[name]['shape']:.3f} "
                  f"colour {rows[name]['color']:.3f}", flush=True)  # fmt: skip
    return {
        "tag": args.tag, "seed": seed, "n": args.n, "input_size": args.input_size,
        "epochs": args.epochs, "batch_size": args.batch_size, "model": args.model,
        "knn": rows, "seconds": seconds,
        "chance": {"shape": 1 / by_shape.num_classes, "color": 1 / by_color.num_classes},
        "machine": common.machine(), "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def verdicts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds and the two margins the lesson claims."""

    def mean(name: str, label: str) -> float:
        return float(np.mean([e["knn"][name][label] for e in entries]))

    shape_gain = mean("with colour jitter", "shape") - mean("random init", "shape")
    colour_drop = mean("without colour jitter", "color") - mean("with colour jitter", "color")
    return {"shape_gain_over_random": shape_gain, "colour_drop_with_jitter": colour_drop}


def render(path: Path) -> Path:
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        key = (e["tag"], e["n"], e["input_size"], e["epochs"], e["batch_size"], e["model"])
        groups.setdefault(key, []).append(e)
    lines = ["# The augmentations lesson on `shapes` (notebook 02)", "",
             "SimCLR pretrained with and without colour jitter (`cj_prob=0, gray_prob=0`); kNN",
             "k=20 on a stratified held-out 20 %, labels by shape and by colour (chance in the",
             "last row).",
             "Written by `benchmarks/shapes_lesson.py`; means +- std over seeds.", ""]  # fmt: skip
    for key, es in groups.items():
        tag, n, size, epochs, bs, model = key
        m = es[0]["machine"]
        lines += [f"## {tag}: {n} images, {size} px, {epochs} epochs, batch {bs}, {model}, "
                  f"seeds {sorted(e['seed'] for e in es)}", "",
                  f"Machine: {m.get('cpu', '?')}; {es[0]['date']}.", "",
                  "| backbone | kNN by shape | kNN by colour |", "|---|---|---|"]  # fmt: skip
        for name in ("random init", "with colour jitter", "without colour jitter"):
            s = [e["knn"][name]["shape"] for e in es]
            c = [e["knn"][name]["color"] for e in es]
            lines.append(f"| {name} | {np.mean(s):.3f} +- {np.std(s):.3f} | "
                         f"{np.mean(c):.3f} +- {np.std(c):.3f} |")  # fmt: skip
        ch = es[0]["chance"]
        lines.append(f"| chance | {ch['shape']:.3f} | {ch['color']:.3f} |")
        v = verdicts(es)
        secs = np.mean([sum(e["seconds"].values()) for e in es])
        lines += ["", f"- shape kNN with jitter minus random init: "
                  f"**{100 * v['shape_gain_over_random']:+.1f} points** (target >= +15)",
                  f"- colour kNN without jitter minus with jitter: "
                  f"**{100 * v['colour_drop_with_jitter']:+.1f} points** (target >= +15)",
                  f"- training time per seed (both runs): {secs:.0f} s", ""]  # fmt: skip
    out = path.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--tag", default="normal settings")
    p.add_argument("--quick", action="store_true", help="96 images, 16 px, 1 epoch, one seed")
    p.add_argument("--out", type=Path, default=None, help="default: results/shapes_lesson.jsonl")
    args = p.parse_args()
    if args.quick:
        args.n, args.input_size, args.epochs, args.batch_size = 96, 16, 1, 32
        args.seeds, args.tag = args.seeds[:1], "quick"
    if args.out is None:
        args.out = RESULTS / ("shapes_lesson_quick.jsonl" if args.quick else "shapes_lesson.jsonl")
    for seed in args.seeds:
        entry = one_seed(args, seed)
        with args.out.open("a") as f:
            f.write(json.dumps(entry) + "\n")
    print(render(args.out).read_text())


if __name__ == "__main__":
    main()
