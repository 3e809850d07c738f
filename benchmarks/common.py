"""Shared helpers of the benchmarks: machine info, memory sampling, the reference training loops.

The reference (Lightly SSL, ``pip install lightly``, the ``bench`` extra) is used here only, never
by the package. Its training loop is built from Lightly's public blocks (transforms, heads, losses)
with our backbone, batch size, input size, optimizer, schedule and data, as issue 7 asks.

Two loops share everything but the blocks:

- ``plain``: our Method (backbone + head + loss) fed by ``wb.make_transform`` (per-image
  torchvision v2 on PIL images) in DataLoader workers: what a plain PyTorch user writes.
- ``lightly``: Lightly's transform, projection head(s) and loss around the same torchvision
  backbone.

Both use SGD (momentum 0.9, no weight decay on biases and norms), the method's base learning rate
scaled by batch / 256, one epoch of linear warm-up then cosine decay: the schedule of ``wb.train``.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# WORKBENCH_BENCH_RESULTS redirects the JSON files (the tests write into a temporary folder).
RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", Path(__file__).parent / "results"))
ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    """Machine, versions and load: what a figure must be quoted with."""
    import torch
    import torchvision

    from workbench.training.memory_format import cpu_flags, cpu_kind, cpu_model

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions["torchvision"] = torchvision.__version__
    for name in ("lightning", "lightly", "numpy", "umap", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional packages
            versions[name] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_kind": cpu_kind(),
        "cpu_flags": cpu_flags(),
        "nproc": cores,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median(xs: Sequence[float]) -> float:
    """Median (nan for an empty sequence)."""
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> dict[str, float]:
    """Mean, sample std, min and max."""
    xs = list(xs)
    return {
        "mean": float(statistics.fmean(xs)) if xs else float("nan"),
        "std": float(statistics.stdev(xs)) if len(xs) > 1 else 0.0,
        "min": float(min(xs)) if xs else float("nan"),
        "max": float(max(xs)) if xs else float("nan"),
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def run_child(script: Path, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """Run ``script args`` in a fresh interpreter; its last stdout line is a JSON object.

    A fresh process per trial gives every contender the same start (threads, caches, allocator)
    and lets its peak memory be measured on its own.
    """
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{script.name} {' '.join(args)} failed (rc {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- memory


def _pss_kib(pid: int) -> int:
    """Proportional set size of a process (shared pages split between sharers), else its RSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0


def tree_memory_mib(pid: int | None = None) -> float:
    """PSS of a process and all its children (DataLoader workers), MiB.

    PSS, not RSS: forked workers share the parent's pages (torch's libraries, the dataset);
    summing RSS would count them once per worker and overstate the per-image loops.
    """
    import psutil

    pid = os.getpid() if pid is None else pid
    try:
        kids = [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        kids = []
    return sum(_pss_kib(p) for p in [pid, *kids]) / 1024


class MemorySampler:
    """Samples this process tree's memory in a thread; ``peak_delta`` is over the baseline.

    Args:
        interval: Seconds between samples.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.baseline = tree_memory_mib()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_memory_mib())

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_memory_mib())

    @property
    def peak_delta(self) -> float:
        """Peak tree memory minus the baseline, MiB."""
        return self.peak - self.baseline


# ----------------------------------------------------------------------------- data and eval


class Indexed:
    """A subset of an ImageDataset through a per-image multi-view transform (importable)."""

    def __init__(self, ds: Any, indices: Any, transform: Callable[[Any], Any]) -> None:
        self.ds, self.indices, self.transform = ds, list(map(int, indices)), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return list(self.transform(self.ds[self.indices[i]][0]))


def backbone_features(backbone: Any, ds: Any, indices: Any, size: int) -> Any:
    """Eval-mode backbone features (N, D) of the images, resized/cropped to ``size``."""
    import numpy as np
    import torch

    from workbench.training.data import decode_to_tensor

    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    images = decode_to_tensor(ds, np.asarray(indices), size)
    was = backbone.training
    backbone.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            x = (images[i : i + 256].float() / 255.0 - mean) / std
            out.append(backbone(x).flatten(1))
    backbone.train(was)
    return torch.cat(out).numpy()


def heldout_knn(
    model: Any,
    ds: Any,
    *,
    input_size: int,
    seed: int = 0,
    val_fraction: float = 0.2,
    mean: Any = None,
    std: Any = None,
) -> float:
    """kNN top-1 (k=200, t=0.1) of ``wb.embed`` features on wb.train's held-out split."""
    import workbench as wb

    emb = wb.embed(model, ds, input_size=input_size, mean=mean, std=std)
    tr, va = wb.stratified_split(ds.labels, val_fraction=val_fraction, seed=seed)
    f, y = emb.features, ds.labels
    return float(wb.knn_accuracy(f[tr], y[tr], f[va], y[va], k=200, temperature=0.1))


# ----------------------------------------------------------------------------- loops


def schedule(method: Any, batch_size: int, steps_per_epoch: int, total_steps: int) -> Any:
    """(peak lr, warm-up steps) exactly as ``wb.train`` resolves them."""
    peak = method.default_lr(batch_size)
    warmup = int(min(method.config.warmup_epochs * steps_per_epoch, 0.1 * total_steps + 1))
    return peak, warmup


def make_optimizer(module: Any, method: Any, peak_lr: float, warmup: int, total: int) -> Any:
    """``wb.train``'s optimizer, groups and warm-up/cosine schedule on ``module``'s parameters."""
    import torch

    from workbench.training.module import build_optimizer, lr_lambda

    opt = build_optimizer(method, peak_lr, module)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, total))
    return opt, sched


