"""Probes of a representation: confusion matrix, linear probe, augmentation invariance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts of (true, predicted) label pairs.

    Args:
        y_true: True labels, shape (N,), values in [0, num_classes).
        y_pred: Predicted labels, shape (N,).
        num_classes: C.

    Returns:
        int64 array (C, C); row = true class, column = predicted class.

    Raises:
        ValueError: Different lengths or labels outside [0, C).
    """
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    for name, a in (("y_true", t), ("y_pred", p)):
        if len(a) and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(
                f"{name} has labels outside [0, {num_classes}): min {a.min()}, max {a.max()}."
            )
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (C, C); NaN for a class with no samples."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def linear_probe(
    train_feats: np.ndarray | torch.Tensor,
    train_labels: Sequence[int] | np.ndarray,
    test_feats: np.ndarray | torch.Tensor,
    test_labels: Sequence[int] | np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
) -> dict[str, Any]:
    """Accuracy of a logistic-regression classifier on frozen, standardised features.

    Args:
        train_feats: Shape (N_train, D).
        train_labels: Shape (N_train,), integers >= 0, at least two classes.
        test_feats: Shape (N_test, D).
        test_labels: Shape (N_test,).
        C: Inverse L2 regularisation strength (scikit-learn's ``LogisticRegression``).
        max_iter: Iterations of the L-BFGS solver.

    Returns:
        ``{"accuracy": float, "per_class": np.ndarray (C,) (NaN for classes absent from the
        test set), "confusion": np.ndarray (C, C) int64, "predictions": np.ndarray (N_test,)}``.

    Raises:
        ValueError: Mismatched lengths or dimensions, negative labels, a single class, C <= 0.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if C <= 0:
        raise ValueError(f"C must be > 0, got {C}.")
    xtr, xte = _np_features(train_feats, "train_feats"), _np_features(test_feats, "test_feats")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"test_feats have {xte.shape[1]} dims but train_feats have {xtr.shape[1]}."
        )
    ytr = _np_labels(train_labels, len(xtr), "train_labels")
    yte = _np_labels(test_labels, len(xte), "test_labels")
    if len(np.unique(ytr)) < 2:
        raise ValueError(
            f"linear_probe needs at least 2 classes in train_labels, got {np.unique(ytr)}."
        )
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(scaler.transform(xtr), ytr)
    pred = clf.predict(scaler.transform(xte)).astype(np.int64)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    cm = confusion_matrix(yte, pred, num_classes)
    return {
        "accuracy": float((pred == yte).mean()),
        "per_class": per_class_accuracy(cm),
        "confusion": cm,
        "predictions": pred,
    }


def _np_features(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {a.shape}.")
    return a


def _np_labels(y: Any, n: int, name: str) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    a = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} entries but the features have {n} rows.")
    if len(a) and a.min() < 0:
        raise ValueError(
            f"{name} contains negative labels (unlabelled images); a probe needs labels."
        )
    return a


# ----------------------------------------------------------------------------------------------
# Invariance probe

FAMILIES: tuple[str, ...] = (
    "crop",
    "flip",
    "rotation",
    "color_jitter",
    "grayscale",
    "blur",
    "solarize",
)

# SimCLR's ImageNet augmentation (Chen et al. 2020, App. A; strength s = 1), plus BYOL's
# solarisation threshold and a small-angle rotation range for the families SimCLR does not use.
SIMCLR_PARAMS: dict[str, Any] = {
    "crop_scale": (0.08, 1.0),
    "crop_ratio": (3 / 4, 4 / 3),
    "hflip_prob": 0.5,
    "rr_prob": 0.0,
    "rotation_degrees": 15.0,
    "cj_strength": 1.0,
    "cj_brightness": 0.8,
    "cj_contrast": 0.8,
    "cj_saturation": 0.8,
    "cj_hue": 0.2,
    "gray_prob": 0.2,
    "blur_sigma": (0.1, 2.0),
    "solarize_threshold": 0.5,
}


def probe_params(recipe_or_method: Any = "simclr") -> tuple[dict[str, Any], dict[str, Any]]:
    """The augmentation strengths the invariance probe uses, and normalisation if known.

    Args:
        recipe_or_method: A method name (read from ``workbench.augment.recipe(method)`` when that
            module is available, else SimCLR's defaults), a Recipe (its first view group), a
            ViewSpec-like object, a dict of ``SIMCLR_PARAMS`` keys overriding SimCLR's, or None.

    Returns:
        ``(params, norm)``: every key of ``SIMCLR_PARAMS``; ``norm`` holds ``mean``/``std`` when
        the recipe defines them.

    Raises:
        ValueError: A dict with unknown keys.
    """
    params = dict(SIMCLR_PARAMS)
    norm: dict[str, Any] = {}
    spec: Any = None
    if recipe_or_method is None:
        return params, norm
    if isinstance(recipe_or_method, dict):
        unknown = sorted(set(recipe_or_method) - set(SIMCLR_PARAMS) - {"mean", "std"})
        if unknown:
            raise ValueError(f"Unknown probe parameters {unknown}. Valid: {sorted(SIMCLR_PARAMS)}")
        params.update({k: v for k, v in recipe_or_method.items() if k in SIMCLR_PARAMS})
        norm = {k: recipe_or_method[k] for k in ("mean", "std") if k in recipe_or_method}
        return params, norm
    rec: Any = recipe_or_method
    if isinstance(rec, str):
        try:
            from workbench.augment import recipe as make_recipe
        except ImportError:  # augment not installed in this build: SimCLR's defaults
            return params, norm
        rec = make_recipe(rec)
    if hasattr(rec, "groups"):
        spec = rec.groups[0]
        if getattr(rec, "normalize", True):
            norm = {k: getattr(rec, k) for k in ("mean", "std") if hasattr(rec, k)}
    else:
        spec = rec
    for key in SIMCLR_PARAMS:
        if hasattr(spec, key):
            params[key] = getattr(spec, key)
    return params, norm


def family_transform(family: str, params: dict[str, Any], size: int) -> Any:
    """One augmentation family at the recipe's strength, applied with probability 1.

    Works on float image tensors (3, size, size) in [0, 1] and keeps their size.

    Args:
        family: One of ``FAMILIES``.
        params: Strengths, as returned by :func:`probe_params`.
        size: Image side in pixels.

    Returns:
        A torchvision v2 transform.
    """
    from torchvision.transforms import v2

    p = params
    if family == "crop":
        scale, ratio = tuple(p["crop_scale"]), tuple(p["crop_ratio"])
        return v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)
    if family == "flip":
        return v2.RandomHorizontalFlip(p=1.0)
    if family == "rotation":
        if float(p.get("rr_prob", 0.0)) > 0:
            return v2.RandomChoice([v2.RandomRotation((a, a)) for a in (90, 180, 270)])
        d = float(p["rotation_degrees"])
        return v2.RandomRotation((-d, d))
    if family == "color_jitter":
        s = float(p["cj_strength"])
        return v2.ColorJitter(
            brightness=s * float(p["cj_brightness"]),
            contrast=s * float(p["cj_contrast"]),
            saturation=s * float(p["cj_saturation"]),
            hue=min(0.5, s * float(p["cj_hue"])),
        )
    if family == "grayscale":
        return v2.Grayscale(num_output_channels=3)
    if family == "blur":
        kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # ~10% of the side, odd (SimCLR)
        lo, hi = (float(v) for v in p["blur_sigma"])
        return v2.GaussianBlur(kernel, sigma=(lo, max(lo, hi)))
    if family == "solarize":
        thr = float(p["solarize_threshold"])
        return v2.RandomSolarize(thr / 255.0 if thr > 1 else thr, p=1.0)
    raise ValueError(f"Unknown augmentation family {family!r}. Valid families: {list(FAMILIES)}")


def invariance_probe(
    model: Any,
    data: Any,
    recipe_or_method: Any = "simclr",
    n_images: int = 64,
    input_size: int | None = None,
    families: Sequence[str] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    center: bool = True,
) -> dict[str, float]:
    """What the model learned to ignore: similarity of an image's embedding to its augmented one.

    For each image, the plainly resized image and a copy with only one augmentation family
    applied (with probability 1, at the recipe's strength) are embedded; the mean cosine
    similarity over images is reported per family. 1.0 means fully invariant; with ``center``
    about 0 means the augmented image is no closer than an unrelated one. Use the same
    ``recipe_or_method``, images and seed to compare runs.

    Centering matters: the features of a random-init CNN (ReLU, average pool) share one
    dominant direction, so the raw cosine similarity of *any* two images is ~0.99 and a
    random model would look invariant to everything.

    Args:
        model: A backbone ``nn.Module``, a Run (or run folder), or a ``.pt`` module file.
        data: An ImageDataset or a ``load_dataset`` spec.
        recipe_or_method: Where the strengths come from; see :func:`probe_params`.
        n_images: Images drawn (seeded) from ``data``; all of them if fewer.
        input_size: Image side; default the run's, else the dataset's native size, else 224.
        families: Subset of ``FAMILIES`` (default all).
        seed: Seeds the image choice and the augmentations (global RNG state is restored).
        batch_size: Images per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        center: Subtract the mean embedding of the plain images (from both sides) before the
            cosine; False gives the raw cosine similarity.

    Returns:
        ``{family: mean cosine similarity}`` in ``FAMILIES`` order; NaN for a family that leaves
        these images unchanged (grayscale on grey images): a similarity of 1 there would say
        nothing about the model.

    Raises:
        ValueError: Unknown families, n_images < 1, an empty dataset.
    """
    import torch.nn.functional as F

    from workbench.data import load_dataset
    from workbench.eval.embedding import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        embed_tensors,
        resolve_device,
        resolve_input_size,
        resolve_model,
    )

    fams = list(FAMILIES if families is None else families)
    unknown = [f for f in fams if f not in FAMILIES]
    if unknown or not fams:
        raise ValueError(f"Unknown augmentation families {unknown}. Valid: {list(FAMILIES)}")
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}.")
    net, config, _ = resolve_model(model)
    ds = load_dataset(data)
    if len(ds) == 0:
        raise ValueError(f"Dataset {ds.name!r} has no images to probe.")
    params, norm = probe_params(recipe_or_method)
    size = resolve_input_size(input_size, config, ds)
    mean = config.get("mean") or norm.get("mean") or IMAGENET_MEAN
    std = config.get("std") or norm.get("std") or IMAGENET_STD
    dev = resolve_device(device)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(ds), size=min(n_images, len(ds)), replace=False))

    from torchvision.transforms import v2

    to_float = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    normalize = v2.Normalize(list(mean), list(std))
    plain = torch.stack([to_float(ds[int(i)][0].convert("RGB")) for i in idx])  # (n, 3, S, S)

    def features(x: torch.Tensor) -> torch.Tensor:
        batches = (normalize(x[s : s + batch_size]) for s in range(0, len(x), batch_size))
        return torch.from_numpy(embed_tensors(net, batches, dev))

    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = features(plain)  # (n, D)
        mu = base.mean(dim=0, keepdim=True) if center and len(base) > 1 else 0.0
        for fam in fams:
            op = family_transform(fam, params, size)
            aug = torch.stack([op(img).clamp(0, 1) for img in plain])  # one draw per image
            if torch.allclose(aug, plain, atol=1e-4):
                out[fam] = float("nan")  # no change on these images (grayscale of grey ones)
                continue
            sim = F.cosine_similarity(base - mu, features(aug) - mu, dim=1)  # (n,)
            out[fam] = float(sim.mean())
    return out
