"""Which settings let `workbench demo` show a clear gain over random init in 90 s on 2 cores.

The demo trains SimCLR on scikit-learn's digits. At 32 px with ResNet-18 the untrained backbone
already scores kNN ~0.81 and 5 epochs reach ~0.84, a gain the eye cannot see. Each trial here
trains ``wb.train("digits", ...)`` with the demo's other settings and records, per epoch, the
held-out kNN (k=200, t=0.1, the monitor's) against the same backbone's random init (the run's own
``knn_acc_init``), and the training wall time. Seeds are appended one at a time to
``results/demo_study.json``, so a long study can stop and resume.

Usage:
    python benchmarks/demo_study.py [--trials 16px ...] [--seeds 0 1 2]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))

# name -> wb.train keyword arguments (SimCLR on all 1,797 digits unless said otherwise)
TRIALS: dict[str, dict[str, Any]] = {
    "simclr-b128-5ep": {"epochs": 5},  # the demo before this study
    "simclr-b128-4ep": {"epochs": 4},
    "simclr-b128-3ep": {"epochs": 3},
    "simclr-crop0.35-4ep": {"epochs": 4, "transform_args": {"crop_scale": (0.35, 1.0)}},
    "simclr-lr0.1-4ep": {"epochs": 4, "lr": 0.1},
    "simclr-crop0.35-lr0.1-4ep": {
        "epochs": 4,
        "lr": 0.1,
        "transform_args": {"crop_scale": (0.35, 1.0)},
    },
    "simclr-b256-4ep": {"epochs": 4, "batch_size": 256},
    "simclr-b64-4ep": {"epochs": 4, "batch_size": 64},
    "vicreg-b128-4ep": {"epochs": 4, "method": "vicreg"},
    "vicreg-b64-4ep": {"epochs": 4, "method": "vicreg", "batch_size": 64},
    "byol-b64-4ep": {"epochs": 4, "method": "byol", "batch_size": 64},
    "moco-b64-4ep": {"epochs": 4, "method": "moco", "batch_size": 64},
    "16px-resnet18-10ep": {"input_size": 16, "epochs": 10},
    "16px-12ep": {"input_size": 16, "epochs": 12},
    "24px-7ep": {"input_size": 24, "epochs": 7},
    # AMX CPU (~370 img/s at 32 px): the 60 s budget holds ~8 epochs
    "simclr-b128-8ep": {"epochs": 8},
    "simclr-lr0.015-8ep": {"epochs": 8, "lr": 0.015},
    "simclr-lr0.015-6ep": {"epochs": 6, "lr": 0.015},
    "24px-12ep": {"input_size": 24, "epochs": 12},
    # AVX2 CPU again (~90-100 img/s): the 90 s budget holds ~4 epochs of training
    "simclr-lr0.015-4ep": {"epochs": 4, "lr": 0.015},
}


def run_trial(name: str, seed: int) -> dict[str, Any]:
    import workbench as wb

    kw = {"method": "simclr", "model": "resnet18", "batch_size": 128, "input_size": 32,
          **TRIALS[name]}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = wb.train("digits", out=Path(tmp) / "r", seed=seed, **kw)
        wall = time.perf_counter() - t0
    h = run.history
    return {
        "trial": name,
        "seed": seed,
        "settings": kw,
        "knn_init": round(h[0]["knn_acc_init"], 4),
        "knn_per_epoch": [round(r["knn_acc"], 4) for r in h],
        "train_wall_s": round(wall, 1),
        "images_per_s": round(h[-1]["images_per_s"]),
        "machine": common.machine(),
    }


def summary(rows: list[dict[str, Any]]) -> str:
    """A markdown table: mean margin over the seeds at the last epoch, and the wall time."""
    import numpy as np

    out = [
        "| trial | seeds | kNN random init | kNN trained | margin (points) | train wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys(r["trial"] for r in rows):
        rs = [r for r in rows if r["trial"] == name]
        init = np.array([r["knn_init"] for r in rs])
        last = np.array([r["knn_per_epoch"][-1] for r in rs])
        gain = 100 * (last - init)
        wall = np.mean([r["train_wall_s"] for r in rs])
        out.append(
            f"| {name} | {len(rs)} | {init.mean():.3f} | {last.mean():.3f} | "
            f"{gain.mean():+.1f} ± {gain.std():.1f} | {wall:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "demo_study.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for name in args.trials:
        for seed in args.seeds:
            if any(r["trial"] == name and r["seed"] == seed for r in rows):
                continue
            rows.append(run_trial(name, seed))
            path.write_text(json.dumps(rows, indent=1) + "\n")
            r = rows[-1]
            print(f"{name} seed {seed}: init {r['knn_init']}, per epoch {r['knn_per_epoch']}, "
                  f"{r['train_wall_s']} s", flush=True)  # fmt: skip
    print(summary(rows))


if __name__ == "__main__":
    main()