class Loop:
    """One SSL training loop: a transform, a trainable module and a step.

    Attributes:
        transform: PIL image -> list of view tensors.
        module: The trainable ``nn.Module`` (backbone + heads).
        backbone: The backbone inside ``module``.
        step: ``step(views, epoch, step, max_steps) -> loss`` (forward and loss only).
        after: ``after(step, max_steps)`` after the optimiser step (EMA updates).
        before: ``before(epoch)`` before the optimiser step (gradient edits).
        method: Our Method of the same name (for the optimizer settings).
    """

    def __init__(self, **kw: Any) -> None:
        self.after: Callable[[int, int], None] = lambda s, m: None
        self.before: Callable[[int], None] = lambda e: None
        self.__dict__.update(kw)


def our_loop(method: str, size: int, seed: int = 0, epochs: int = 1, dataset_size: int = 0) -> Loop:
    """The plain-PyTorch loop: our Method and ``wb.make_transform`` (per-image v2 on PIL)."""
    import torch

    import workbench as wb
    from workbench.methods import get_method
    from workbench.nn.backbones import get_backbone

    torch.manual_seed(seed)
    cls = get_method(method)
    backbone, dim = get_backbone("resnet18", input_size=size)
    m = cls(backbone, dim, cls.make_config(), dataset_size=dataset_size, max_epochs=epochs)

    def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
        return m.training_step_loss(views, epoch=epoch, step=step, max_steps=max_steps).loss

    return Loop(
        transform=wb.make_transform(wb.recipe(method, input_size=size)),
        module=m,
        backbone=backbone,
        method=m,
        step=step,
        after=lambda s, n: m.after_optimizer_step(step=s, max_steps=n),
        before=lambda e: m.before_optimizer_step(epoch=e),
    )


def lightly_view_kwargs(spec: Any) -> dict[str, Any]:
    """Keyword arguments of Lightly's view transforms with the values of one of our ViewSpecs."""
    return dict(
        cj_prob=spec.cj_prob,
        cj_strength=spec.cj_strength,
        cj_bright=spec.cj_brightness,
        cj_contrast=spec.cj_contrast,
        cj_sat=spec.cj_saturation,
        cj_hue=spec.cj_hue,
        random_gray_scale=spec.gray_prob,
        sigmas=tuple(spec.blur_sigma),
        hf_prob=spec.hflip_prob,
    )


