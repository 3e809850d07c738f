"""Turn images into feature vectors with a backbone, a run folder or a saved module."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from workbench.augment.recipes import IMAGENET_MEAN, IMAGENET_STD
from workbench.data import ImageDataset, TransformedImages, load_dataset


@dataclass
class Embeddings:
    """Features of a set of images, with what is needed to show and evaluate them.

    Attributes:
        features: float32 array (N, D).
        labels: int64 array (N,), or None for unlabelled images.
        paths: One string per image (file path or ``"<dataset>[i]"``).
        class_names: Names of the label values, index = label.
        meta: Provenance: model, dataset, input size, normalisation, seconds.
    """

    features: np.ndarray
    labels: np.ndarray | None = None
    paths: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        feats = np.asarray(self.features, dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"Embeddings.features must have shape (N, D), got {feats.shape}.")
        self.features = feats
        n = feats.shape[0]
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
            if len(labels) != n:
                raise ValueError(
                    f"Embeddings got {n} feature rows but {len(labels)} labels; they must match."
                )
            # A dataset with only -1 labels is unlabelled; keep one representation of that.
            self.labels = None if len(labels) and (labels < 0).all() else labels
        self.paths = [str(p) for p in self.paths] if self.paths else [f"[{i}]" for i in range(n)]
        if len(self.paths) != n:
            raise ValueError(
                f"Embeddings got {n} feature rows but {len(self.paths)} paths; they must match."
            )
        self.class_names = [str(c) for c in self.class_names]

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        """Feature dimension D."""
        return int(self.features.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` file (no pickles); returns the path written."""
        path = Path(path).expanduser()
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "features": self.features,
            "paths": np.asarray(self.paths, dtype=np.str_),
            "class_names": np.asarray(self.class_names, dtype=np.str_),
            "meta": np.asarray(json.dumps(self.meta, default=str)),
        }
        if self.labels is not None:
            arrays["labels"] = self.labels
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: The file does not exist.
            ValueError: The file is not an Embeddings archive.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Embeddings file {str(path)!r} does not exist.")
        with np.load(path, allow_pickle=False) as z:
            if "features" not in z:
                raise ValueError(
                    f"{str(path)!r} holds {sorted(z.files)}, not an Embeddings archive "
                    f"(written by Embeddings.save)."
                )
            return cls(
                features=z["features"],
                labels=z["labels"] if "labels" in z else None,
                paths=z["paths"].tolist() if "paths" in z else [],
                class_names=z["class_names"].tolist() if "class_names" in z else [],
                meta=json.loads(str(z["meta"])) if "meta" in z else {},
            )

    def __repr__(self) -> str:
        lab = "unlabelled" if self.labels is None else f"{len(np.unique(self.labels))} classes"
        return f"Embeddings({len(self)} x {self.dim}, {lab})"


