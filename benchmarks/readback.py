"""Per-step monitor cost: the old per-step read-back vs the deferred read-back (issue 15, item 7).

``before``: what the monitor did after every step until this change: ``float(loss)``, two
``std_of_l2_normalized`` calls (each a ``float``) and the finiteness check (``bool``), four
host-device syncs. ``after``: :class:`workbench.training.callbacks.MonitorCallback`'s way: the
four values stacked on the device, read back together every ``--every`` steps. Alternating
rounds, median seconds per step; the sizes are those of a SimCLR step at batch 128 (ResNet-18
features 512-d, projections 128-d). On a CPU a sync costs nothing, so this measures the work
only; on a GPU (``--device cuda``) it measures the syncs too, without the training step around
them (``gpu_check.py`` measures whole steps).

Usage:
    .venv/bin/python benchmarks/readback.py [--device cpu] [--every 16] [--steps 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main() -> None:
    """Measure and write benchmarks/results/readback_<device>.json."""
    import torch
    from gpu_check import machine_core

    from workbench.eval.std import std_of_l2_normalized
    from workbench.training.callbacks import _std_l2

    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--every", type=int, default=16)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    dev = torch.device(args.device)
    g = torch.Generator(device=dev).manual_seed(0)
    loss = torch.rand((), device=dev, generator=g)
    feats = torch.rand(128, 512, device=dev, generator=g)
    proj = torch.randn(128, 128, device=dev, generator=g)

    def before() -> None:
        for _ in range(args.steps):
            assert bool(torch.isfinite(loss))
            float(loss)
            std_of_l2_normalized(proj)
            std_of_l2_normalized(feats)

    def after() -> None:
        pending = []
        for i in range(args.steps):
            v = torch.stack(
                [loss.float(), _std_l2(proj), _std_l2(feats), torch.isfinite(loss).float()]
            )
            pending.append(v)
            if len(pending) >= args.every or i == args.steps - 1:
                torch.stack(pending).tolist()
                pending = []

    times: dict[str, list[float]] = {"before": [], "after": []}
    before(), after()  # warm-up
    for r in range(args.rounds):
        for name, fn in ((("before", before), ("after", after)) if r % 2 == 0 else
                         (("after", after), ("before", before))):  # fmt: skip
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: common.median(v) for k, v in times.items()}
    res = {
        "machine": machine_core(args.device),
        "settings": vars(args),
        "seconds_per_step": med,
        "rounds": times,
        "ratio_before_over_after": med["before"] / med["after"],
    }
    path = common.write_json(f"readback_{args.device}", res)
    print(f"before {med['before'] * 1e6:.0f} us/step, after {med['after'] * 1e6:.0f} us/step, "
          f"ratio {res['ratio_before_over_after']:.2f} -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