def lightly_loop(
    method: str, size: int, seed: int = 0, epochs: int = 1, dataset_size: int = 0
) -> Loop:
    """The reference: Lightly's transform, head(s) and loss around the same backbone.

    Head widths, loss settings and augmentation values are our method's defaults at this input
    size (e.g. no blur at <= 64 px, as Lightly's own CIFAR-10 benchmarks), so only the
    implementation differs.
    """
    import copy

    import torch
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule
    from torch import nn

    import workbench as wb
    from workbench.methods import get_method
    from workbench.nn.backbones import get_backbone

    torch.manual_seed(seed)
    cls = get_method(method)
    cfg: Any = cls.make_config()
    backbone, dim = get_backbone("resnet18", input_size=size)
    ours = cls(
        get_backbone("resnet18", input_size=size)[0],
        dim,
        cfg,
        dataset_size=dataset_size,  # MoCo's queue size follows it
        max_epochs=epochs,
    )
    rec = wb.recipe(method, input_size=size)

    def byol_transform() -> Any:  # BYOL's asymmetric pair (BYOL and Barlow Twins)
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

        v1, v2 = rec.group("view1"), rec.group("view2")
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(
                input_size=size,
                min_scale=v1.crop_scale[0],
                gaussian_blur=v1.blur_prob,
                solarization_prob=v1.solarize_prob,
                **lightly_view_kwargs(v1),
            ),
            view_2_transform=BYOLView2Transform(
                input_size=size,
                min_scale=v2.crop_scale[0],
                gaussian_blur=v2.blur_prob,
                solarization_prob=v2.solarize_prob,
                **lightly_view_kwargs(v2),
            ),
        )

    view = rec.groups[0]
    symmetric = dict(min_scale=view.crop_scale[0], gaussian_blur=view.blur_prob)

    if method == "moco":  # Lightly's MoCo v2 example, made symmetric as ours
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.transforms import MoCoV2Transform

        head = MoCoProjectionHead(dim, cfg.hidden_dim, cfg.output_dim)
        bb_m, head_m = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(bb_m)
        deactivate_requires_grad(head_m)
        crit = NTXentLoss(
            temperature=cfg.temperature, memory_bank_size=(ours.queue_size, cfg.output_dim)
        )
        module = nn.ModuleDict({"backbone": backbone, "head": head})

        def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
            x0, x1 = views[:2]
            q0, q1 = head(backbone(torch.cat([x0, x1])).flatten(1)).chunk(2)
            with torch.no_grad():
                k0 = head_m(bb_m(x0).flatten(1))
                k1 = head_m(bb_m(x1).flatten(1))
            return crit(torch.cat([q0, q1]), torch.cat([k1, k0]))

        def after(s: int, n: int) -> None:
            mom = cosine_schedule(s, n, cfg.momentum, 1.0)
            update_momentum(backbone, bb_m, mom)
            update_momentum(head, head_m, mom)

        tf = MoCoV2Transform(input_size=size, **symmetric, **lightly_view_kwargs(view))
        loop = Loop(transform=tf, module=module, backbone=backbone, method=ours, step=step)
        loop.after, loop.extra = after, nn.ModuleDict({"bb_m": bb_m, "head_m": head_m})
        return loop

    if method == "simsiam":
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from lightly.transforms import SimSiamTransform

        proj = SimSiamProjectionHead(dim, cfg.proj_hidden_dim, cfg.output_dim)
        pred = SimSiamPredictionHead(cfg.output_dim, cfg.pred_hidden_dim, cfg.output_dim)
        crit = NegativeCosineSimilarity()
        module = nn.ModuleDict({"backbone": backbone, "proj": proj, "pred": pred})

        def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
            z0, z1 = proj(backbone(torch.cat(views[:2])).flatten(1)).chunk(2)
            p0, p1 = pred(z0), pred(z1)
            return 0.5 * (crit(p0, z1.detach()) + crit(p1, z0.detach()))

        tf = SimSiamTransform(input_size=size, **symmetric, **lightly_view_kwargs(view))
        return Loop(transform=tf, module=module, backbone=backbone, method=ours, step=step)

    if method in ("simclr", "barlowtwins", "vicreg"):  # one head on both views, one loss
        from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
        from lightly.models.modules import BarlowTwinsProjectionHead, SimCLRProjectionHead
        from lightly.models.modules.heads import VICRegProjectionHead
        from lightly.transforms import SimCLRTransform, VICRegTransform

        if method == "simclr":
            head = SimCLRProjectionHead(dim, cfg.hidden_dim, cfg.output_dim)
            crit = NTXentLoss(temperature=cfg.temperature)
            tf = SimCLRTransform(input_size=size, **symmetric, **lightly_view_kwargs(view))
        elif method == "barlowtwins":
            head = BarlowTwinsProjectionHead(dim, cfg.hidden_dim, cfg.output_dim)
            crit = BarlowTwinsLoss(lambda_param=cfg.lambda_param)
            tf = byol_transform()
        else:
            head = VICRegProjectionHead(dim, cfg.hidden_dim, cfg.output_dim, num_layers=3)
            crit = VICRegLoss(
                lambda_param=cfg.lambda_param, mu_param=cfg.mu_param, nu_param=cfg.nu_param
            )
            tf = VICRegTransform(
                input_size=size,
                solarize_prob=view.solarize_prob,
                **symmetric,
                **lightly_view_kwargs(view),
            )
        module = nn.ModuleDict({"backbone": backbone, "head": head})

        def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
            z0, z1 = head(backbone(torch.cat(views[:2])).flatten(1)).chunk(2)
            return crit(z0, z1)

        return Loop(transform=tf, module=module, backbone=backbone, method=ours, step=step)

    if method == "byol":
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        proj = BYOLProjectionHead(dim, cfg.hidden_dim, cfg.output_dim)
        pred = BYOLPredictionHead(cfg.output_dim, cfg.hidden_dim, cfg.output_dim)
        bb_m, proj_m = copy.deepcopy(backbone), copy.deepcopy(proj)
        deactivate_requires_grad(bb_m)
        deactivate_requires_grad(proj_m)
        crit = NegativeCosineSimilarity()
        module = nn.ModuleDict({"backbone": backbone, "proj": proj, "pred": pred})
        module_m = nn.ModuleDict({"bb_m": bb_m, "proj_m": proj_m})

        def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
            x0, x1 = views[:2]
            p0, p1 = pred(proj(backbone(torch.cat([x0, x1])).flatten(1))).chunk(2)
            with torch.no_grad():
                t0 = proj_m(bb_m(x0).flatten(1))
                t1 = proj_m(bb_m(x1).flatten(1))
            return 0.5 * (crit(p0, t1) + crit(p1, t0))

        def after(s: int, n: int) -> None:
            mom = cosine_schedule(s, n, cfg.momentum, 1.0)
            update_momentum(backbone, bb_m, mom)
            update_momentum(proj, proj_m, mom)

        loop = Loop(
            transform=byol_transform(), module=module, backbone=backbone, method=ours, step=step
        )
        loop.after, loop.extra = after, module_m
        return loop

    if method == "dino":
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.transforms import DINOTransform

        def dino_head() -> Any:
            return DINOProjectionHead(
                dim,
                cfg.hidden_dim,
                cfg.bottleneck_dim,
                cfg.output_dim,
                freeze_last_layer=cfg.freeze_last_layer,
                norm_last_layer=cfg.norm_last_layer,
            )

        head = dino_head()
        # Lightly's head uses weight_norm, whose computed weight cannot be deep-copied.
        t_bb, t_head = copy.deepcopy(backbone), dino_head()
        t_head.load_state_dict(head.state_dict())
        deactivate_requires_grad(t_bb)
        deactivate_requires_grad(t_head)
        warm = cfg.warmup_teacher_temp_epochs
        crit = DINOLoss(
            output_dim=cfg.output_dim,
            warmup_teacher_temp=cfg.warmup_teacher_temp,
            teacher_temp=cfg.teacher_temp,
            warmup_teacher_temp_epochs=min(30, epochs // 2) if warm is None else warm,
            student_temp=cfg.student_temp,
            center_momentum=cfg.center_momentum,
        )
        module = nn.ModuleDict({"backbone": backbone, "head": head})
        locals_ = rec.group("local")

        def step(views: list[Any], epoch: int, step: int, max_steps: int) -> Any:
            g = views[:2]
            with torch.no_grad():
                t = t_head(t_bb(torch.cat(g)).flatten(1)).chunk(2)
            s = [head(backbone(torch.cat(g)).flatten(1))]
            if len(views) > 2:
                s.append(head(backbone(torch.cat(views[2:])).flatten(1)))
            return crit(list(t), list(torch.cat(s).chunk(len(views))), epoch=epoch)

        def after(s: int, n: int) -> None:
            mom = cosine_schedule(s, n, cfg.momentum, 1.0)
            update_momentum(backbone, t_bb, mom)
            update_momentum(head, t_head, mom)

        g1, g2 = rec.group("global1"), rec.group("global2")
        tf = DINOTransform(
            global_crop_size=size,
            global_crop_scale=tuple(g1.crop_scale),
            local_crop_size=int(locals_.size),
            local_crop_scale=tuple(locals_.crop_scale),
            n_local_views=int(locals_.count),
            gaussian_blur=(g1.blur_prob, g2.blur_prob, locals_.blur_prob),
            solarization_prob=g2.solarize_prob,
            **lightly_view_kwargs(g1),
        )
        loop = Loop(transform=tf, module=module, backbone=backbone, method=ours, step=step)
        loop.after = after
        loop.before = lambda e: head.cancel_last_layer_gradients(e)
        loop.extra = nn.ModuleDict({"t_bb": t_bb, "t_head": t_head})
        return loop

    raise ValueError(
        f"No Lightly reference for method {method!r}. "
        "Valid: barlowtwins, byol, dino, moco, simclr, simsiam, vicreg"
    )


def make_loop(
    kind: str, method: str, size: int, seed: int = 0, epochs: int = 1, dataset_size: int = 0
) -> Loop:
    """``kind``: "plain" (our blocks) or "lightly" (the reference's blocks).

    ``dataset_size``: the training images (MoCo's default queue size follows it, as in wb.train).
    """
    if kind == "plain":
        return our_loop(method, size, seed, epochs, dataset_size)
    if kind == "lightly":
        return lightly_loop(method, size, seed, epochs, dataset_size)
    raise ValueError(f"Unknown loop {kind!r}. Valid: lightly, plain")


def train_loop(
    loop: Loop,
    ds: Any,
    indices: Any,
    *,
    batch_size: int,
    epochs: int | None = None,
    max_steps: int | None = None,
    num_workers: int = 1,
    seed: int = 0,
    device: str = "cpu",
    amp: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Train ``loop`` on ``ds[indices]`` with a shuffling, dropping DataLoader.

    Returns:
        ``time.perf_counter()`` after every optimiser step (the loss is read back each step, as
        ``wb.train`` does for its step records, so both pay the same synchronisation).
    """
    import torch
    from torch.utils.data import DataLoader

    dl = DataLoader(
        Indexed(ds, indices, loop.transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=device == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
    per_epoch = len(dl)
    total = max_steps if max_steps is not None else int(epochs or 1) * per_epoch
    n_epochs = math.ceil(total / per_epoch)
    peak_lr, warmup = schedule(loop.method, batch_size, per_epoch, total)
    loop.module.to(device)
    if getattr(loop, "extra", None) is not None:
        loop.extra.to(device)
    opt, sched = make_optimizer(loop.module, loop.method, peak_lr, warmup, total)
    loop.module.train()
    stamps: list[float] = []
    step = 0
    for epoch in range(n_epochs):
        for views in dl:
            views = [v.to(device, non_blocking=True) for v in views]
            with torch.autocast(device, torch.bfloat16, enabled=amp):
                loss = loop.step(views, epoch, step, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loop.before(epoch)
            opt.step()
            sched.step()
            loop.after(step, total)
            float(loss.detach())
            stamps.append(time.perf_counter())
            step += 1
            if on_step is not None:
                on_step(step)
            if step >= total:
                return stamps
    return stamps


# ----------------------------------------------------------------------------- RESULTS.md

READING = {
    "throughput": (
        "What limits these: {nproc} cores (load average {load} at the end of the last run, "
        "the benchmark's own processes included), so absolute images/s swing between trials; "
        "each ratio is the median of per-round ratios between trials that ran back to back, "
        "which cancels part of that, not all (the range column shows how much is left). "
        "The convolution forward and backward dominate every step (the ceiling row is our "
        "model alone, at our precision and memory format). Ours and the ceiling run conv nets "
        "channels-last (NHWC), on the CPU too, where oneDNN's convolutions are faster that "
        "way; the per-image loops run NCHW, as such loops are usually written. The ours-bf16 "
        "row, where the hardware has bf16 units, "
        "runs it under bf16 autocast (heads and losses stay in float32): the default on GPUs, "
        "opt-in on such CPUs; without them bf16 is emulated and the row is left out. The "
        "per-image loops transform each image in a DataLoader worker, a "
        "second process competing for the same cores; ours augments the whole cached uint8 "
        "batch with a few tensor ops in the training process, then steps the model. Ours "
        "also pays Lightning's loop, the step records and an end-of-epoch checkpoint inside "
        "the timed window. Peak memory is the PSS of the process tree above the post-import "
        "baseline: the per-image loops pay for a worker process."
    ),
    "probe": (
        "The batched augmentation is many small element-wise ops. On a quiet machine two "
        "threads help a little; on an oversubscribed one every multi-threaded op waits on "
        "cores other jobs hold, and the same batch has been measured at 1.75 s instead of "
        "0.036 s, so the trainer runs it on one thread on the CPU."
    ),
    "quality": (
        "What limits it: the epoch budget that fits a loaded {nproc}-core CPU. After a "
        "few epochs SSL features can still score below the untrained backbone (the "
        "``random`` row; random conv features do well on digits), so a short budget compares "
        "implementations, not final features; only gaps larger than the seed spread mean "
        "anything. The 30-epoch runs are the accuracy target. On shapes both implementations stay "
        "near chance after 30 epochs: the default crops (8-100% of the area) often miss the "
        "small shape, while the textured background is shared by both views, so the instance "
        "task is solved from the background, the nuisance."
    ),
    "interactive": (
        "What limits it: the import is lazy (heavy modules load on first use); the preview "
        "redraw is CPU-bound PIL/v2 work on one thread; UMAP's first fit in a process compiles "
        "numba code (the cold figure) and later fits are bounded by its optimisation epochs; "
        "kNN is one (N x D) @ (D x M) matmul plus a top-k, memory-bandwidth bound."
    ),
    "map": (
        "What limits it: the kernel side of a click is one (1 x D) @ (D x N) similarity, a top-k "
        "and a few PNG thumbnails as data URLs; the PNG explorer it replaced redrew a matplotlib "
        "map of every point per selection (the reference). Headless Chromium has no GPU: WebGL "
        "runs in SwiftShader on the same {nproc} loaded cores, so frame times on a desktop with "
        "a GPU are lower. The kNN colouring (leave-one-out over all points) fills in after the "
        "map is on screen. On a quiet machine the kernel's share of the on-screen time is the "
        "explorer's build (the first row); the rest is the browser loading the widget's "
        "JavaScript and the state of every point and creating its WebGL context in SwiftShader, "
        "on the same cores as the kNN colouring thread. Unlabelled (no colouring thread, "
        "`map_scale_noknn.json`) the same map was on screen in 1.71 s in JupyterLab and 2.43 s "
        "under Voila against 2.39 s and 3.86 s labelled (one run each, same hour): the thread "
        "costs about 0.7 s and 1.4 s of it, so starting it once the map is drawn is the next "
        "step. The first record, 22 s under Voila, was taken at a load average of 18 on 2 "
        "cores. Why jupyter-scatter: "
        "of the three tried it alone has click, lasso, brush and rectangle selection synced to "
        "a trait, image tooltips and linked views built in, with its JavaScript in the wheel; "
        "plotly's FigureWidget took the longest to build at this size (its state is JSON) and "
        "bqplot, quickest to build, has no image tooltips or linked views (its lasso is a "
        "separate interaction to wire). Import times swung by 2x between runs on the loaded "
        "cores (jupyter-scatter: 8.3 s, then 15.6 s), so only their order means something."
    ),
}


def _fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x):
            return "-"
        return f"{x:.{nd}f}"
    return str(x)


def _machine_line(m: dict[str, Any]) -> str:
    v = m.get("versions", {})
    vs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    kind = f" ({m['cpu_kind']}: {' '.join(m.get('cpu_flags', []))})" if m.get("cpu_kind") else ""
    return (
        f"{m.get('date')}; {m.get('cpu')}{kind} x{m.get('nproc')}, load average "
        f"{m.get('loadavg')} (1, 5, 15 min); {vs}"
    )


def _render_throughput(d: dict[str, Any], name: str) -> list[str]:
    s, m = d["settings"], d["machine"]
    lines = [
        f"### Throughput: {s['method']}, {s['input_size']} px, batch {s['batch_size']}, "
        f"{s['device']} (`{name}`)",
        "",
        f"- {s['model']}, {s['data']}, precision {s['precision']}.",
        f"- Command: `{m['command']}`",
        f"- Machine: {_machine_line(m)}",
        f"- {s['steps']} timed steps after {s['warmup']} warm-up steps per trial, "
        f"{s['repeats']} trials per contender, alternating; per-image loops use "
        f"{s['workers']} DataLoader worker(s); torch threads per process: "
        f"{s.get('torch_threads', 'torch default')}. Medians.",
        "",
        "| contender | images/s | views/s | images/s (median step) | peak memory (MiB) "
        "| ours / this | range over rounds | augmentation |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    ours = d["trials"].get("ours", [])
    for cname, r in d["summary"].items():
        ratio = d["ratios"].get(f"ours/{cname}")
        per = [o["images_per_s"] / x["images_per_s"] for o, x in zip(ours, d["trials"][cname])]
        rng = f"{min(per):.2f} - {max(per):.2f}" if ratio and per else "-"
        lines.append(
            f"| {cname} | {_fmt(r['images_per_s'])} | {_fmt(r['views_per_s'])} | "
            f"{_fmt(r['images_per_s_median_step'])} | {_fmt(r['peak_mem_mib'], 0)} | "
            f"{_fmt(ratio, 2) if ratio else '1'} | {rng} | {r['augmentation']} |"
        )
    lines.append("")
    probe = d.get("augment_probe_s_per_batch")
    if probe:
        lines += [
            f"Data path alone, seconds per batch of {s['batch_size']} images (all views), one "
            f"process, alternating, medians (`{d.get('augment_probe_command', m['command'])}`):",
            "",
            "| augmentation | s / batch |",
            "|---|---:|",
            *[f"| {k} | {_fmt(v, 3)} |" for k, v in probe.items()],
            "",
        ]
    return lines


def _render_quality(d: dict[str, Any], name: str) -> list[str]:
    s, m = d["settings"], d["machine"]
    lines = [
        f"### kNN top-1 after {s['epochs']} epoch(s): {s['method']} (`{name}`)",
        "",
        f"- {s['model']}, {s['input_size']} px, batch {s['batch_size']}, seeds {s['seeds']}.",
        f"- Command: `{m['command']}`",
        f"- Machine: {_machine_line(m)}",
        f"- Torch threads: {s.get('torch_threads')}; reference DataLoader workers: "
        f"{s.get('reference_workers')}.",
        f"- Held-out {int(s['val_fraction'] * 100)}% (stratified, per seed), kNN k="
        f"{s['knn']['k']}, t={s['knn']['temperature']}, cosine, "
        "`workbench.eval.knn_accuracy` for every contender.",
        "",
        "| data | contender | mean | std | min | max | train time (s, median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for data, r in d["results"].items():
        for name, q in r["summary"].items():
            lines.append(
                f"| {data} | {name} | {_fmt(q['mean'], 4)} | {_fmt(q['std'], 4)} | "
                f"{_fmt(q['min'], 4)} | {_fmt(q['max'], 4)} | {_fmt(q['seconds'], 0)} |"
            )
    lines.append("")
    return lines


def _render_interactive(d: dict[str, Any], name: str) -> list[str]:
    m = d["machine"]
    imp, pv, knn = d["import"], d["preview"], d["knn"]
    lines = [
        "### Interactive latencies",
        "",
        f"- Command: `{m['command']}`",
        f"- Machine: {_machine_line(m)}",
        "",
        "| what | ours | reference (same run) | reference |",
        "|---|---:|---:|---|",
        f"| import (s, best of {d['settings']['imports']}) | "
        f"{_fmt(imp['workbench_best_s'], 3)} | {_fmt(imp['torch_best_s'], 3)} | `import torch` |",
        f"| import (s) | {_fmt(imp['workbench_best_s'], 3)} | "
        f"{_fmt(imp['lightly_blocks_best_s'], 3)} | Lightly's transforms, losses, heads |",
        f"| preview redraw (ms, median; {pv['setting']}) | {_fmt(pv['redraw_median_ms'], 0)} | "
        f"{_fmt(pv['matplotlib_median_ms'], 0)} | same preview through matplotlib |",
        f"| kNN {knn['bank']} bank, {knn['queries']} queries (s) | "
        f"{_fmt(knn['knn_accuracy_s'], 2)} | {_fmt(knn['sklearn_knn_s'], 2)} | "
        "sklearn KNeighborsClassifier, brute, cosine |",
    ]
    pr = d["projection"]
    lines.append(
        f"| UMAP first fit in a process (s, numba compile) | {_fmt(pr['umap_cold_s'], 1)} | "
        f"{_fmt(pr.get('umap_learn_cold_s'), 1)} | umap-learn called directly |"
    )
    for key, r in pr.items():
        if not isinstance(r, dict):
            continue
        lines.append(
            f"| PCA {key} (s) | {_fmt(r['pca_s'], 2)} | {_fmt(r['sklearn_pca_s'], 2)} | "
            "sklearn PCA(2) |"
        )
        lines.append(
            f"| UMAP {key} (s, warm) | {_fmt(r['umap_s'], 1)} | "
            f"{_fmt(r.get('umap_learn_default_s'), 1)} | umap-learn defaults, cosine |"
        )
    lines.append("")
    return lines


def _render_map_candidates(d: dict[str, Any], name: str) -> list[str]:
    m = d["machine"]
    lines = [
        f"### Map libraries tried, {d['points']} points (`{name}`)",
        "",
        f"- Command: `{m['command']}`",
        f"- Machine: {_machine_line(m)}",
        "",
        "| library | import (s) | build widget (s) | state sent (MiB) | front end shipped |",
        "|---|---:|---:|---:|---|",
    ]
    for lib, r in d["candidates"].items():
        if not r.get("installed", True) or "error" in r:
            lines.append(f"| {lib} | {r.get('error', 'not installed')} | | | |")
            continue
        fe = ", ".join(f"`{f}`" for f in r["front_end"]) or "none found"
        lines.append(
            f"| {lib} | {_fmt(r['import_s'], 2)} | {_fmt(r['build_s'], 3)} | "
            f"{_fmt(r['state_mib'], 2)} | {fe} |"
        )
    lines.append("")
    return lines


def _pct(r: dict[str, float]) -> str:
    """p50 / p95 / max of a timing record, in whole units."""
    return f"{_fmt(r['p50'], 0)} / {_fmt(r['p95'], 0)} / {_fmt(r['max'], 0)}"


def _on_screen(r: dict[str, Any]) -> str:
    """An on-screen time, with the runs it is the median of."""
    each = r.get("on_screen_runs_s")
    return _fmt(r["on_screen_s"], 2) + (f" (median of {', '.join(map(str, each))})"
                                        if each and len(each) > 1 else "")  # fmt: skip


def _map_headless_rows(h: dict[str, Any]) -> list[str]:
    """The kernel-side rows of the interactive map's table."""

    return [
        f"| explorer with its map, projection given (s) | {_fmt(h['explorer_s'], 2)} | <= 2 s |",
        f"| then in the background: kNN colouring (s) | {_fmt(h['fill_in_s'], 2)} | - |",
        f"| selection -> neighbour grid (ms, p50 / p95 / max) | {_pct(h['select_ms'])} | "
        f"<= 300 ms; the PNG explorer's redraw: {_pct(h['png_redraw_ms'])} |",
        f"| lasso of 500 -> grid + make-up (ms, p50 / p95 / max) | {_pct(h['lasso_500_ms'])} | - |",
        f"| hover thumbnail, made on demand (ms, p50 / p95 / max) | {_pct(h['preview_ms'])} | - |",
        f"| first `import jscatter` (pandas, pyarrow) (s) | {_fmt(h['import_jscatter_s'], 2)} | "
        "- |",
    ]


def _render_map(d: dict[str, Any], name: str) -> list[str]:
    if "candidates" in d:
        return _render_map_candidates(d, name)
    m, h, c = d["machine"], d["headless"], d.get("chromium")

    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in d.get("cpu_flags", {}).items())
    lines = [
        f"### Interactive map, {d.get('points', h.get('points'))} points (`{name}`)",
        "",
        f"- Command: `{m['command']}`",
        f"- Machine: {_machine_line(m)}; CPU flags: {flags}",
        "",
        "| what | ours | target / reference (same run) |",
        "|---|---:|---|",
    ]
    lines += _map_headless_rows(h) if h else []  # none with --browser-only
    lab, app = d.get("jupyterlab"), d.get("voila_app")
    if lab:
        lines.append(
            "| Chromium, JupyterLab: projection -> map on screen (s; the cell that builds the "
            f"explorer, run in an open notebook) | {_on_screen(lab)} | <= 2 s |"
        )
    if app:
        lines.append(
            "| Chromium, Voila app: projection -> map on screen (s; a click in the page on "
            f"screen opens the explorer, as `workbench app` does) | {_on_screen(app)} | <= 2 s |"
        )
    if c:
        lines += [
            f"| Chromium, Voila page load: projection -> map on screen (s; the page, its widget "
            f"JS and the state of every widget load after the kernel ran) | {_on_screen(c)} | - |",
            f"| Chromium: pan/zoom frame time (ms, p50 / p95 / max; {c['frames']} frames) | "
            f"{_pct(c['frame_ms'])} | 16.7 ms = 60 fps |",
            "",
            f"WebGL renderer: `{c['webgl_renderer']}`; map canvas {c['map_canvas']} px in a "
            f"{c['viewport']} viewport.",
        ]
    lines.append("")
    return lines


def _wrap(line: str, width: int = 100) -> str:
    """Wrap prose and list items to ``width``; tables and headings stay on one line."""
    import textwrap

    if len(line) <= width or line.startswith(("|", "#")):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width, subsequent_indent=indent, break_on_hyphens=False)