def eval_transform(
    input_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Callable[[Image.Image], torch.Tensor]:
    """The deterministic evaluation transform: resize, centre crop, tensor, normalise.

    The shorter side is resized to ``input_size`` and the centre square kept (square images are
    simply resized). The returned object is picklable, so DataLoader workers can use it.

    Args:
        input_size: Output side in pixels.
        mean: Per-channel mean for normalisation.
        std: Per-channel std for normalisation.

    Returns:
        A callable mapping a PIL image to a float tensor (3, input_size, input_size).
    """
    from torchvision.transforms import v2

    if int(input_size) < 1:
        raise ValueError(f"input_size must be a positive number of pixels, got {input_size}.")
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(int(input_size), antialias=True),
            v2.CenterCrop(int(input_size)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; other strings are validated."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(
            f"Unknown device {device!r}. Valid choices: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'."
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return dev


def resolve_input_size(input_size: int | None, config: dict[str, Any], ds: ImageDataset) -> int:
    """Explicit size, else the run's ``input_size``, else the dataset's native size, else 224."""
    size = input_size or config.get("input_size") or ds.meta.get("image_size") or 224
    if int(size) < 1:
        raise ValueError(f"input_size must be a positive number of pixels, got {size}.")
    return int(size)


def _is_run(obj: Any) -> bool:
    return hasattr(obj, "backbone") and hasattr(obj, "config")


def resolve_model(model_or_run_or_path: Any) -> tuple[nn.Module, dict[str, Any], str]:
    """Find the backbone, the run config (empty if none) and a description of the source.

    Args:
        model_or_run_or_path: An ``nn.Module``; an object with ``backbone`` and ``config``
            attributes (a :class:`workbench.runs.Run`); a run folder; or a ``.pt`` file holding a
            whole pickled module.

    Raises:
        FileNotFoundError: A path that does not exist.
        ValueError: Anything else, or a file that holds a state dict rather than a module.
    """
    obj = model_or_run_or_path
    if isinstance(obj, nn.Module):
        return obj, {}, type(obj).__name__
    if _is_run(obj):
        return obj.backbone, dict(obj.config or {}), f"run {getattr(obj, 'out', '?')}"
    if isinstance(obj, (str, Path)):
        path = Path(obj).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist. Pass a backbone module, a Run, a run folder or "
                f"a .pt file holding a saved nn.Module."
            )
        if path.is_dir():
            from workbench.runs import load_run

            run = load_run(path)
            return run.backbone, dict(run.config or {}), f"run {path}"
        loaded = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(loaded, nn.Module):
            return loaded, {}, str(path)
        raise ValueError(
            f"{str(path)!r} holds a {type(loaded).__name__}, not an nn.Module. For a state "
            f"dict, build the architecture (e.g. wb.get_backbone('resnet18')), call "
            f"load_state_dict, and pass the module; or pass the run folder."
        )
    raise ValueError(
        f"Cannot embed with a {type(obj).__name__}. Pass an nn.Module backbone (images "
        f"(B, 3, H, W) -> features (B, D)), a Run, a run folder or a .pt file of a saved module."
    )


def random_init_like(
    model: Any, config: dict[str, Any] | None = None, seed: int | None = None
) -> Any:
    """A freshly initialised copy of a backbone (the baseline a trained run should beat).

    Args:
        model: The trained ``nn.Module``.
        config: Its run config; with a ``model`` name the backbone is rebuilt by ``get_backbone``.
        seed: Seeds the initialisation (global RNG state is restored). Default: the run's own
            seed, which rebuilds exactly the weights that run started from (the backbone whose
            kNN it recorded as ``knn_acc_init``); 0 without one.

    Returns:
        An ``nn.Module`` of the same architecture with random weights.
    """
    if seed is None:
        seed = int((config or {}).get("seed", 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        name = (config or {}).get("model")
        if isinstance(name, str) and name not in ("custom", "auto"):
            from workbench.nn.backbones import get_backbone

            size = int((config or {}).get("input_size", 224))
            return get_backbone(name, input_size=size)[0].eval()
        fresh = copy.deepcopy(model)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        return fresh.eval()


def run_normalization(config: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The (mean, std) a run's training views were normalised with (ImageNet's without a run).

    Runs record the normalisation they applied (mean 0, std 1 when they trained on [0, 1]
    images); older runs recorded the recipe's mean/std even under ``normalize=False``.
    """
    transform = config.get("transform")
    if config.get("normalize") is False or (
        isinstance(transform, dict) and transform.get("normalize") is False
    ):
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return list(config.get("mean") or IMAGENET_MEAN), list(config.get("std") or IMAGENET_STD)


def embed_tensors(
    model: nn.Module,
    batches: Any,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
    bf16: bool = False,
) -> np.ndarray:
    """Run ``model`` over an iterable of image batches (B, 3, H, W) -> float32 array (N, D).

    Eval mode and ``torch.inference_mode``, in float32 unless ``bf16`` (bf16 autocast, on CUDA
    only: faster, but GPU and CPU kNN then disagree); the model's training flag and device are
    restored afterwards.
    """
    params = list(model.parameters())
    old_device = params[0].device if params else device
    was_training = model.training
    model.eval().to(device)
    chunks: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for x in batches:
                x = x.to(device, non_blocking=True)
                with torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"
                ):
                    out = model(x)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                chunks.append(out.flatten(1).float().cpu().numpy())
                if progress is not None:
                    progress(len(x))
    finally:
        model.train(was_training).to(old_device)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def embed(
    model_or_run_or_path: Any,
    data: Any,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Embeddings:
    """Compute one feature vector per image.

    Args:
        model_or_run_or_path: A backbone ``nn.Module`` mapping images (B, 3, H, W) to features
            (B, D); a :class:`workbench.runs.Run` (or any object with ``backbone`` and ``config``);
            a run folder; or a ``.pt`` file holding a whole pickled ``nn.Module``.
        data: An ImageDataset or anything ``workbench.load_dataset`` accepts (``"digits"``, a
            folder, a list of paths, ...).
        batch_size: Images per forward pass.
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        input_size: Side the images are resized to. Default: the run's ``input_size``, else the
            dataset's native ``image_size`` (built-ins), else 224.
        mean: Normalisation mean. Default: what the run's training applied
            (:func:`run_normalization`), else ImageNet's.
        std: Normalisation std (same rule as ``mean``).
        num_workers: DataLoader worker processes (0 decodes in this process).
        progress: Called as ``progress(done, total)`` after every batch.

    Returns:
        Embeddings with float32 features (N, D), the dataset's labels (None when unlabelled),
        paths and class names.

    Raises:
        ValueError: An empty dataset, an unusable model or device, batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
    model, config, source = resolve_model(model_or_run_or_path)
    ds = load_dataset(data)
    if len(ds) == 0:
        raise ValueError(f"Dataset {ds.name!r} has no images to embed.")
    size = resolve_input_size(input_size, config, ds)
    run_mean, run_std = run_normalization(config)
    mean = tuple(mean if mean is not None else run_mean)
    std = tuple(std if std is not None else run_std)
    dev = resolve_device(device)
    images: Any = TransformedImages(ds, eval_transform(size, mean, std))  # a map-style dataset
    loader = torch.utils.data.DataLoader(
        images,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
    )
    done = [0]

    def _tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], len(ds))

    t0 = time.perf_counter()
    feats = embed_tensors(model, loader, dev, _tick)
    return Embeddings(
        features=feats,
        labels=ds.labels,
        paths=list(ds.paths),
        class_names=list(ds.class_names),
        meta={
            "source": source,
            "model": type(model).__name__,
            "dataset": ds.name,
            "input_size": size,
            "mean": list(mean),
            "std": list(std),
            "device": str(dev),
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
