"""Training throughput and peak memory: wb.train vs a plain PyTorch loop vs Lightly SSL.

Contenders (same method, torchvision ResNet-18 with the standard stem, input size, batch size,
optimizer, schedule and data: all of digits, 1,797 images at 32 px):

- ``ours``: ``wb.train(..., max_steps=warmup + steps, val_fraction=0)`` with its defaults
  (decoded uint8 cache, per-batch augmentation on the device, Lightning). Step times come from the
  run's step records, which are stamped after each optimiser step; epoch ends (a checkpoint and
  the backbone export) fall inside the timed window, as they would for a user.
- ``ours-bf16``: the same under bf16 autocast (``precision="bf16-mixed"``), what ``auto`` picks
  on a GPU and an opt-in on CPUs with AVX512-BF16/AMX. Left out by default where ours already
  runs in bf16, or on a CPU without bf16 units (emulated bf16 is several times slower).
- ``ours-workers``: the same with ``augment_on="workers"`` (opt-in with ``--contenders``).
- ``plain``: a hand-written loop over a DataLoader whose workers apply ``wb.make_transform``
  (per-image torchvision v2 on PIL images), with our Method (backbone + head + loss), in float32
  on the CPU as such a loop is usually written (under bf16 autocast on a GPU).
- ``lightly``: the same loop with Lightly's transform, projection head(s) and loss.
- ``ceiling``: the model-only step (our Method on pre-made view tensors, no data loading) at
  ``ours``' precision and memory format (the same measured, cached choice ``wb.train`` uses).

Every trial runs in a fresh interpreter; contenders alternate (A B C D, B C D A, ...) and the
median over ``--repeats`` trials is reported, with ratios against ours measured in the same run.
images/s = batch * steps / (time of the last step - time of the last warm-up step); views/s =
images/s * views per image. Peak memory is the PSS of the process tree (workers included) above
the baseline taken after imports.

Usage:
    .venv/bin/python benchmarks/train_throughput.py [--method simclr] [--input-size 32]
        [--batch-size 128] [--steps 20] [--warmup 3] [--repeats 3] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

CONTENDERS = ("ours", "ours-bf16", "plain", "lightly", "ceiling")
ALL = (*CONTENDERS, "ours-workers")


def default_contenders(device: str, precision: str) -> list[str]:
    """CONTENDERS, less ``ours-bf16`` where it would repeat ``ours`` or bf16 is emulated."""
    from workbench.training.api import cpu_has_bf16

    native = device == "cuda" or cpu_has_bf16()
    skip = precision.startswith("bf16") or not native
    return [c for c in CONTENDERS if not (c == "ours-bf16" and skip)]


def _rates(stamps: list[float], warmup: int, batch: int) -> dict[str, float]:
    """images/s over the timed steps, and from the median step time."""
    timed = stamps[warmup - 1 :]
    dts = [b - a for a, b in zip(timed, timed[1:])]
    return {
        "images_per_s": batch * len(dts) / (timed[-1] - timed[0]),
        "images_per_s_median_step": batch / common.median(dts),
        "median_step_s": common.median(dts),
        "max_step_s": max(dts),
    }


def _one(args: argparse.Namespace) -> dict[str, Any]:
    """One trial of one contender (runs in the child process)."""
    import torch

    import workbench as wb
    from workbench.training.memory_format import choose_channels_last

    if args.threads:
        torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    name = args.one
    if name.startswith("ours"):
        import lightning  # noqa: F401 - imported before the baseline, as for the others

        import workbench.training.api  # noqa: F401
    elif name == "lightly":
        import lightly  # noqa: F401
    ds = wb.load_dataset(args.data)
    n_views = wb.recipe(args.method, input_size=args.input_size).n_views
    t0 = time.perf_counter()
    first = float("nan")
    with common.MemorySampler() as mem:
        if name.startswith("ours"):
            with tempfile.TemporaryDirectory() as tmp:
                per_epoch = len(ds) // args.batch_size
                run = wb.train(
                    args.data,
                    method=args.method,
                    model="resnet18",
                    out=Path(tmp) / "run",
                    epochs=math.ceil(total / per_epoch),
                    batch_size=args.batch_size,
                    input_size=args.input_size,
                    accelerator="gpu" if args.device == "cuda" else "cpu",
                    precision="bf16-mixed" if name == "ours-bf16" else args.precision,
                    val_fraction=0.0,
                    max_steps=total,
                    seed=0,
                    augment_on="workers" if name == "ours-workers" else "auto",
                    num_workers=args.workers if name == "ours-workers" else "auto",
                )
                steps = [r for r in run.steps if r.get("type", "step") == "step"]
                stamps = [float(r["seconds"]) for r in steps]  # from the monitor's start
                aug = run.config["augment_on"]
                first = time.perf_counter() - t0 - (stamps[-1] - stamps[0])
        elif name == "ceiling":
            loop = common.our_loop(args.method, args.input_size)
            sizes = wb.recipe(args.method, input_size=args.input_size).view_sizes
            g = torch.Generator().manual_seed(0)
            views = [torch.randn(args.batch_size, 3, s, s, generator=g) for s in sizes]
            views = [v.to(args.device) for v in views]
            loop.module.to(args.device).train()
            acc = "gpu" if args.device == "cuda" else "cpu"
            memory = choose_channels_last(loop.backbone, acc, args.input_size)
            if memory["channels_last"]:  # as wb.train runs it (the same cached choice)
                loop.module.to(memory_format=torch.channels_last)
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            peak_lr, warm = common.schedule(loop.method, args.batch_size, 14, total)
            opt, sched = common.make_optimizer(loop.module, loop.method, peak_lr, warm, total)
            stamps = []
            for s in range(total):
                bf16 = args.precision.startswith("bf16")
                with torch.autocast(args.device, torch.bfloat16, enabled=bf16):
                    loss = loop.step(views, 0, s, total)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                loop.before(0)
                opt.step()
                sched.step()
                loop.after(s, total)
                float(loss.detach())
                stamps.append(time.perf_counter())
            aug = "none (pre-made tensors)"
            first = stamps[0] - t0
        else:
            loop = common.make_loop(name, args.method, args.input_size)
            stamps = common.train_loop(
                loop,
                ds,
                range(len(ds)),
                batch_size=args.batch_size,
                max_steps=total,
                num_workers=args.workers,
                device=args.device,
                amp=_amp(args),
            )
            aug = f"per-image in {args.workers} DataLoader worker(s)"
            first = stamps[0] - t0
    out = _rates(stamps, args.warmup, args.batch_size)
    out.update(
        contender=name,
        views_per_s=out["images_per_s"] * n_views,
        peak_mem_mib=round(mem.peak_delta, 1),
        baseline_mem_mib=round(mem.baseline, 1),
        first_step_s=first,
        augmentation=aug,
        steps=len(stamps),
    )
    return out


def _augment_probe(args: argparse.Namespace, rounds: int = 5) -> dict[str, Any]:
    """Data-path cost of one batch, in this process: seconds per batch of ``batch_size`` images.

    ``batched_*``: ``BatchedViews`` (ours) on a uint8 batch, at torch's default thread count and at
    one thread; ``per_image_*``: ``wb.make_transform`` and Lightly's transform on each PIL image
    of a batch, one thread (as in a DataLoader worker). Alternating, medians.
    """
    import torch

    import workbench as wb
    from workbench.augment.batched import BatchedViews
    from workbench.augment.transforms import torch_threads

    ds = wb.load_dataset(args.data)
    images = [ds[i][0] for i in range(args.batch_size)]
    rec = wb.recipe(args.method, input_size=args.input_size)
    batched = BatchedViews(rec)
    x = torch.stack([torch.from_numpy(__import__("numpy").asarray(im).copy()) for im in images])
    x = x.permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W) uint8
    ours_tf = wb.make_transform(rec)
    ref_tf = common.lightly_loop(args.method, args.input_size).transform

    def per_image(tf: Any) -> None:
        with torch_threads(1):
            for im in images:
                tf(im)

    def one_thread() -> None:
        with torch_threads(1):
            batched(x)

    fns = {
        f"batched_{torch.get_num_threads()}_threads": lambda: batched(x),
        "batched_1_thread": one_thread,
        "per_image_make_transform_1_thread": lambda: per_image(ours_tf),
        "per_image_lightly_1_thread": lambda: per_image(ref_tf),
    }
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: common.median(v) for k, v in times.items()}


def _name(args: argparse.Namespace) -> str:
    from workbench.training.memory_format import cpu_kind

    device = f"cpu-{cpu_kind()}" if args.device == "cpu" else args.device  # one file per CPU kind
    return args.out or (
        f"throughput_{args.method}_{device}_{args.input_size}px_b{args.batch_size}"
        + ("_quick" if args.quick else "")
    )


def _amp(args: argparse.Namespace) -> bool:
    """bf16 autocast for the reference loops: on a GPU when ours uses it, never on the CPU."""
    return args.device == "cuda" and args.precision.startswith("bf16")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="simclr", choices=["simclr", "byol", "dino"])
    p.add_argument("--data", default="digits")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per trial")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps per trial")
    p.add_argument("--repeats", type=int, default=3, help="trials per contender")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--precision",
        default="auto",
        help="wb.train precision (default auto: bf16-mixed where the CPU/GPU has bf16, else "
        "32-true on cpu); on cuda the references then run under bf16 autocast too",
    )
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (per-image)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--contenders", default=None, help=f"comma-separated, of {list(ALL)}")
    p.add_argument("--out", default=None, help="results name (default throughput_<settings>)")
    p.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    p.add_argument("--probe-only", action="store_true", help="add the data-path probe only")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.precision == "auto":  # resolve once, so every child and the report agree
        from workbench.training.api import _resolve_device

        acc = "gpu" if args.device == "cuda" else "cpu"
        args.precision = _resolve_device(acc, 1, "auto")[2]
    if args.workers is None:
        from workbench.training.data import resolve_num_workers

        args.workers = resolve_num_workers("auto", per_image=True)
    if args.quick:
        args.steps, args.warmup, args.repeats, args.batch_size = 3, 1, 1, 32
    if args.one:
        print(json.dumps(_one(args)))
        return
    if args.probe_only:  # add the data-path probe to an existing result of the same settings
        path = common.RESULTS / f"{_name(args)}.json"
        data = json.loads(path.read_text())
        data["augment_probe_s_per_batch"] = _augment_probe(args)
        data["augment_probe_command"] = common.machine()["command"]
        print(json.dumps(data["augment_probe_s_per_batch"], indent=2))
        print(f"wrote {common.write_json(path.stem, data)}")
        print(f"wrote {common.render()}")
        return

    if args.contenders is None:
        names = default_contenders(args.device, args.precision)
    else:
        names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = sorted(set(names) - set(ALL))
    if bad:
        raise SystemExit(f"Unknown contenders {bad}. Valid: {list(ALL)}")
    child = [
        f"--method={args.method}",
        f"--data={args.data}",
        f"--input-size={args.input_size}",
        f"--batch-size={args.batch_size}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--device={args.device}",
        f"--precision={args.precision}",
        f"--workers={args.workers}",
        f"--threads={args.threads}",
    ]
    trials: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    errors: dict[str, str] = {}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            try:
                res = common.run_child(Path(__file__), [*child, f"--one={n}"])
            except RuntimeError as e:  # one broken contender must not lose the others
                print(e, file=sys.stderr, flush=True)
                errors.setdefault(n, str(e)[-2000:])
                continue
            trials[n].append(res)
            print(
                f"round {r + 1}/{args.repeats} {n:>12}: {res['images_per_s']:7.1f} img/s, "
                f"peak +{res['peak_mem_mib']:.0f} MiB",
                flush=True,
            )
    summary: dict[str, Any] = {}
    trials = {n: rs for n, rs in trials.items() if rs}
    for n, rs in trials.items():
        summary[n] = {
            "images_per_s": common.median([x["images_per_s"] for x in rs]),
            "images_per_s_median_step": common.median([x["images_per_s_median_step"] for x in rs]),
            "views_per_s": common.median([x["views_per_s"] for x in rs]),
            "peak_mem_mib": common.median([x["peak_mem_mib"] for x in rs]),
            "augmentation": rs[0]["augmentation"],
        }
    ratios: dict[str, float] = {}
    if "ours" in trials:
        for n in trials:
            if n == "ours":
                continue
            # ratio of medians of per-round ratios: each round's contenders ran back to back
            per_round = [
                o["images_per_s"] / x["images_per_s"] for o, x in zip(trials["ours"], trials[n])
            ]
            ratios[f"ours/{n}"] = common.median(per_round)
    data = {
        "benchmark": "train_throughput",
        "settings": {
            "method": args.method,
            "model": "resnet18 (torchvision, standard stem)",
            "data": args.data,
            "input_size": args.input_size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "device": args.device,
            "precision": args.precision,
            "workers": args.workers,
            "torch_threads": args.threads or "torch default",
            "quick": args.quick,
        },
        "machine": common.machine(),
        "summary": summary,
        "ratios": ratios,
        "trials": trials,
        "errors": errors,
    }
    if not args.quick:
        data["augment_probe_s_per_batch"] = _augment_probe(args)
    path = common.write_json(_name(args), data)
    print(json.dumps({"ratios": ratios, "summary": summary}, indent=2))
    print(f"wrote {path}")
    if not args.quick:
        print(f"wrote {common.render()}")


if __name__ == "__main__":
    main()
