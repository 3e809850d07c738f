"""Preview data: the views of a few images as displayable arrays, with their sampled parameters.

The plotting layer (``workbench.plots.augmentation_grid``) draws what :func:`sample_views`
returns; keeping the sampling here makes it testable without matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.augment.recipes import Recipe
from workbench.augment.transforms import MultiView, derive_seed, make_transform, torch_threads


@dataclass
class PreviewRow:
    """One image and its views, ready to draw.

    Attributes:
        original: The input image as uint8 array (H, W, 3).
        views: Each view un-normalised to uint8 (size, size, 3).
        names: Group name per view ("view", "global1", "local", ...).
        kinds: "global", "local" or "view" (hand-composed) per view.
        params: Per view ``{"name": ..., "ops": [records]}`` of the sampled parameters.
    """

    original: np.ndarray
    views: list[np.ndarray]
    names: list[str]
    kinds: list[str]
    params: list[dict[str, Any]] = field(default_factory=list)


def to_display(
    view: torch.Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """Undo normalisation and convert a view to a uint8 image array.

    Args:
        view: (3, H, W) float tensor, normalised with ``mean``/``std`` (or in [0, 1] if None), or
            a uint8 tensor.
        mean: Per-channel mean used to normalise, or None.
        std: Per-channel std used to normalise, or None.

    Returns:
        (H, W, 3) uint8 array.
    """
    x = view.detach().cpu()
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.dtype == torch.uint8:
        arr = x.permute(1, 2, 0).numpy()
        return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
    x = x.float()
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
        x = x * s + m  # (3, H, W) back in [0, 1]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _as_pil(img: Any) -> Image.Image:
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    if isinstance(img, np.ndarray):
        arr = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if isinstance(img, torch.Tensor):
        return Image.fromarray(to_display(img))
    raise ValueError(
        f"Cannot preview a {type(img).__name__}; pass PIL images, (H, W, 3) arrays or tensors."
    )


def _as_multiview(transform: MultiView | Recipe | str | Callable[..., Any]) -> MultiView | None:
    if isinstance(transform, MultiView):
        return transform
    if isinstance(transform, (Recipe, str)):
        return make_transform(transform)
    if callable(transform):
        return None
    raise ValueError(
        f"transform must be a MultiView, a Recipe, a method name or a callable returning a "
        f"list of view tensors; got {type(transform).__name__}."
    )


def sample_views(
    images: Sequence[Any],
    transform: MultiView | Recipe | str | Callable[..., Any],
    *,
    n_views: int | None = None,
    seed: int | None = 0,
) -> list[PreviewRow]:
    """Draw the views of each image, reproducibly for a seed.

    Args:
        images: PIL images (or (H, W, 3) arrays / (3, H, W) tensors).
        transform: A MultiView, a Recipe or method name (built with paper defaults), or any
            callable returning a list of (3, H, W) tensors.
        n_views: Keep the first ``n_views`` views of each image (None: all).
        seed: Row ``r`` uses seed ``(seed, r)``; the caller's random state is left untouched.
            None draws from torch's global generator.

    Returns:
        One PreviewRow per image.
    """
    if n_views is not None and n_views < 1:
        raise ValueError(f"Invalid n_views={n_views}: need >= 1 or None for all views.")
    mv = _as_multiview(transform)
    rows: list[PreviewRow] = []
    # Tiny tensors: intra-op threads only add contention (see torch_threads).
    with torch_threads(1):
        for r, img in enumerate(images):
            pil = _as_pil(img)
            row_seed = None if seed is None else derive_seed(seed, "row", r)
            if mv is not None:
                tensors, params = mv.call_with_params(pil, seed=row_seed)
                names, kinds = mv.view_names, mv.view_kinds
                mean, std = mv.mean, mv.std
            else:
                with torch.random.fork_rng(devices=[]):
                    if row_seed is not None:
                        torch.manual_seed(row_seed)
                    tensors = list(transform(pil))  # type: ignore[operator]
                names = [f"view{i + 1}" for i in range(len(tensors))]
                kinds, params, mean, std = ["view"] * len(tensors), [], None, None
            keep = len(tensors) if n_views is None else min(n_views, len(tensors))
            rows.append(
                PreviewRow(
                    original=np.asarray(pil),
                    views=[to_display(t, mean, std) for t in tensors[:keep]],
                    names=list(names[:keep]),
                    kinds=list(kinds[:keep]),
                    params=params[:keep],
                )
            )
    return rows


def describe_params(view_params: dict[str, Any]) -> list[str]:
    """Short caption lines for one view's sampled parameters (ops that did not fire omitted).

    Lines stay under ~18 characters so they fit under a small view. Example:
    ``["crop 31% 0.92:1", "hflip rot 90°", "cj b1.14 c1.22", "cj s1.11 h-0.07", "gray blur σ0.9"]``.
    """
    crop: list[str] = []
    geo: list[str] = []
    jitter: list[str] = []
    other: list[str] = []
    for rec in view_params.get("ops", []):
        if not rec.get("applied"):
            continue
        op = rec["op"]
        if op == "RandomResizedCrop":
            crop.append(f"crop {100 * rec['area']:.0f}% {rec['aspect']:.2f}:1")
        elif op == "RandomHorizontalFlip":
            geo.append("hflip")
        elif op == "RandomVerticalFlip":
            geo.append("vflip")
        elif op in ("RandomRotation90", "RandomRotation"):
            geo.append(f"rot {rec['angle']:.0f}°")
        elif op == "ColorJitter":
            f = {k: rec.get(k) for k in ("brightness", "contrast", "saturation", "hue")}
            bc = [f"{k[0]}{v:.2f}" for k, v in f.items() if v is not None and k != "hue"]
            hue = [] if f["hue"] is None else [f"h{f['hue']:+.2f}"]
            parts = bc + hue
            jitter += ["cj " + " ".join(parts[:2]), "cj " + " ".join(parts[2:])]
        elif op == "RandomGrayscale":
            other.append("gray")
        elif op == "GaussianBlur":
            other.append(f"blur σ{rec['sigma']:.1f}")
        elif op == "RandomSolarize":
            other.append("sol")
        else:
            other.append(op)
    lines = crop + ([" ".join(geo)] if geo else []) + [j for j in jitter if j != "cj "]
    return lines + ([" ".join(other)] if other else [])


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return " – ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def recipe_differences(a: Recipe, b: Recipe) -> list[str]:
    """What differs between two recipes, one line per setting (the A/B comparison's legend).

    Example: ``["view jitter p: 0.80 → 0.50", "view size: 32 → 48"]``; an empty list when the
    two are the same. Groups present in only one recipe are named as such.
    """
    from workbench.augment.recipes import FIELD_INFO

    lines: list[str] = []
    if a.method != b.method:
        lines.append(f"method: {a.method} → {b.method}")
    groups_b = {g.name: g for g in b.groups}
    for ga in a.groups:
        gb = groups_b.pop(ga.name, None)
        if gb is None:
            lines.append(f"group {ga.name}: only in A")
            continue
        for name, info in FIELD_INFO.items():
            va, vb = getattr(ga, name), getattr(gb, name)
            if va != vb:
                lines.append(f"{ga.name} {info.label}: {_fmt(va)} → {_fmt(vb)}")
    lines += [f"group {name}: only in B" for name in groups_b]
    return lines


def applied_jitter_text(spec: Any) -> str:
    """The colour jitter a view group applies: each base value times the strength.

    The controls hold base values and a strength (as SimCLR's and BYOL's code do); what the
    image gets is their product, e.g. brightness 0.8 x strength 0.5 = 0.40.
    """
    b, c, s, h = spec.jitter
    if spec.cj_prob == 0:
        return "applied jitter: none (jitter p = 0)"
    return (
        f"applied jitter (base x strength {spec.cj_strength:.2f}), with p = {spec.cj_prob:.2f}: "
        f"brightness {b:.2f}, contrast {c:.2f}, saturation {s:.2f}, hue {h:.2f}"
    )


def is_grayscale(images: Sequence[Any], tolerance: int = 2) -> bool:
    """True when every image has equal R, G and B (within ``tolerance``).

    Hue and saturation jitter and random grayscale then change nothing.
    """
    if not images:
        return False
    for img in images:
        arr = np.asarray(_as_pil(img)).astype(np.int16)
        if arr.ndim == 3 and arr.shape[2] >= 3:
            if np.abs(arr[..., 0] - arr[..., 1]).max() > tolerance:
                return False
            if np.abs(arr[..., 1] - arr[..., 2]).max() > tolerance:
                return False
    return True
