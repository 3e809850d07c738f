"""``wb.train``: a short, observable, interruptible pretraining run that writes a run folder."""

from __future__ import annotations

import logging
import os
import platform
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.augment.recipes import IMAGENET_MEAN, IMAGENET_STD
from workbench.runs import CHECKPOINT, Run, RunWriter, new_run_dir, prepare_out

EVAL_BANK_MAX = 5000  # kNN bank images (train split) kept for the per-epoch monitor
EVAL_QUERY_MAX = 2000  # held-out query images


RUN_DIR_ENV = "WORKBENCH_RUN_DIR"


def _is_secondary_process() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0."""
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    return (local > 0 or node > 0) and RUN_DIR_ENV in os.environ


def _resolve_device(accelerator: str, devices: Any, precision: str) -> tuple[str, Any, str]:
    import torch

    valid_acc = ("auto", "cpu", "gpu", "cuda", "mps")
    if accelerator not in valid_acc:
        raise ValueError(f"Unknown accelerator {accelerator!r}. Valid: {list(valid_acc)}")
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"accelerator={accelerator!r} but no CUDA GPU is visible to torch "
            f"(torch {torch.__version__}). Use accelerator='cpu' or 'auto'."
        )
    if devices == "auto":
        devices = 1  # one device unless asked: multi-GPU goes through `strategy`/`devices`
    if precision == "auto":
        if accelerator in ("gpu", "cuda"):
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            # bf16 on a CPU with bf16 units trains ~1.3x faster but cost ~1.5 kNN points after
            # 30 SimCLR epochs on digits (benchmarks/results/simclr_study.md): opt-in only.
            precision = "32-true"
    return accelerator, devices, precision


def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 convolutions and matmuls natively (AVX512-BF16 or AMX).

    Without them bf16 is emulated and slower than float32.
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _resolve_input_size(input_size: int | None, ds: Any, accelerator: str) -> int:
    if input_size is not None:
        if int(input_size) < 8:
            raise ValueError(f"input_size={input_size} is too small; use 8 or more pixels.")
        return int(input_size)
    native = ds.meta.get("image_size")
    if native:
        return int(native)
    return 224 if accelerator in ("gpu", "cuda") else 96


def _resolve_model(model: Any, input_size: int, accelerator: str) -> Any:
    if model == "auto":
        small = input_size <= 64 and accelerator in ("gpu", "cuda")
        return "resnet18-small" if small else "resnet18"
    return model


def train(
    data: Any,
    method: str = "simclr",
    model: Any = "resnet18",
    out: str | Path | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    input_size: int | None = None,
    lr: float | None = None,
    devices: Any = "auto",
    accelerator: str = "auto",
    precision: str = "auto",
    num_workers: int | str = "auto",
    seed: int = 0,
    method_args: dict[str, Any] | None = None,
    transform_args: Any = None,
    val_fraction: float = 0.2,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] | None = None,
    strategy: Any = "auto",
    num_nodes: int = 1,
    max_steps: int | None = None,
    augment_on: str = "auto",
    sync_batchnorm: bool = False,
    runs_root: str | Path = "runs",
) -> Run:
    """Pretrain a backbone with a self-supervised method and write a run folder.

    Args:
        data: Dataset spec for ``wb.load_dataset`` (``"digits"``, a folder, ...) or an ImageDataset.
        method: A name of ``wb.list_methods()``.
        model: Backbone name (``wb.list_backbones()``), an ``nn.Module``, or ``"auto"``:
            ``resnet18-small`` for inputs <= 64 px on a GPU (the small-image stem matters for
            accuracy but costs ~10x the compute, too slow on a CPU), else ``resnet18``.
        out: Run folder; None makes ``runs/<method>-<timestamp>``.
        epochs: Training epochs.
        batch_size: Images per step (each gives several views); reduced if above the data size.
        input_size: Global view side; None: the dataset's native size, else 224 (GPU) / 96 (CPU).
        lr: Peak learning rate; None: the method's base rate scaled by batch_size / 256.
        devices: Lightning ``devices`` (``"auto"`` = one).
        accelerator: ``"auto"`` | ``"cpu"`` | ``"gpu"``.
        precision: Lightning precision; ``"auto"`` = bf16-mixed on GPUs that have it (else
            16-mixed), 32-true on CPUs. ``"bf16-mixed"`` on a CPU with AVX512-BF16 or AMX trains
            about 1.3x faster. Heads and losses always compute in float32.
        num_workers: DataLoader workers; ``"auto"`` picks a safe count for the machine.
        seed: Seeds the split, the initialisation and the augmentations.
        method_args: Overrides of the method's config (``wb.describe_method(m)["defaults"]``).
        transform_args: Overrides for ``wb.make_transform`` (dict), a Recipe, or a MultiView.
        val_fraction: Held-out share (stratified) for the kNN monitor; 0 disables it.
        resume: Continue the run in ``out`` from its last checkpoint.
        overwrite: Replace an existing run in ``out``.
        callbacks: Objects with any of on_start(run), on_step(rec), on_epoch(rec), on_event(ev),
            on_end(run), should_stop() -> bool (polled after every batch).
        strategy: Lightning strategy (``"ddp"``, ``"ddp_spawn"``, ``"ddp_notebook"``, ...).
        num_nodes: Lightning ``num_nodes``.
        max_steps: Stop after this many optimiser steps (for quick checks).
        augment_on: ``"device"`` (cached tensors, batched on-device augmentation),
            ``"workers"`` (per-image torchvision v2 in DataLoader workers) or ``"auto"``.
        sync_batchnorm: Convert BatchNorm to SyncBatchNorm under DDP.
        runs_root: Parent folder used when ``out`` is None.

    Returns:
        The Run (status "finished", "stopped" or "failed").

    Raises:
        ValueError: Invalid arguments (the message names the value and the valid choices), or an
            existing ``out`` without ``resume``/``overwrite``.
        FileNotFoundError: Missing data.
    """
    import torch

    from workbench.data import load_dataset, stratified_split
    from workbench.methods import get_method, settings_hints
    from workbench.nn.backbones import get_backbone, prefers_channels_last

    method_cls = get_method(method)
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1.")
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size} must be >= 2 (SSL losses compare samples).")
    if augment_on not in ("auto", "device", "workers"):
        raise ValueError(f"augment_on={augment_on!r}. Valid: ['auto', 'device', 'workers']")
    accelerator, devices, precision = _resolve_device(accelerator, devices, precision)
    # Under strategy="ddp" Lightning re-runs the calling script for ranks > 0; they find the run
    # folder rank 0 chose in the environment and write nothing themselves.
    secondary = _is_secondary_process()
    if secondary:
        out = Path(os.environ[RUN_DIR_ENV])
    else:
        out = Path(out) if out is not None else new_run_dir(runs_root, prefix=method)
        out = prepare_out(out, overwrite=overwrite, resume=resume)
        os.environ[RUN_DIR_ENV] = str(out)
    writer = RunWriter(out, enabled=not secondary)
    users = None
    try:
        ds = load_dataset(data)
        size = _resolve_input_size(input_size, ds, accelerator)
        model_name = _resolve_model(model, size, accelerator)
        recipe, multiview = _resolve_transform(method, transform_args, size)

        labels = ds.labels if ds.has_labels else None
        if val_fraction > 0 and labels is not None:
            train_idx, val_idx = stratified_split(labels, val_fraction=val_fraction, seed=seed)
        else:
            train_idx, val_idx = np.arange(len(ds)), np.arange(0)
        events: list[tuple[str, str]] = []
        if ds.skipped:
            events.append(
                (
                    "skipped_files",
                    f"{len(ds.skipped)} unreadable file(s) skipped: "
                    + "; ".join(str(s) for s in ds.skipped[:10]),
                )
            )
        world = int(devices) * num_nodes if isinstance(devices, int) else 1
        per_device = len(train_idx) // max(1, world)
        if batch_size > per_device:
            new_bs = max(2, per_device)
            events.append(
                (
                    "batch_size_reduced",
                    f"batch_size={batch_size} is larger than the "
                    f"{per_device} training images per device; using {new_bs}.",
                )
            )
            batch_size = new_bs
        for hint in settings_hints(method, batch_size=batch_size, epochs=epochs):
            events.append(("hint", hint))
        if accelerator == "cpu" and precision.startswith("bf16") and not cpu_has_bf16():
            events.append(("hint", f"precision={precision!r} on a CPU without native bf16 "
                           "(AVX512-BF16 or AMX) is emulated and slower than float32; use "
                           "precision='auto' (32-true on CPUs)."))  # fmt: skip

        import lightning as L

        L.seed_everything(seed, workers=True, verbose=False)
        backbone, feature_dim = get_backbone(model_name, input_size=size)
        cfg = method_cls.make_config(**(method_args or {}))
        kw: dict[str, Any] = {"dataset_size": len(train_idx), "max_epochs": epochs}
        if method.startswith("distillation"):
            kw["input_size"] = size
        ssl = method_cls(backbone, feature_dim, cfg, **kw)

        from workbench.training.data import CACHE_BYTES_LIMIT, cache_size_for, decode_to_tensor

        per_image = augment_on == "workers" or multiview is not None
        cache_side = None
        if not per_image:
            cache_side = cache_size_for(ds, size)
            if augment_on == "auto" and len(ds) * 3 * cache_side**2 > CACHE_BYTES_LIMIT:
                per_image = True
        # Decoded once: the training cache, which also serves as the kNN bank when it fits.
        train_images = None if per_image else decode_to_tensor(ds, train_idx, int(cache_side))  # type: ignore[arg-type]
        loader, augment = _build_loader(
            ds, train_idx, recipe, multiview, train_images, batch_size, num_workers, seed
        )
        steps_per_epoch = len(loader) // max(1, world) if world > 1 else len(loader)
        total_steps = max_steps or epochs * max(1, steps_per_epoch)
        peak_lr = lr if lr is not None else ssl.default_lr(batch_size * world)
        warmup = int(min(cfg.warmup_epochs * steps_per_epoch, 0.1 * total_steps + 1))
        channels_last = prefers_channels_last(backbone)

        from workbench.training.callbacks import EvalSet, MonitorCallback, UserCallbacks
        from workbench.training.module import SSLModule

        mean = tuple(recipe.mean if recipe is not None else IMAGENET_MEAN)
        std = tuple(recipe.std if recipe is not None else IMAGENET_STD)

        eval_set = None
        if len(val_idx):
            rng = np.random.default_rng(seed)
            bank_idx = (
                train_idx
                if len(train_idx) <= EVAL_BANK_MAX
                else np.sort(rng.choice(train_idx, EVAL_BANK_MAX, replace=False))
            )
            q_idx = (
                val_idx
                if len(val_idx) <= EVAL_QUERY_MAX
                else np.sort(rng.choice(val_idx, EVAL_QUERY_MAX, replace=False))
            )
            reuse = train_images is not None and cache_side == size and bank_idx is train_idx
            eval_set = EvalSet(
                train_images if reuse else decode_to_tensor(ds, bank_idx, size),  # type: ignore[arg-type]
                labels[bank_idx],  # type: ignore[index]
                decode_to_tensor(ds, q_idx, size),
                labels[q_idx],  # type: ignore[index]
                mean,
                std,
            )

        module = SSLModule(
            ssl,
            lr=peak_lr,
            max_steps=total_steps,
            warmup_steps=warmup,
            augment=augment,
            channels_last=channels_last,
        )
        config = {
            "method": method,
            "model": model_name if isinstance(model_name, str) else "custom",
            "data": data if isinstance(data, (str, Path)) else ds.name,
            "dataset": repr(ds),
            "num_images": len(ds),
            "num_train": len(train_idx),
            "num_val": len(val_idx),
            "class_names": ds.class_names,
            "epochs": epochs,
            "batch_size": batch_size,
            "input_size": size,
            "lr": peak_lr,
            "lr_was_auto": lr is None,
            "optimizer": ssl.resolved_optimizer(),
            "weight_decay": ssl.weight_decay(),
            "warmup_steps": warmup,
            "max_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "devices": devices,
            "accelerator": accelerator,
            "precision": precision,
            "channels_last": channels_last,
            "strategy": str(strategy),
            "num_nodes": num_nodes,
            "num_workers": loader.num_workers,
            "augment_on": "workers" if per_image else "device",
            "cache_side": cache_side,
            "seed": seed,
            "val_fraction": val_fraction,
            "feature_dim": feature_dim,
            "method_args": cfg.to_dict(),
            "transform": recipe.to_dict() if recipe is not None else repr(multiview),
            "mean": list(mean),
            "std": list(std),
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "resumed": bool(resume),
        }
        if resume:
            state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
            writer.truncate_after(int(state.get("global_step", 0)))
            writer.log(f"resuming from {out / CHECKPOINT} (step {state.get('global_step')})")
        writer.write_config(config)
        if config["model"] == "custom" and not secondary:
            (out / "exported").mkdir(exist_ok=True)
            torch.save(backbone, out / "exported" / "backbone_module.pt")
        writer.log(
            f"{method} / {config['model']} on {ds!r}: {epochs} epochs, batch {batch_size}, "
            f"{size}px, lr {peak_lr:.4g}, {accelerator} x{devices}, {precision}"
        )
        writer.status("running")
        run = Run(out)
        users = UserCallbacks(callbacks or [], writer)
        monitor = MonitorCallback(writer, users, eval_set, batch_size, epochs, feature_dim)
        users.call("on_start", run)
        _quiet_lightning()
        trainer = L.Trainer(
            max_epochs=epochs,
            max_steps=max_steps or -1,
            accelerator=accelerator,
            devices=devices,
            precision=precision,  # type: ignore[arg-type]
            strategy=strategy,
            num_nodes=num_nodes,
            callbacks=[monitor],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            sync_batchnorm=sync_batchnorm,
            default_root_dir=str(out),
            deterministic=False,
            use_distributed_sampler=True,
        )
        for kind, msg in events:
            monitor.event(trainer, kind, msg)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # NaN skip
            warnings.filterwarnings("ignore", ".*too few batches.*|.*smaller than the logging.*")
            trainer.fit(
                module,
                train_dataloaders=loader,
                ckpt_path=str(out / CHECKPOINT) if resume else None,
            )
        if trainer.global_rank == 0:
            status = "failed" if monitor.failed else "stopped" if monitor.stopped else "finished"
            writer.status(status)
    except BaseException as e:
        writer.record({"type": "event", "kind": "error", "message": f"{type(e).__name__}: {e}"})
        writer.log(f"{type(e).__name__}: {e}", "ERROR")
        writer.status("failed", error=f"{type(e).__name__}: {e}")
        writer.close()
        os.environ.pop(RUN_DIR_ENV, None)
        if users is not None:
            users.call("on_end", Run(out))
        raise
    writer.close()
    os.environ.pop(RUN_DIR_ENV, None)
    run = Run(out)
    users.call("on_end", run)
    return run


def _resolve_transform(method: str, transform_args: Any, size: int) -> tuple[Any, Any]:
    """(Recipe, None) for recipes; (None, MultiView) for a user-composed multi-view transform."""
    from workbench.augment import MultiView, Recipe, recipe

    if isinstance(transform_args, MultiView):
        return None, transform_args
    if isinstance(transform_args, Recipe):
        return transform_args, None
    args = dict(transform_args or {})
    args.setdefault("input_size", size)
    return recipe(method, **args), None


def _build_loader(
    ds: Any,
    train_idx: np.ndarray,
    recipe: Any,
    multiview: Any,
    train_images: Any,
    batch_size: int,
    num_workers: Any,
    seed: int,
) -> tuple[Any, Any]:
    import torch
    from torch.utils.data import DataLoader

    from workbench.data import TransformedImages
    from workbench.training.data import CachedImages, init_worker, resolve_num_workers

    per_image = train_images is None
    workers = resolve_num_workers(num_workers, per_image)
    gen = torch.Generator().manual_seed(seed)
    if per_image:
        from workbench.augment import make_transform

        transform = multiview if multiview is not None else make_transform(recipe)
        dataset: Any = TransformedImages(ds, transform, train_idx)
        augment = None
    else:
        from workbench.augment.batched import BatchedViews

        dataset = CachedImages(train_images)
        augment = BatchedViews(recipe)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=gen,
        worker_init_fn=init_worker if workers > 0 else None,
    )
    return loader, augment


def _versions() -> dict[str, str]:
    import lightning
    import torch
    import torchvision

    import workbench

    return {
        "workbench": workbench.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_count": str(os.cpu_count()),
    }


def _quiet_lightning() -> None:
    """Lightning's info lines (GPU available, TPU, ...) are noise in a notebook cell."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