def _gpu_check_line() -> str:
    path = RESULTS / "gpu_check_cuda.json"
    if not path.is_file():
        return (
            "GPU check (`python benchmarks/gpu_check.py`, issue 15 item 17): **not run yet**; no "
            "GPU figures exist until it has (every method 2 epochs at 96 px in bf16, DINO "
            "multi-crop on the batched path, throughput vs Lightly and peak memory)."
        )
    d = json.loads(path.read_text())
    m, tp = d["machine"], d.get("throughput", {})
    ok = sum(r.get("status") == "finished" for r in d.get("methods", {}).values())
    return (
        f"GPU check (`gpu_check_cuda.json`, {m.get('gpu')}, {m.get('date')}): "
        f"{ok}/{len(d.get('methods', {}))} methods finished; SimCLR "
        f"{_fmt(tp.get('ours_images_per_s'), 0)} img/s, ours/Lightly "
        f"{_fmt(tp.get('ratio_ours_over_lightly'), 2)}."
    )


def _render_readback(d: dict[str, Any], name: str) -> list[str]:
    sec, st, m = d["seconds_per_step"], d["settings"], d["machine"]
    return [
        f"## Per-step monitor read-back (`{name}`)",
        "",
        f"`benchmarks/readback.py --device {st['device']} --every {st['every']}`, {m['cpu']}, "
        f"{m['date']}, 1-min load average {m['loadavg'][0]} on {m['nproc']} cores: "
        f"before (4 reads per step) {sec['before'] * 1e6:.0f} us/step, after (one read every "
        f"{st['every']} steps) {sec['after'] * 1e6:.0f} us/step, ratio "
        f"{d['ratio_before_over_after']:.2f}. The monitor's work only, not a training step.",
        "",
    ]


