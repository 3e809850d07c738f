"""Small students at 32 px: MobileNetV3 with early strides 1 vs the stock net on upsampled input.

At 32 px the stock MobileNetV3 (stride 32) ends on a 1x1 map. Two ways to keep a 4x4 map:
set the stem and first downsampling block to stride 1 (what ``get_backbone`` does at <= 64 px)
or upsample the input 4x to 128 px. This measures both (training step and inference images/s,
channels-last, alternating rounds, median), next to the ResNet-18 teachers for scale.

Usage:
    python benchmarks/mobilenet_small_inputs.py [--rounds 5] [--batch-size 128] [--quick]

Writes benchmarks/results/mobilenet_small_inputs.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from workbench.nn.backbones import get_backbone  # noqa: E402

RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))


class Upsampled(nn.Module):
    """The stock network (built for a large input) fed the image upsampled by ``factor``."""

    def __init__(self, net: nn.Module, factor: int) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return self.net(x)


def contenders(size: int) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    for name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        out[f"{name} stride 8 @ {size}px"] = get_backbone(name, input_size=size)[0]
        stock = get_backbone(name, input_size=4 * size)[0]  # > 64 px: stock strides
        out[f"{name} stock, input x4 ({4 * size}px)"] = Upsampled(stock, 4)
    out[f"resnet18-small @ {size}px"] = get_backbone("resnet18-small", input_size=size)[0]
    out[f"resnet18 @ {size}px"] = get_backbone("resnet18", input_size=size)[0]
    return out


def rate(model: nn.Module, x: torch.Tensor, train: bool, steps: int) -> float:
    """Images/s of ``steps`` forward (and backward when ``train``) passes."""
    model.train(train)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if train else None
    t = time.perf_counter()
    for _ in range(steps):
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            model(x).float().pow(2).mean().backward()
            opt.step()
        else:
            with torch.inference_mode():
                model(x)
    return steps * x.shape[0] / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--quick", action="store_true", help="batch 8, 1 round, 1 step")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.steps, args.batch_size = 1, 1, 8
    torch.manual_seed(0)
    models = {k: m.to(memory_format=torch.channels_last) for k, m in contenders(args.size).items()}
    x = torch.randn(args.batch_size, 3, args.size, args.size).contiguous(
        memory_format=torch.channels_last
    )
    for m in models.values():  # warm-up (oneDNN primitive creation)
        rate(m, x, True, 1)
        rate(m, x, False, 1)
    runs: dict[str, dict[str, list[float]]] = {k: {"train": [], "infer": []} for k in models}
    for _ in range(args.rounds):  # alternate contenders within every round
        for k, m in models.items():
            runs[k]["train"].append(rate(m, x, True, args.steps))
            runs[k]["infer"].append(rate(m, x, False, args.steps))
    rows: list[dict[str, Any]] = []
    for k, m in models.items():
        params = sum(p.numel() for p in m.parameters())
        rows.append({"model": k, "params_m": params / 1e6,
                     "train_img_s": common.median(runs[k]["train"]),
                     "infer_img_s": common.median(runs[k]["infer"]),
                     "rounds": runs[k]})  # fmt: skip
    data = {"size": args.size, "batch_size": args.batch_size, "rounds": args.rounds,
            "steps": args.steps, "threads": torch.get_num_threads(), "rows": rows,
            "machine": common.machine(),
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}  # fmt: skip
    name = "mobilenet_small_inputs_quick" if args.quick else "mobilenet_small_inputs"
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        f"# Small students at {args.size} px: early strides 1 vs upsampled input",
        "",
        f"`{data['command']}`, {data['date']}, batch {args.batch_size}, channels-last, "
        f"median of {args.rounds} alternating rounds of {args.steps} steps, "
        f"{data['threads']} threads.",
        "",
        f"Machine: {common._machine_line(data['machine'])}",
        "",
        "| model | params (M) | train step img/s | inference img/s |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['train_img_s']:.0f} | "
                     f"{r['infer_img_s']:.0f} |")  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
