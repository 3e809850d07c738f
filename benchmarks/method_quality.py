"""kNN top-1 on digits' held-out 20% after pretraining each method with default settings.

Usage:
    python benchmarks/method_quality.py --methods simclr --epochs 30
    python benchmarks/method_quality.py --quick          # tiny settings (CI smoke test)

Writes benchmarks/results/method_quality.json (appending/replacing entries per method and
settings) and benchmarks/results/method_quality.md. The random-init reference (the same backbone,
untrained, embedded the same way) is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import workbench as wb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def random_init_knn(ds, input_size: int, model: str, seed: int) -> float:
    """kNN accuracy of an untrained backbone on the same split (the floor to beat)."""
    import torch

    torch.manual_seed(seed)
    backbone, _ = wb.get_backbone(model, input_size=input_size)
    return common.heldout_knn(backbone, ds, input_size=input_size, seed=seed)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--methods", nargs="+", default=["simclr"])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="256 images, 16 px, 1 epoch")
    p.add_argument("--out", type=Path, default=RESULTS / "method_quality.json")
    args = p.parse_args()
    ds = wb.load_dataset("digits", image_size=16 if args.quick else args.image_size)
    if args.quick:
        ds = ds.subset(np.arange(256))
        ds.meta = {"image_size": 16}
        args.epochs = 1
    size = ds.meta["image_size"]
    rows = json.loads(args.out.read_text()) if args.out.is_file() and not args.quick else []
    t0 = time.perf_counter()
    ref = random_init_knn(ds, size, args.model, args.seed)
    print(f"random-init {args.model}: kNN {ref:.4f} ({time.perf_counter() - t0:.0f}s)")
    for method in args.methods:
        if method.startswith("distillation"):
            print(f"skip {method}: needs a teacher (see benchmarks/distillation.py)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run = wb.train(
                ds,
                method=method,
                model=args.model,
                epochs=args.epochs,
                seed=args.seed,
                out=Path(tmp) / method,
            )
            knn = [h["knn_acc"] for h in run.history]
            row = {
                "method": method, "model": args.model, "epochs": args.epochs,
                "input_size": size, "batch_size": run.config["batch_size"],
                "lr": run.config["lr"], "seed": args.seed, "knn_top1": knn[-1],
                "best_knn_top1": max(knn), "random_init_knn_top1": ref,
                "images_per_s": float(np.median([h["images_per_s"] for h in run.history])),
                "minutes": (time.perf_counter() - t) / 60, "status": run.status,
                "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, "
                f"{os.cpu_count()} cores", "torch": run.config["versions"]["torch"],
            }  # fmt: skip
        print(json.dumps(row))
        rows = [r for r in rows if (r["method"], r["epochs"], r["model"], r["input_size"])
                != (method, args.epochs, args.model, size)] + [row]  # fmt: skip
    if args.quick:
        return
    args.out.write_text(json.dumps(rows, indent=2))
    lines = [
        "# kNN top-1 on digits (held-out stratified 20%, k=200, t=0.1, cosine)",
        "",
        "Produced by `python benchmarks/method_quality.py --methods ... --epochs N` "
        "(default settings of `wb.train` otherwise).",
        "",
        "| method | model | px | epochs | batch | kNN top-1 (last) | best | random init | "
        "img/s | minutes | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["method"], r["epochs"])):
        lines.append(
            f"| {r['method']} | {r['model']} | {r['input_size']} | {r['epochs']} | "
            f"{r['batch_size']} | {r['knn_top1']:.3f} | {r['best_knn_top1']:.3f} | "
            f"{r['random_init_knn_top1']:.3f} | {r['images_per_s']:.0f} | {r['minutes']:.1f} | "
            f"{r['date']} |"
        )
    lines += ["", f"Machine: {rows[-1]['machine']}, torch {rows[-1]['torch']}, CPU only."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
