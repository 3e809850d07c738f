"""``wb.train``: a short, observable, interruptible pretraining run that writes a run folder."""

from __future__ import annotations

import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.runs import (
    CHECKPOINT,
    METRICS,
    Run,
    RunWriter,
    new_run_dir,
    prepare_out,
    read_records,
)

EVAL_BANK_MAX = 5000  # kNN bank images (train split) kept for the per-epoch monitor
EVAL_QUERY_MAX = 2000  # held-out query images


RUN_DIR_ENV = "WORKBENCH_RUN_DIR"


def _is_secondary_process() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0."""
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    return (local > 0 or node > 0) and RUN_DIR_ENV in os.environ


SPAWN_STRATEGIES = ("ddp_spawn", "ddp_notebook", "ddp_fork")  # ranks in child processes
READBACK_EVERY_GPU = 16  # GPU runs read the per-step values back every this many steps


def _check_args(method: str, epochs: int, batch_size: int, augment_on: str) -> type[Any]:
    """Arguments that are wrong whatever the data: refused before a run folder is made."""
    from workbench.methods import get_method

    method_cls = get_method(method)
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1.")
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size} must be >= 2 (SSL losses compare samples).")
    if augment_on not in ("auto", "device", "workers"):
        raise ValueError(f"augment_on={augment_on!r}. Valid: ['auto', 'device', 'workers']")
    return method_cls


def cuda_has_native_bf16() -> bool:
    """True when the current CUDA GPU has bf16 tensor cores (compute capability 8.0 or higher).

    ``torch.cuda.is_bf16_supported()`` also answers True where bf16 is emulated (T4, V100),
    which is slower than float16 mixed precision there.
    """
    import torch

    major, _minor = torch.cuda.get_device_capability()
    return major >= 8


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
            precision = "bf16-mixed" if cuda_has_native_bf16() else "16-mixed"
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
    from workbench.augment.recipes import training_input_size  # the one rule, previews share it

    return training_input_size(input_size, ds.meta.get("image_size"), accelerator)


def _resolve_model(model: Any, input_size: int, accelerator: str) -> Any:
    if model == "auto":
        small = input_size <= 64 and accelerator in ("gpu", "cuda")
        return "resnet18-small" if small else "resnet18"
    return model


def world_size_for(accelerator: str, devices: Any, num_nodes: int = 1) -> int:
    """Processes a run will have, from Lightning's own parsing of ``devices``.

    ``devices=-1`` is every visible GPU, ``[0, 1]`` and ``"2"`` are two; on a CPU an int or a
    digit string is the process count.

    Raises:
        ValueError: Lightning rejects ``devices`` for this accelerator.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    parser: Any = {"cpu": CPUAccelerator, "mps": MPSAccelerator}.get(accelerator, CUDAAccelerator)
    try:
        parsed = parser.parse_devices(devices)
    except (MisconfigurationException, TypeError, ValueError) as e:
        raise ValueError(
            f"devices={devices!r} is not valid for accelerator={accelerator!r}: {e} Use a count "
            f"(1, 2, -1 for every GPU), a list of GPU indices ([0, 1]) or 'auto'."
        ) from e
    n = parsed if isinstance(parsed, int) else len(parsed or [])
    if n < 1:
        raise ValueError(
            f"devices={devices!r} selects no device for accelerator={accelerator!r}; use 'auto'."
        )
    return int(n) * max(1, int(num_nodes))


