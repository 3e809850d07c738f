"""kNN accuracy at an equal epoch budget: wb.train vs the Lightly SSL reference loop.

For each dataset and seed, both contenders train a torchvision ResNet-18 (standard stem) on the
same stratified 80% split (``stratified_split(labels, 0.2, seed)``, the split ``wb.train`` makes)
for the same number of epochs, batch size, input size, optimizer and schedule (see common.py).
Then both backbones are scored the same way: eval-mode features of the train split (bank) and of
the held-out 20% (queries), ``workbench.eval.knn_accuracy(k=200, temperature=0.1)`` (cosine).
An untrained backbone is scored too (``random``). Optional contenders: ``plain`` (our Method and
``wb.make_transform`` in the hand-written loop) and ``ours-workers`` (``wb.train`` with
``augment_on="workers"``) separate the shell, the blocks and the augmentation path.

Usage:
    .venv/bin/python benchmarks/quality.py [--method simclr] [--epochs 30] [--seeds 0 1 2]
        [--datasets digits shapes] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

VAL_FRACTION = 0.2
KNN_K, KNN_T = 200, 0.1


def _knn(backbone: Any, ds: Any, train_idx: Any, val_idx: Any, size: int) -> float:
    from workbench.eval import knn_accuracy

    bank = common.backbone_features(backbone, ds, train_idx, size)
    query = common.backbone_features(backbone, ds, val_idx, size)
    return knn_accuracy(
        bank, ds.labels[train_idx], query, ds.labels[val_idx], k=KNN_K, temperature=KNN_T
    )


def _ours(
    args: argparse.Namespace, data: str, seed: int, split: Any, augment_on: str = "auto"
) -> dict[str, Any]:
    import workbench as wb

    ds, train_idx, val_idx = split
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = wb.train(
            data,
            method=args.method,
            model="resnet18",
            out=Path(tmp) / "run",
            epochs=args.epochs,
            batch_size=args.batch_size,
            input_size=args.input_size,
            accelerator="gpu" if args.device == "cuda" else "cpu",
            val_fraction=VAL_FRACTION,
            seed=seed,
            max_steps=args.max_steps,
            augment_on=augment_on,
            num_workers="auto" if augment_on == "auto" else args.workers,
        )
        seconds = time.perf_counter() - t0
        if run.config["num_train"] != len(train_idx):
            raise RuntimeError("wb.train made a different split than stratified_split")
        backbone = run.backbone.cpu()
        monitor = run.history[-1].get("knn_acc") if run.history else None
    return {
        "knn_top1": _knn(backbone, ds, train_idx, val_idx, args.input_size),
        "monitor_knn_top1": monitor,  # wb.train's own last-epoch monitor, for cross-checking
        "seconds": seconds,
        "final_loss": run.history[-1]["loss"] if run.history else None,
    }


def _loop(args: argparse.Namespace, kind: str, seed: int, split: Any) -> dict[str, Any]:
    ds, train_idx, val_idx = split
    loop = common.make_loop(
        kind, args.method, args.input_size, seed=seed, epochs=args.epochs,
        dataset_size=len(train_idx),
    )  # fmt: skip
    t0 = time.perf_counter()
    common.train_loop(
        loop,
        ds,
        train_idx,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        num_workers=args.workers,
        seed=seed,
        device=args.device,
    )
    seconds = time.perf_counter() - t0
    backbone = loop.backbone.cpu()
    return {"knn_top1": _knn(backbone, ds, train_idx, val_idx, args.input_size), "seconds": seconds}


def _random(args: argparse.Namespace, seed: int, split: Any) -> dict[str, Any]:
    import torch

    from workbench.nn.backbones import get_backbone

    ds, train_idx, val_idx = split
    torch.manual_seed(seed)
    backbone, _ = get_backbone("resnet18", input_size=args.input_size)
    return {"knn_top1": _knn(backbone, ds, train_idx, val_idx, args.input_size), "seconds": 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="simclr", choices=["simclr", "byol", "dino"])
    p.add_argument("--datasets", nargs="+", default=["digits", "shapes"])
    # 30: the budget of the SimCLR quality target; at 5 epochs both are still in warm-up
    p.add_argument("--epochs", type=int, default=30, help="the epoch budget of both contenders")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--workers", type=int, default=None, help="reference DataLoader workers")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--contenders", default="ours,lightly,random")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    args = p.parse_args()
    if args.workers is None:
        from workbench.training.data import resolve_num_workers

        args.workers = resolve_num_workers("auto", per_image=True)
    if args.quick:
        args.epochs, args.seeds, args.batch_size, args.max_steps = 1, [0], 32, 2
        args.datasets = args.datasets[:1]

    import torch

    import workbench as wb
    from workbench.data import stratified_split

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    results: dict[str, Any] = {}
    for data in args.datasets:
        ds = wb.load_dataset(data)
        per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for i, seed in enumerate(args.seeds):
            train_idx, val_idx = stratified_split(ds.labels, val_fraction=VAL_FRACTION, seed=seed)
            split = (ds, train_idx, val_idx)
            order = names if i % 2 == 0 else names[::-1]
            for n in order:
                if n == "ours":
                    res = _ours(args, data, seed, split)
                elif n == "ours-workers":  # wb.train with per-image transforms in workers
                    res = _ours(args, data, seed, split, augment_on="workers")
                elif n == "random":
                    res = _random(args, seed, split)
                else:
                    res = _loop(args, n, seed, split)
                res["seed"] = seed
                per[n].append(res)
                print(f"{data} seed {seed} {n:>8}: kNN {res['knn_top1']:.4f}", flush=True)
        results[data] = {
            "num_images": len(ds),
            "num_train": int(len(train_idx)),
            "num_val": int(len(val_idx)),
            "summary": {
                n: {
                    **common.spread([r["knn_top1"] for r in rs]),
                    "seconds": common.median([r["seconds"] for r in rs]),
                }
                for n, rs in per.items()
            },
            "runs": per,
        }
    data = {
        "benchmark": "quality",
        "settings": {
            "method": args.method,
            "model": "resnet18 (torchvision, standard stem)",
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "seeds": args.seeds,
            "input_size": args.input_size,
            "batch_size": args.batch_size,
            "val_fraction": VAL_FRACTION,
            "knn": {"k": KNN_K, "temperature": KNN_T, "metric": "cosine"},
            "device": args.device,
            "reference_workers": args.workers,
            "torch_threads": torch.get_num_threads(),
            "quick": args.quick,
        },
        "machine": common.machine(),
        "results": results,
    }
    name = args.out or f"quality_{args.method}_e{args.epochs}" + ("_quick" if args.quick else "")
    path = common.write_json(name, data)
    print(json.dumps({d: r["summary"] for d, r in results.items()}, indent=2))
    print(f"wrote {path}")
    if not args.quick:
        print(f"wrote {common.render()}")


if __name__ == "__main__":
    main()
