"""Short-run defaults on digits (Barlow Twins, VICReg, BYOL, MoCo): what lets them learn at 32 px.

Both losses are sums over thousands of embedding dimensions (Barlow Twins starts near 2,000),
and with plain SGD at the shared rate Barlow Twins scored kNN 0.37 after 10 epochs, far below
the untrained backbone (0.81). Each trial trains ``wb.train("digits", ...)`` for ``--epochs`` and
records kNN top-1 (held-out 20%), loss and backbone std per epoch.

Usage:
    python benchmarks/barlow_study.py [--trials sgd lars ...] [--epochs 10] [--seed 0] [--keep DIR]
    python benchmarks/barlow_study.py --from-runs DIR...   # rows from run folders named by trial
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))
FINDINGS = "\n## Findings"  # the report's hand-written readings start here; a rerun keeps them
SMALL_PROJ = {"hidden_dim": 512, "output_dim": 512}

# name -> wb.train keyword arguments (method defaults to barlowtwins)
TRIALS: dict[str, dict[str, Any]] = {
    "sgd": {"method_args": {"optimizer": "sgd"}},
    "lars": {},  # the default since this study
    "adamw": {"method_args": {"optimizer": "adamw"}},
    "lars-proj512": {"method_args": SMALL_PROJ},
    "adamw-proj512": {"method_args": {"optimizer": "adamw", **SMALL_PROJ}},
    "lars-crop0.35": {"transform_args": {"crop_scale": (0.35, 1.0)}},
    # does solarization (dark strokes on white-on-black digits) explain it? (measured: no)
    "lars-nosolar": {"transform_args": {"view2_solarize_prob": 0.0}},
    "lars-crop0.35-nosolar": {
        "transform_args": {"crop_scale": (0.35, 1.0), "view2_solarize_prob": 0.0}
    },
    # second round (30-epoch failure, #17): the loss's balance, the rate and the views
    "lars-lambda1e-3": {"method_args": {"lambda_param": 1e-3}},
    "lars-lambda2e-2": {"method_args": {"lambda_param": 2e-2}},
    "lars-lr0.05": {"lr": 0.05},
    "lars-lr0.01": {"lr": 0.01},
    "lars-lr0.5": {"lr": 0.5},
    "lars-b256": {"batch_size": 256},
    "vicreg-sgd": {"method": "vicreg", "method_args": {"optimizer": "sgd"}},
    "vicreg-lars": {"method": "vicreg"},
    # BYOL at 30 epochs is +1.7 points over random init (method_table.md): is its target too
    # slow for ~420 steps? (the EMA starts at 0.99 and rises to 1 on a cosine)
    "byol-m0.96": {"method": "byol", "method_args": {"momentum": 0.96}},
    # MoCo at 30 epochs: 76.6 % vs random init 81.3 % and Lightly's 78.8 % (method_table.md):
    # the defaults' per-epoch curve
    "moco": {"method": "moco"},
    # both peak in epochs 6-7 and decline after: ten times the weight decay (SGD: 5e-4)?
    "byol-wd5e-3": {"method": "byol", "method_args": {"weight_decay": 5e-3}},
    "moco-wd5e-3": {"method": "moco", "method_args": {"weight_decay": 5e-3}},
    # ~11 steps per epoch here: an EMA that starts at 0.99 lags ~100 steps (9 epochs) behind,
    # and the cosine to 1 freezes it for the last third. A target that follows within an epoch?
    "byol-m0.9": {"method": "byol", "method_args": {"momentum": 0.9}},
    "moco-m0.9": {"method": "moco", "method_args": {"momentum": 0.9}},
    # DINO at 30 epochs: +0.8 points on seed 0 (method_table.md). Its teacher's EMA starts at
    # 0.996, ~250 steps (23 epochs) behind here: a teacher near its random init all run?
    "dino-m0.99": {"method": "dino", "method_args": {"momentum": 0.99}},
    # the loss sits at ln 2048 because the centred teacher is uniform: its per-image deviation
    # from the centre is tiny at temperature 0.04. A sharper teacher amplifies it (6-epoch probes)
    "dino-tt0.02": {
        "method": "dino",
        "method_args": {"warmup_teacher_temp": 0.02, "teacher_temp": 0.02},
    },
    "dino-tt0.01": {
        "method": "dino",
        "method_args": {"warmup_teacher_temp": 0.01, "teacher_temp": 0.01},
    },
    # a sharper teacher still drifts to uniform (6 epochs): the student cannot predict it and
    # falls back to the marginal. Six local crops of 5-40 % of an 8x8 digit carry next to no
    # digit, and they are 6 of the student's 8 views: the multi-crop views?
    "dino-nolocal": {"method": "dino", "transform_args": {"local_count": 0}},
    "dino-local0.25": {"method": "dino", "transform_args": {"local_crop_scale": (0.25, 0.5)}},
    # no local crops: kNN 0.889 at epoch 3, 0.875 at 6 (6 epochs), larger local crops 0.836: how
    # many local crops can it take?
    "dino-local2": {"method": "dino", "transform_args": {"local_count": 2}},
    # BYOL: +1.7 over random init at 30 epochs, peak 0.89-0.92 in epochs 6-10 then a decline
    # that neither the target's momentum nor weight decay stops. The paper's optimizer (LARS)?
    # Crops that keep more of an 8x8 digit (MoCo v2's 0.2)?
    "byol-lars": {"method": "byol", "method_args": {"optimizer": "lars"}},
    "byol-crop0.2": {"method": "byol", "transform_args": {"crop_scale": (0.2, 1.0)}},
    # LARS: 0.763 after epoch 1, 0.373 at 30. Methods without negatives (BYOL, Barlow Twins) peak
    # early and decline, SimCLR does not: does the mirror invariance cost them the digits?
    "byol-noflip": {"method": "byol", "transform_args": {"hflip_prob": 0.0}},
    "lars-noflip": {"transform_args": {"hflip_prob": 0.0}},
    # BYOL without flips: peak 0.903 (epoch 6), 0.852 at 30; Barlow Twins: the same collapse as
    # with flips. Not the cause. BYOL's rate (0.06 at batch 128) and width (paper: 4096)?
    "byol-lr0.03": {"method": "byol", "lr": 0.03},
    "byol-h4096": {"method": "byol", "method_args": {"hidden_dim": 4096}},
    # a crop of 8 % of an 8x8 digit is a 2x2-pixel blob that BYOL must map onto the whole digit;
    # crops of at least half the image?
    "byol-crop0.5": {"method": "byol", "transform_args": {"crop_scale": (0.5, 1.0)}},
    # Barlow Twins: each of LARS at a third of the rate (0.733 at 10 epochs) and gentler crops
    # without solarization (0.721) halved the fall (0.496). What BYOL needed, together?
    "lars-lr0.05-crop0.5": {
        "lr": 0.05,
        "transform_args": {"crop_scale": (0.5, 1.0), "view2_solarize_prob": 0.2},
    },
    "lars-lr0.05-crop0.5-nosolar": {
        "lr": 0.05,
        "transform_args": {"crop_scale": (0.5, 1.0), "view2_solarize_prob": 0.0},
    },
    # BYOL, lr 0.03: 0.858 / 0.852 / 0.872 on seeds 0-2 (+2.8 over random init); crops of at
    # least half: 0.855 on seed 0. Both together?
    "byol-lr0.03-crop0.5": {
        "method": "byol",
        "lr": 0.03,
        "transform_args": {"crop_scale": (0.5, 1.0)},
    },
}


def row(name: str, run: Any) -> dict[str, Any]:
    """One result row from a finished run."""
    h = run.history
    c = run.config
    return {
        "trial": name,
        "seed": c["seed"],
        "method": c["method"],
        "optimizer": c["optimizer"],
        "lr": c["lr"],
        "precision": c["precision"],
        "projector": [c["method_args"].get("hidden_dim"), c["method_args"].get("output_dim")],
        "crop_scale": c["transform"]["groups"][0]["crop_scale"],
        "epochs": len(h),
        "knn_per_epoch": [round(r["knn_acc"], 3) for r in h],
        "loss_per_epoch": [round(r["loss"], 1) for r in h],
        "backbone_std_per_epoch": [round(r.get("rep_std_backbone") or 0.0, 4) for r in h],
        **_teacher_entropy(h),
        "date": time.strftime("%Y-%m-%d"),
    }


def _teacher_entropy(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    """DINO's teacher entropy per epoch as a fraction of ln K, per image and of the batch mean.

    Per image near 1 and batch near 1: a uniform teacher; per image near 0 and batch near 0: one
    prototype for all images. Healthy: per image low, batch high. Empty for other methods.
    """
    from workbench.eval.collapse import relative_signals

    sig = [relative_signals(r) for r in history]
    if not sig or sig[0]["teacher_entropy_frac"] is None:
        return {}
    return {
        f"{k}_per_epoch": [round(s[k] or 0.0, 3) for s in sig]
        for k in ("teacher_entropy_frac", "teacher_batch_entropy_frac")
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Short-run defaults on digits: Barlow Twins, VICReg, BYOL, MoCo (32 px, ResNet-18, "
        "batch 128, CPU)",
        "",
        "Produced by `python benchmarks/barlow_study.py`; kNN top-1 of `wb.train`'s monitor on the "
        "held-out 20% (k=200, t=0.1). The untrained backbone scores 0.81 "
        "(`method_table.md`).",
        "",
        "| trial | method | optimizer | lr | projector | crop scale | precision | epochs | "
        "kNN epoch 1 | kNN best (epoch) | kNN last | loss first -> last | backbone std last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        k, lo = r["knn_per_epoch"], r["loss_per_epoch"]
        name = r["trial"] + (f" (seed {r['seed']})" if r.get("seed") else "")
        lines.append(
            f"| {name} | {r['method']} | {r['optimizer']} | {r['lr']:.3g} | "
            f"{r['projector'][0]}-{r['projector'][1]} | {r['crop_scale']} | {r['precision']} | "
            f"{r['epochs']} | {k[0]:.3f} | {max(k):.3f} ({k.index(max(k)) + 1}) | "
            f"{k[-1]:.3f} | {lo[0]} -> {lo[-1]} | {r['backbone_std_per_epoch'][-1]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    import workbench as wb

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    p.add_argument("--from-runs", type=Path, nargs="+", default=None, help="run folders to record")
    p.add_argument("--quick", action="store_true", help="one trial, one epoch (for the test)")
    args = p.parse_args()
    if args.quick:
        args.trials, args.epochs = ["lars"], 1
    out = RESULTS / ("barlow_study_quick.jsonl" if args.quick else "barlow_study.jsonl")
    rows: list[dict[str, Any]] = []
    if args.from_runs:
        for d in args.from_runs:
            rows.append(row(d.name, wb.Run(d)))
    else:
        for name in args.trials:
            kw = {"method": "barlowtwins", **TRIALS[name]}
            with tempfile.TemporaryDirectory() as tmp:
                base = args.keep or Path(tmp)
                run = wb.train("digits", epochs=args.epochs, seed=args.seed, out=base / name, **kw)
                rows.append(row(name, run))
            print(json.dumps(rows[-1]), flush=True)
    with out.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    all_rows = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    md = out.with_suffix(".md")
    old = md.read_text(encoding="utf-8") if md.exists() else ""
    findings = old[old.index(FINDINGS) :] if FINDINGS in old else ""  # hand-written, kept
    md.write_text(render(all_rows) + findings, encoding="utf-8")
    print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