def render(path: Path | None = None) -> Path:
    """Write RESULTS.md from the (non-quick) JSON results in benchmarks/results/."""
    path = path or Path(__file__).parent / "RESULTS.md"
    out = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/common.py` (and at the end of every benchmark run) from "
        "`benchmarks/results/*.json`; do not edit by hand. Every figure was measured with a "
        "reference in the same run; ratios are ours / reference unless the column says "
        "otherwise. Reproduce with the command on each section (the `bench` extra installs "
        "Lightly SSL).",
        "",
        "GPU: no GPU machine was lent while these were taken, so only CPU figures are here. "
        "`train_throughput.py --device cuda --input-size 96 --batch-size 256` (and 224) runs the "
        "same comparison on a GPU (ours in bf16-mixed, the references under bf16 autocast).",
        "",
        _gpu_check_line(),
        "",
    ]
    groups = (
        ("## Training throughput", "throughput", _render_throughput),
        ("## Accuracy at equal epochs", "quality", _render_quality),
        ("## Interactive", "interactive", _render_interactive),
        ("## Interactive embedding map", "map", _render_map),
    )
    for title, key, fn in groups:
        out += [title, ""]
        files = [p for p in sorted(RESULTS.glob(f"{key}*.json")) if "quick" not in p.stem]
        if not files:
            out += ["(not measured yet)", ""]
            continue
        machine: dict[str, Any] = {}
        for f in files:
            d = json.loads(f.read_text())
            machine = d["machine"]
            out += fn(d, f.name)
        load = machine.get("loadavg", ["?"])[0]
        out += [READING[key].format(nproc=machine.get("nproc"), load=load), ""]
        if key == "throughput":
            out += [READING["probe"], ""]
    for f in sorted(RESULTS.glob("readback_*.json")):
        out += _render_readback(json.loads(f.read_text()), f.name)
    # reports their scripts rewrite after every record, each under its own heading here
    for stem, title in (
        ("method_table", "Every method at 30 epochs vs Lightly SSL"),
        ("distillation", "Distillation offline"),
    ):
        report = RESULTS / f"{stem}.md"
        if report.is_file():
            body = report.read_text().splitlines()[1:]  # its own title gives way to this one
            out += [f"## {title} (`{stem}.md`)", *(
                "#" + line if line.startswith("## ") else line for line in body
            ), ""]  # fmt: skip
    text = "\n".join(_wrap(line) for line in out).rstrip() + "\n"
    path.write_text(text)
    return path


if __name__ == "__main__":
    print(render())
