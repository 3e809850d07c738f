"""Offline pretrain-then-distill: DINO on a ViT-Tiny, then distill it into a ResNet-18 student.

Usage:
    python benchmarks/distillation.py [--teacher-epochs 3] [--student-epochs 3]
        [--student resnet18-small|resnet18] [--input-size 16] [--limit 0] [--out runs/...]

Everything runs offline on a built-in dataset (scikit-learn's 1,797 handwritten digits):

1. ``wb.train(method="dino", model="vit-tiny")`` pretrains the teacher.
2. ``wb.train(method="distillation", model=<student>, method_args={"teacher": "run:<dino run>"})``
   distills the DINO run's exported backbone into the student.

Quality: kNN accuracy (k=20, T=0.1) of the frozen features on the held-out 20 % (stratified,
seed 0; the split ``wb.train`` uses), for the teacher, the student and, as the reference measured
in the same run, both architectures at random initialisation. Speed: training images/s of each
run and inference images/s of each backbone (``wb.embed`` over all images). Writes
benchmarks/results/distillation.json and distillation.md.

Sizing: ``--limit 640 --teacher-epochs 2 --student-epochs 2`` (14 + 14 steps of 64 images) is
meant to fit in about 10 minutes on a 2-core CPU; on the shared machine (load average 8-15) it
took 12-16 minutes. The DINO budget is tiny (DINO wants ~100 epochs), so the teacher is weak;
on a GPU raise the epochs (and use all images: ``--limit 0``).
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
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def knn_and_speed(model: Any, ds: Any, size: int, seed: int = 0) -> tuple[float, float]:
    """(kNN accuracy on the held-out split, inference images/s) of a frozen backbone."""
    import workbench as wb

    t = time.perf_counter()
    emb = wb.embed(model, ds, input_size=size, batch_size=256, device="cpu")
    speed = len(ds) / (time.perf_counter() - t)
    train_idx, val_idx = wb.stratified_split(ds.labels, val_fraction=0.2, seed=seed)
    f, y = emb.features, ds.labels
    acc = wb.knn_accuracy(f[train_idx], y[train_idx], f[val_idx], y[val_idx], k=20)
    return float(acc), float(speed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--limit", type=int, default=0, help="use a stratified subset (0: all)")
    ap.add_argument("--input-size", type=int, default=16)
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--student-epochs", type=int, default=3)
    ap.add_argument("--student", default="resnet18-small", choices=["resnet18-small", "resnet18"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--local-count", type=int, default=2, help="DINO local crops (paper: 6-10)")
    # the auto rule (5e-4 * batch / 256 = 1.25e-4) barely moves a ViT in ~14 steps
    ap.add_argument("--teacher-lr", type=float, default=1e-3, help="DINO peak lr")
    ap.add_argument("--teacher-momentum", type=float, default=0.99, help="DINO EMA start")
    ap.add_argument("--out", default="runs/bench-distillation")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    import workbench as wb

    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__} threads {torch.get_num_threads()}, {platform.system()}, "
        "no GPU, offline",
        "load_average_start": round(os.getloadavg()[0], 2),
        "data": args.data,
        "input_size": args.input_size,
    }
    ds = wb.load_dataset(args.data)
    if 0 < args.limit < len(ds):
        keep, _ = wb.stratified_split(ds.labels, val_fraction=1 - args.limit / len(ds), seed=1)
        ds = ds.subset(keep, name=f"{args.data}[{len(keep)}]")
    size, out = args.input_size, Path(args.out)
    common = dict(batch_size=args.batch_size, input_size=size, overwrite=True, seed=0)

    teacher_run = wb.train(
        ds, method="dino", model="vit-tiny", out=out / "teacher-dino-vit-tiny",
        epochs=args.teacher_epochs, transform_args={"local_count": args.local_count},
        lr=args.teacher_lr, method_args={"momentum": args.teacher_momentum, "warmup_epochs": 0.3},
        **common,
    )  # fmt: skip
    print(repr(teacher_run), flush=True)
    student_run = wb.train(
        ds, method="distillation", model=args.student, out=out / f"student-{args.student}",
        epochs=args.student_epochs, method_args={"teacher": f"run:{teacher_run.out}"}, **common,
    )  # fmt: skip
    print(repr(student_run), flush=True)

    torch.manual_seed(0)
    rand_teacher, _ = wb.get_backbone("vit-tiny", input_size=size)
    rand_student, _ = wb.get_backbone(args.student, input_size=size)
    rows = []
    for role, model, run in [
        ("teacher (DINO)", teacher_run.backbone, teacher_run),
        ("student (distilled)", student_run.backbone, student_run),
        ("teacher arch, random init", rand_teacher, None),
        ("student arch, random init", rand_student, None),
    ]:
        acc, speed = knn_and_speed(model, ds, size)
        row = {
            "role": role,
            "model": "vit-tiny" if "teacher" in role else args.student,
            "knn_acc": round(acc, 4),
            "infer_images_per_s": round(speed, 1),
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        }
        if run is not None:
            steps = [s["images_per_s"] for s in run.steps if s.get("images_per_s")]
            row.update(
                method=run.config["method"],
                epochs=run.config["epochs"],
                train_images_per_s=round(sum(steps) / len(steps), 1) if steps else None,
                train_seconds=round(run.history[-1]["seconds"], 1),
                monitor_knn_acc=run.history[-1].get("knn_acc"),
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    rec["rows"] = rows
    teacher, student = rows[0]["knn_acc"], rows[1]["knn_acc"]
    rec["student_minus_teacher_knn_points"] = round(100 * (student - teacher), 2)
    rec["student_over_teacher_infer_speed"] = round(
        rows[1]["infer_images_per_s"] / rows[0]["infer_images_per_s"], 2
    )
    rec["total_seconds"] = round(time.perf_counter() - t0, 1)
    rec["load_average_end"] = round(os.getloadavg()[0], 2)

    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "distillation.json").write_text(json.dumps(rec, indent=2) + "\n")
    lines = [
        "# Distillation: DINO ViT-Tiny teacher -> ResNet-18 student, offline",
        "",
        f"- date: {rec['date']}",
        f"- machine: {rec['machine']} (load average {rec['load_average_start']} at start, "
        f"{rec['load_average_end']} at end: other jobs shared the 2 cores)",
        f"- command: `{rec['command']}`",
        f"- data: {args.data} ({len(ds)} images), {size} px; kNN (k=20) on the held-out 20 %",
        f"- total wall time: {rec['total_seconds']} s",
        "",
        "| role | model | kNN acc | infer img/s | train img/s | epochs | params (M) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['role']} | {r['model']} | {r['knn_acc']:.3f} | {r['infer_images_per_s']} | "
            f"{r.get('train_images_per_s', '-')} | {r.get('epochs', '-')} | {r['params_M']} |"
        )
    lines += [
        "",
        f"Student - teacher kNN: {rec['student_minus_teacher_knn_points']:+.1f} points; student "
        f"inference speed = {rec['student_over_teacher_infer_speed']}x the teacher's.",
    ]
    (results / "distillation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