def resolve_schedule(
    num_train: int,
    batch_size: int,
    world_size: int,
    epochs: int,
    max_steps: int | None,
    warmup_epochs: float,
) -> dict[str, int]:
    """Steps that will really run, and the warm-up: what the LR and EMA schedules span.

    Each process sees ``ceil(num_train / world_size)`` images (the distributed sampler pads)
    in full batches (``drop_last``); ``max_steps`` only ever shortens the run.

    Returns:
        ``steps_per_epoch``, ``max_steps`` (total optimiser steps) and ``warmup_steps``.
    """
    per_rank = math.ceil(num_train / max(1, world_size))
    steps_per_epoch = max(1, per_rank // batch_size)
    total = epochs * steps_per_epoch
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be >= 1 (or None for whole epochs).")
        total = min(total, int(max_steps))
    warmup = int(min(warmup_epochs * steps_per_epoch, 0.1 * total + 1))
    return {"steps_per_epoch": steps_per_epoch, "max_steps": total, "warmup_steps": warmup}


def training_normalization(recipe: Any, multiview: Any) -> tuple[list[float], list[float]]:
    """The (mean, std) the training views were really normalised with.

    ``normalize=False`` and a hand-made MultiView without a ``v2.Normalize`` train on [0, 1]
    images: that is mean 0 and std 1, which the kNN monitor and ``wb.embed`` then apply too.
    """
    if recipe is not None:
        if recipe.normalize:
            return list(recipe.mean), list(recipe.std)
    elif multiview is not None and multiview.mean is not None and multiview.std is not None:
        return list(multiview.mean), list(multiview.std)
    return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


@dataclass
class Plan:
    """Every decision of a run, taken before data, module and trainer are built.

    Attributes:
        config: What config.json records: every "auto" resolved.
        ds: The dataset.
        train_idx: Training images (indices into ``ds``).
        val_idx: Held-out images for the kNN monitor.
        recipe: The view recipe, or None for a user MultiView.
        multiview: The user's MultiView, or None.
        method_cls: The Method class.
        method_cfg: Its config (defaults and overrides).
        backbone: The freshly initialised (seeded) backbone.
        events: (kind, message) to report once the trainer exists.
    """

    config: dict[str, Any]
    ds: Any
    train_idx: np.ndarray
    val_idx: np.ndarray
    recipe: Any
    multiview: Any
    method_cls: type[Any]
    method_cfg: Any
    backbone: Any
    events: list[tuple[str, str]] = field(default_factory=list)


def resolve_config(
    ds: Any,
    *,
    data: Any = None,
    method: str = "simclr",
    model: Any = "resnet18",
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
    strategy: Any = "auto",
    num_nodes: int = 1,
    max_steps: int | None = None,
    augment_on: str = "auto",
    sync_batchnorm: bool = False,
    resume: bool = False,
) -> Plan:
    """Phase 1 of ``train``: every decision of the run, into one config.

    Device, world size, precision, sizes, memory format, learning rate, schedule lengths and
    normalisation are decided here, nowhere else. Arguments are those of :func:`train`;
    ``ds`` is the loaded dataset.
    """
    import lightning as L

    from workbench.data import stratified_split
    from workbench.methods import settings_hints
    from workbench.nn.backbones import get_backbone
    from workbench.training.data import CACHE_BYTES_LIMIT, cache_size_for, resolve_num_workers
    from workbench.training.memory_format import choose_channels_last

    method_cls = _check_args(method, epochs, batch_size, augment_on)
    accelerator, devices, precision = _resolve_device(accelerator, devices, precision)
    world = world_size_for(accelerator, devices, num_nodes)
    size = _resolve_input_size(input_size, ds, accelerator)
    model_name = _resolve_model(model, size, accelerator)
    recipe, multiview = _resolve_transform(method, transform_args, size)
    mean, std = training_normalization(recipe, multiview)

    labels = ds.labels if ds.has_labels else None
    if val_fraction > 0 and labels is not None:
        train_idx, val_idx = stratified_split(labels, val_fraction=val_fraction, seed=seed)
    else:
        train_idx, val_idx = np.arange(len(ds)), np.arange(0)
    events: list[tuple[str, str]] = []
    if ds.skipped:
        skipped = "; ".join(str(s) for s in ds.skipped[:10])
        events.append(("skipped_files", f"{len(ds.skipped)} unreadable file(s) skipped: {skipped}"))
    per_device = math.ceil(len(train_idx) / world)
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

    per_image = augment_on == "workers" or multiview is not None
    cache_side = None
    if not per_image:
        cache_side = cache_size_for(ds, size)
        if augment_on == "auto" and len(ds) * 3 * cache_side**2 > CACHE_BYTES_LIMIT:
            per_image = True
            cache_side = None

    L.seed_everything(seed, workers=True, verbose=False)
    backbone, feature_dim = get_backbone(model_name, input_size=size)
    cfg = method_cls.make_config(**(method_args or {}))
    optimizer = method_cls.optimizer_for(cfg, backbone)
    schedule = resolve_schedule(
        len(train_idx), batch_size, world, epochs, max_steps, cfg.warmup_epochs
    )
    peak_lr = lr if lr is not None else method_cls.lr_for(optimizer, batch_size * world)
    memory = choose_channels_last(backbone, accelerator, size, world)
    config = {
        "method": method,
        "model": model_name if isinstance(model_name, str) else "custom",
        "data": data if isinstance(data, (str, Path)) else ds.name,
        "data_is_spec": isinstance(data, (str, Path)),  # False: an in-memory ImageDataset
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
        "optimizer": optimizer,
        "weight_decay": method_cls.weight_decay_for(cfg, optimizer),
        "weight_decay_end": method_cls.weight_decay_end_for(cfg, optimizer),
        "grad_clip_norm": cfg.grad_clip_norm,
        **schedule,
        "devices": devices,
        "world_size": world,
        "accelerator": accelerator,
        "precision": precision,
        "channels_last": memory["channels_last"],
        "memory_format": memory,
        "strategy": str(strategy),
        "num_nodes": num_nodes,
        "sync_batchnorm": sync_batchnorm,
        "num_workers": resolve_num_workers(num_workers, per_image),
        "augment_on": "workers" if per_image else "device",
        "cache_side": cache_side,
        "readback_every": 1 if accelerator == "cpu" else READBACK_EVERY_GPU,
        "seed": seed,
        "val_fraction": val_fraction,
        "feature_dim": feature_dim,
        "method_args": cfg.to_dict(),
        "transform": recipe.to_dict() if recipe is not None else repr(multiview),
        "normalize": mean != [0.0, 0.0, 0.0] or std != [1.0, 1.0, 1.0],
        "mean": mean,
        "std": std,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "resumed": bool(resume),
    }
    return Plan(
        config, ds, train_idx, val_idx, recipe, multiview, method_cls, cfg, backbone, events
    )


@dataclass
class DataParts:
    """What phase 2 builds: the training loader, the on-device augmentation, the kNN images."""

    loader: Any
    augment: Any
    eval_set: Any


def build_data(plan: Plan, start_step: int = 0) -> DataParts:
    """Phase 2: decode the cache (or set up per-image transforms), the loader and the eval set.

    Args:
        plan: The resolved plan.
        start_step: The optimiser step a resumed run continues from; it seeds the worker
            augmentations, so a resumed run does not replay the first run's draws.
    """
    from workbench.training.callbacks import EvalSet
    from workbench.training.data import decode_to_tensor

    c, ds = plan.config, plan.ds
    size, seed = int(c["input_size"]), int(c["seed"])
    train_idx, val_idx = plan.train_idx, plan.val_idx
    per_image = c["augment_on"] == "workers"
    # Decoded once: the training cache, which also serves as the kNN bank when it fits.
    train_images = None if per_image else decode_to_tensor(ds, train_idx, int(c["cache_side"]))
    loader, augment = _build_loader(plan, train_images, start_step)

    eval_set = None
    labels = ds.labels if ds.has_labels else None
    if len(val_idx) and labels is not None:
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
        reuse = train_images is not None and c["cache_side"] == size and bank_idx is train_idx
        eval_set = EvalSet(
            train_images if reuse else decode_to_tensor(ds, bank_idx, size),  # type: ignore[arg-type]
            labels[bank_idx],
            decode_to_tensor(ds, q_idx, size),
            labels[q_idx],
            c["mean"],
            c["std"],
        )
    return DataParts(loader, augment, eval_set)


def build_module(plan: Plan, augment: Any) -> Any:
    """Phase 3: the method (backbone, heads, loss) inside the Lightning shell."""
    from workbench.training.module import SSLModule

    c = plan.config
    kw: dict[str, Any] = {"dataset_size": len(plan.train_idx), "max_epochs": c["epochs"]}
    if c["method"].startswith("distillation"):
        kw.update(input_size=c["input_size"], input_mean=c["mean"], input_std=c["std"])
    ssl = plan.method_cls(plan.backbone, c["feature_dim"], plan.method_cfg, **kw)
    return SSLModule(
        ssl,
        lr=c["lr"],
        max_steps=c["max_steps"],
        warmup_steps=c["warmup_steps"],
        augment=augment,
        channels_last=c["channels_last"],
        weight_decay_end=c["weight_decay_end"],
    )


def build_trainer(plan: Plan, callbacks: list[Any], out: Path) -> Any:
    """Phase 4: the Lightning Trainer; gradient clipping is applied here, for every method."""
    import lightning as L

    c = plan.config
    strategy: Any = c["strategy"]
    # Lightning gets max_steps only where it ends the run early: a run that ends on its step
    # limit leaves a checkpoint whose last epoch counts as unfinished, and a resume would then
    # run one batch of the next epoch only.
    cut = c["max_steps"] < c["epochs"] * c["steps_per_epoch"]
    _quiet_lightning()
    return L.Trainer(
        max_epochs=c["epochs"],
        max_steps=c["max_steps"] if cut else -1,
        accelerator=c["accelerator"],
        devices=c["devices"],
        precision=c["precision"],
        strategy=strategy,
        num_nodes=c["num_nodes"],
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        sync_batchnorm=c["sync_batchnorm"],
        default_root_dir=str(out),
        deterministic=False,
        use_distributed_sampler=True,
        gradient_clip_val=c["grad_clip_norm"],
        gradient_clip_algorithm="norm" if c["grad_clip_norm"] else None,
    )


def fit(trainer: Any, module: Any, loader: Any, ckpt_path: Path | None) -> None:
    """Phase 5: ``trainer.fit`` with Lightning's notebook-irrelevant warnings silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*too few batches.*|.*smaller than the logging.*")
        trainer.fit(
            module,
            train_dataloaders=loader,
            ckpt_path=str(ckpt_path) if ckpt_path is not None else None,
        )


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

    The phases, each a function of this module: :func:`resolve_config` (every "auto" decided),
    :func:`build_data`, :func:`build_module`, :func:`build_trainer`, :func:`fit`.

    Args:
        data: Dataset spec for ``wb.load_dataset`` (``"digits"``, a folder, ...) or an ImageDataset.
        method: A name of ``wb.list_methods()``.
        model: Backbone name (``wb.list_backbones()``), an ``nn.Module``, or ``"auto"``:
            ``resnet18-small`` for inputs <= 64 px on a GPU (the small-image stem matters for
            accuracy but costs ~10x the compute, too slow on a CPU), else ``resnet18``.
        out: Run folder; None makes ``runs/<method>-<timestamp>``.
        epochs: Training epochs.
        batch_size: Images per step and device (each gives several views); reduced if above the
            data size.
        input_size: Global view side; None: the dataset's native size, else 224 (GPU) / 96 (CPU).
        lr: Peak learning rate; None: the method's base rate scaled by the global batch / 256.
        devices: Lightning ``devices`` (``"auto"`` = one; ``-1`` = every GPU; ``[0, 1]``).
        accelerator: ``"auto"`` | ``"cpu"`` | ``"gpu"``.
        precision: Lightning precision; ``"auto"`` = bf16-mixed on GPUs with native bf16
            (compute capability 8+), else 16-mixed; 32-true on CPUs. ``"bf16-mixed"`` on a CPU
            with AVX512-BF16 or AMX trains about 1.3x faster. Heads and losses always compute
            in float32.
        num_workers: DataLoader workers; ``"auto"`` picks a safe count for the machine.
        seed: Seeds the split, the initialisation, the data order and the augmentations.
        method_args: Overrides of the method's config (``wb.describe_method(m)["defaults"]``).
        transform_args: Overrides for ``wb.make_transform`` (dict), a Recipe, or a MultiView.
        val_fraction: Held-out share (stratified) for the kNN monitor; 0 disables it.
        resume: Continue the run in ``out`` from its last checkpoint.
        overwrite: Replace an existing run in ``out``.
        callbacks: Objects with any of on_start(run), on_step(rec), on_epoch(rec), on_event(ev),
            on_end(run), should_stop() -> bool (polled after every batch).
        strategy: Lightning strategy (``"ddp"``, ``"ddp_spawn"``, ``"ddp_notebook"``, ...).
        num_nodes: Lightning ``num_nodes``.
        max_steps: Stop after this many optimiser steps (for quick checks); never lengthens
            the run, and the schedules span the steps that really run.
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

    from workbench.data import load_dataset
    from workbench.runs import STOP_FILE
    from workbench.training.callbacks import MonitorCallback, StopWatcher, UserCallbacks

    _check_args(method, epochs, batch_size, augment_on)
    _resolve_device(accelerator, devices, precision)
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
    watcher = None
    try:
        ds = load_dataset(data)
        plan = resolve_config(
            ds, data=data, method=method, model=model, epochs=epochs, batch_size=batch_size,
            input_size=input_size, lr=lr, devices=devices, accelerator=accelerator,
            precision=precision, num_workers=num_workers, seed=seed, method_args=method_args,
            transform_args=transform_args, val_fraction=val_fraction, strategy=strategy,
            num_nodes=num_nodes, max_steps=max_steps, augment_on=augment_on,
            sync_batchnorm=sync_batchnorm, resume=resume,
        )  # fmt: skip
        config = plan.config
        prior = Run(out) if resume else None
        start_step = 0
        if resume:
            state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
            start_step = int(state.get("global_step", 0))
        parts = build_data(plan, start_step)
        module = build_module(plan, parts.augment)
        if resume:
            writer.truncate_after(start_step)
            writer.log(f"resuming from {out / CHECKPOINT} (step {start_step})")
        writer.write_config(config)
        if config["model"] == "custom" and not secondary:
            (out / "exported").mkdir(exist_ok=True)
            torch.save(plan.backbone, out / "exported" / "backbone_module.pt")
        writer.log(
            f"{method} / {config['model']} on {ds!r}: {epochs} epochs, batch "
            f"{config['batch_size']}, {config['input_size']}px, lr {config['lr']:.4g}, "
            f"{config['accelerator']} x{config['world_size']}, {config['precision']}"
        )
        writer.status("running")
        users = UserCallbacks(callbacks or [], writer)
        stop_file = out / STOP_FILE
        if not secondary:
            stop_file.unlink(missing_ok=True)  # a stop from an earlier session is done
        monitor = MonitorCallback(
            writer,
            users,
            parts.eval_set,
            config["batch_size"],
            epochs,
            config["feature_dim"],
            readback_every=config["readback_every"],
            stop_file=stop_file,
            method=config["method"],
            history=prior.history if prior is not None else (),
        )
        users.call("on_start", Run(out))
        trainer = build_trainer(plan, [monitor], out)
        for kind, msg in plan.events:
            monitor.event(trainer, kind, msg)
        if str(strategy) in SPAWN_STRATEGIES and not secondary:
            # The ranks run in child processes: a Stop set here reaches them as a file.
            watcher = StopWatcher(users, stop_file)
        fit(trainer, module, parts.loader, out / CHECKPOINT if resume else None)
        if watcher is not None:
            watcher.close()
        if not secondary:
            writer.status(_final_status(out, monitor))
    except BaseException as e:
        if watcher is not None:
            watcher.close()
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


def _final_status(out: Path, monitor: Any) -> str:
    """The run's final status: failed, stopped or finished.

    From this process's monitor or, when the ranks ran in child processes (``ddp_spawn``,
    ``ddp_notebook``), from the events rank 0 wrote to the run folder in this session.
    """
    records = read_records(out / METRICS)
    starts = [i for i, r in enumerate(records) if r.get("type") == "status"
              and r.get("status") == "running"]  # fmt: skip
    session = records[starts[-1] if starts else 0 :]  # this session only, not a resumed one's
    kinds = {r.get("kind") for r in session if r.get("type") == "event"}
    if monitor.failed or "nan" in kinds:
        return "failed"
    if monitor.stopped or "stopped" in kinds:
        return "stopped"
    return "finished"


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


def _build_loader(plan: Plan, train_images: Any, start_step: int) -> tuple[Any, Any]:
    """The training DataLoader and the on-device augmentation (None on the per-image path).

    One process: an :class:`EpochSampler` (the order depends on seed and epoch, so a resumed
    run continues with the order of the epoch it resumes in). Several: Lightning's
    DistributedSampler, which is epoch-seeded too.
    """
    import torch
    from torch.utils.data import DataLoader

    from workbench.data import TransformedImages
    from workbench.training.data import CachedImages, EpochSampler, init_worker

    c = plan.config
    seed, workers = int(c["seed"]), int(c["num_workers"])
    if train_images is None:
        from workbench.augment import make_transform

        mv = plan.multiview
        transform = mv if mv is not None else make_transform(plan.recipe)
        dataset: Any = TransformedImages(plan.ds, transform, plan.train_idx)
        augment = None
    else:
        from workbench.augment.batched import BatchedViews

        dataset = CachedImages(train_images)
        augment = BatchedViews(plan.recipe, seed=seed)
    one_process = int(c["world_size"]) == 1
    sampler = EpochSampler(len(dataset), seed) if one_process else None
    # Worker seeds come from this generator when the workers start: seeded with the step a
    # resumed run starts at, the per-image augmentations do not replay the first session's.
    gen = torch.Generator().manual_seed(seed * 1_000_003 + start_step)
    loader = DataLoader(
        dataset,
        batch_size=int(c["batch_size"]),
        shuffle=None if one_process else True,
        sampler=sampler,
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
