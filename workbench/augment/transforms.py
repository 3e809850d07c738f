"""Multi-view transforms built from ``torchvision.transforms.v2`` ops.

:func:`make_transform` turns a :class:`~workbench.augment.recipes.Recipe` into a
:class:`MultiView`: a picklable callable mapping one image to its list of view tensors, in
``recipe.view_names`` order. Every view is a plain ``v2.Compose`` (run as is during training);
:meth:`MultiView.call_with_params` replays the same ops one by one to also report the parameters
actually sampled (crop box, jitter factors, blur sigma, ...) and, given a seed, makes previews
reproducible without touching the caller's random state.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

# v2's own base class of single-op random transforms (flips, grayscale, solarize): they draw one
# coin `torch.rand(1) >= p` before sampling their params. Mirrored by _run_step below; a test
# checks the mirror against v2.Compose so a torchvision change cannot slip through silently.
from torchvision.transforms.v2._transform import _RandomApplyTransform

from workbench.augment.recipes import Recipe, ViewSpec, apply_overrides, recipe

__all__ = ["MultiView", "RandomRotation90", "ViewTransform", "build_view", "make_transform"]


class RandomRotation90(v2.Transform):
    """Rotate by 90, 180 or 270 degrees (uniformly), keeping every pixel.

    Wrap it in ``v2.RandomApply([RandomRotation90()], p=...)`` for a probability; v2 has no
    lossless quarter-turn op (``RandomRotation`` samples a continuous angle).
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Sample the number of quarter turns."""
        return {"angle": 90 * int(torch.randint(1, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Rotate counter-clockwise by ``params["angle"]`` (exact for multiples of 90)."""
        return F.rotate(inpt, params["angle"], expand=True)


def blur_kernel_size(sigma_max: float, size: int) -> int:
    # An odd kernel covering +-3 sigma (what PIL's GaussianBlur, used by the reference code,
    # effectively computes), no wider than the reflect padding allows (pad < size).
    return min(2 * math.ceil(3 * sigma_max) + 1, 2 * size - 1)


def build_view(
    spec: ViewSpec,
    *,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    normalize: bool = True,
) -> ViewTransform:
    """The v2 pipeline of one view group (ops with probability 0 are left out).

    Order as in the reference implementations: random resized crop, rotations, flips, colour
    jitter, grayscale, blur, solarization, normalisation.

    Args:
        spec: The view group's parameters.
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        normalize: Apply ``v2.Normalize(mean, std)`` at the end.

    Returns:
        A ViewTransform: PIL image or (3, H, W) tensor -> float32 tensor (3, size, size).
    """
    ops: list[Callable[..., Any]] = [
        # On a PIL input the crop + resize runs in PIL (fast from large photos), the rest on a
        # small float tensor, so the solarize threshold is on the 0..1 scale for every input.
        v2.RandomResizedCrop(
            spec.size, scale=spec.crop_scale, ratio=spec.crop_ratio, antialias=True
        ),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if spec.rr_prob > 0:
        ops.append(v2.RandomApply([RandomRotation90()], p=spec.rr_prob))
    if spec.rotation_prob > 0:
        rot = v2.RandomRotation(spec.rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR)
        ops.append(v2.RandomApply([rot], p=spec.rotation_prob))
    if spec.hflip_prob > 0:
        ops.append(v2.RandomHorizontalFlip(p=spec.hflip_prob))
    if spec.vflip_prob > 0:
        ops.append(v2.RandomVerticalFlip(p=spec.vflip_prob))
    if spec.cj_prob > 0 and any(spec.jitter):
        b, c, s, h = spec.jitter
        ops.append(v2.RandomApply([v2.ColorJitter(b, c, s, h)], p=spec.cj_prob))
    if spec.gray_prob > 0:
        ops.append(v2.RandomGrayscale(p=spec.gray_prob))
    if spec.blur_prob > 0:
        kernel = blur_kernel_size(spec.blur_sigma[1], spec.size)
        ops.append(
            v2.RandomApply([v2.GaussianBlur(kernel, sigma=spec.blur_sigma)], p=spec.blur_prob)
        )
    if spec.solarize_prob > 0:
        ops.append(v2.RandomSolarize(spec.solarize_threshold, p=spec.solarize_prob))
    if normalize:
        ops.append(v2.Normalize(list(mean), list(std)))
    return ViewTransform(ops)


def _simple(value: Any) -> Any:
    """Tensors and nested containers to plain JSON-friendly Python values."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_simple(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


def _record(op: Any, img_before: Any, params: dict[str, Any]) -> dict[str, Any]:
    """What a preview caption needs from one applied op's sampled parameters."""
    rec: dict[str, Any] = {"op": type(op).__name__, "applied": True}
    if isinstance(op, v2.RandomResizedCrop):
        h, w = F.get_size(img_before)
        rec.update({k: int(params[k]) for k in ("top", "left", "height", "width")})
        rec["area"] = params["height"] * params["width"] / float(h * w)
        rec["aspect"] = params["width"] / float(params["height"])
    elif isinstance(op, v2.ColorJitter):
        for name in _JITTER_OPS:
            rec[name] = params[f"{name}_factor"]
        rec["order"] = [_JITTER_OPS[int(i)] for i in params["fn_idx"]]
    elif isinstance(op, v2.GaussianBlur):
        rec["sigma"] = float(params["sigma"][0])
    elif isinstance(op, v2.RandomSolarize):
        rec["threshold"] = float(op.threshold)
    else:
        rec.update({k: _simple(v) for k, v in params.items()})
    return rec


def _is_random(step: Any) -> bool:
    return isinstance(step, (v2.RandomApply, _RandomApplyTransform)) or (
        isinstance(step, v2.Transform) and type(step).make_params is not v2.Transform.make_params
    )


def _run_step(step: Any, img: Any, rec: list[dict[str, Any]] | None) -> Any:
    """Apply one op exactly as ``v2.Compose`` would, recording what was sampled."""
    if isinstance(step, v2.Compose):
        for t in step.transforms:
            img = _run_step(t, img, rec)
        return img
    if isinstance(step, v2.RandomApply):
        if torch.rand(1) >= step.p:  # v2.RandomApply's own coin
            if rec is not None:
                rec.extend({"op": type(t).__name__, "applied": False} for t in step.transforms)
            return img
        for t in step.transforms:
            img = _run_step(t, img, rec)
        return img
    if isinstance(step, v2.Transform):
        if isinstance(step, _RandomApplyTransform) and torch.rand(1) >= step.p:
            if rec is not None:
                rec.append({"op": type(step).__name__, "applied": False})
            return img
        params = step.make_params([img])
        out = step.transform(img, params)
        if rec is not None and _is_random(step):
            rec.append(_record(step, img, params))
        return out
    out = step(img)  # any other callable: applied, params unknown
    if rec is not None:
        rec.append({"op": type(step).__name__, "applied": True})
    return out


def _step_key(step: Any) -> str:
    if isinstance(step, (v2.RandomApply, v2.Compose)):
        return type(step).__name__ + "[" + ",".join(_step_key(t) for t in step.transforms) + "]"
    return type(step).__name__


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes (unlike ``hash`` of a str)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


@contextmanager
def _forked_rng() -> Iterator[None]:
    # Only the CPU generator: v2 ops sample on it; CUDA state is left alone.
    with torch.random.fork_rng(devices=[]):
        yield


class ViewTransform:
    """One view's pipeline: a ``v2.Compose`` that can also report its sampled parameters.

    Args:
        transforms: The ops, applied in order (or an existing ``v2.Compose``).
    """

    def __init__(self, transforms: Sequence[Callable[..., Any]] | v2.Compose) -> None:
        self.compose = (
            transforms if isinstance(transforms, v2.Compose) else v2.Compose(list(transforms))
        )

    def __call__(self, img: Any) -> torch.Tensor:
        """Apply the pipeline (plain torchvision, for training)."""
        return self.compose(img)

    def call_with_params(
        self, img: Any, seed: int | None = None
    ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Apply the pipeline and report, per random op, whether it fired and what it sampled.

        Args:
            img: PIL image or (3, H, W) tensor.
            seed: None: draw from torch's global generator exactly as ``__call__`` would (same
                output for the same global state). An int: reproducible, the global state is
                left untouched, and each op draws from its own seeded stream, so changing one
                op's setting in a preview leaves the other ops' samples as they were.

        Returns:
            The view (float32 (3, size, size)) and a list of records like
            ``{"op": "RandomResizedCrop", "applied": True, "area": 0.31, ...}``.
        """
        records: list[dict[str, Any]] = []
        if seed is None:
            return _run_step(self.compose, img, records), records
        seen: dict[str, int] = {}
        with _forked_rng():
            for step in self.compose.transforms:
                key = _step_key(step)
                seen[key] = seen.get(key, 0) + 1
                torch.default_generator.manual_seed(derive_seed(seed, key, seen[key]))
                img = _run_step(step, img, records)
        return img, records

    def __repr__(self) -> str:
        return f"ViewTransform({self.compose!r})"


def _find_normalize(view: Any) -> v2.Normalize | None:
    steps = view.compose.transforms if isinstance(view, ViewTransform) else [view]
    for step in steps:
        if isinstance(step, v2.Normalize):
            return step
        if isinstance(step, v2.Compose):
            found = _find_normalize(ViewTransform(step))
            if found is not None:
                return found
    return None


class MultiView:
    """Maps one image to a list of view tensors, one callable per view.

    Built by :func:`make_transform` from a recipe, or composed by hand::

        MultiView([("global", v2.Compose([...])), ("local", v2.Compose([...]))])

    Args:
        views: ``(name, callable)`` per view in output order; a callable maps the input image to
            a (3, H, W) tensor. Repeat an entry for several views of one group.
        mean: Normalisation mean, to undo it for display; found in a ``v2.Normalize`` of the
            first view when not given.
        std: Normalisation std (same rule as ``mean``).
        recipe: The recipe the views come from (set by :func:`make_transform`).

    Attributes:
        view_names: Name of each view, in output order.
        recipe: The Recipe, or None for hand-composed views.
    """

    def __init__(
        self,
        views: Sequence[tuple[str, Callable[..., Any]]],
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        recipe: Recipe | None = None,
    ) -> None:
        views = list(views)
        if not views:
            raise ValueError("MultiView needs at least one (name, callable) view.")
        for i, item in enumerate(views):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(
                    f"MultiView view {i} is {item!r}; expected a (name: str, callable) tuple."
                )
            if not callable(item[1]):
                raise ValueError(f"MultiView view {item[0]!r} is not callable: {item[1]!r}.")
        self.views: list[tuple[str, Callable[..., Any]]] = views
        self.recipe = recipe
        if mean is None and std is None:
            norm = _find_normalize(views[0][1])
            if norm is not None:
                mean, std = norm.mean, norm.std
        self.mean: tuple[float, ...] | None = None if mean is None else tuple(mean)
        self.std: tuple[float, ...] | None = None if std is None else tuple(std)

    @classmethod
    def from_recipe(cls, rec: Recipe) -> MultiView:
        """One ViewTransform per group, repeated ``count`` times, in the recipe's view order."""
        views: list[tuple[str, Callable[..., Any]]] = []
        for spec in rec.groups:
            view = build_view(spec, mean=rec.mean, std=rec.std, normalize=rec.normalize)
            views.extend((spec.name, view) for _ in range(spec.count))
        if not rec.normalize:
            return cls(views, recipe=rec)
        return cls(views, mean=rec.mean, std=rec.std, recipe=rec)

    @property
    def view_names(self) -> list[str]:
        """Name of each view, in output order."""
        return [name for name, _ in self.views]

    @property
    def view_kinds(self) -> list[str]:
        """``"global"``/``"local"`` per view from the recipe (``"view"`` when hand-composed)."""
        return self.recipe.view_kinds if self.recipe is not None else ["view"] * len(self.views)

    def __len__(self) -> int:
        return len(self.views)

    def __call__(self, img: Any) -> list[torch.Tensor]:
        """The views of ``img``: float32 tensors (3, size, size), in :attr:`view_names` order."""
        return [view(img) for _, view in self.views]

    def call_with_params(
        self, img: Any, seed: int | None = None
    ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        """The views plus, per view, ``{"name": ..., "ops": [records]}`` of the sampled params.

        Args:
            img: PIL image or (3, H, W) tensor.
            seed: None draws from torch's global generator like ``__call__``; an int makes the
                result reproducible and leaves the global random state untouched (see
                :meth:`ViewTransform.call_with_params`). View ``i`` uses seed ``(seed, i)``.

        Returns:
            (views, params): the tensors and one dict per view.
        """
        tensors: list[torch.Tensor] = []
        params: list[dict[str, Any]] = []
        for i, (name, view) in enumerate(self.views):
            sub = None if seed is None else derive_seed(seed, "view", i)
            if not isinstance(view, ViewTransform) and isinstance(view, v2.Transform):
                view = ViewTransform([view])
            if isinstance(view, ViewTransform):
                out, records = view.call_with_params(img, seed=sub)
            elif sub is None:
                out, records = view(img), []
            else:
                with _forked_rng():
                    torch.manual_seed(sub)
                    out, records = view(img), []
            tensors.append(out)
            params.append({"name": name, "ops": records})
        return tensors, params

    def __repr__(self) -> str:
        lines: list[tuple[str, int, Any]] = []
        last: Any = None
        for name, view in self.views:
            if view is last:
                lines[-1] = (lines[-1][0], lines[-1][1] + 1, lines[-1][2])
            else:
                lines.append((name, 1, view))
            last = view
        body = "\n".join(
            f"  {name} x{n}: {view!r}".replace("\n", "\n  ") for name, n, view in lines
        )
        return f"MultiView(\n{body}\n)"


def make_transform(method_or_recipe: str | Recipe = "simclr", **overrides: Any) -> MultiView:
    """The multi-view transform of a method (paper defaults) or of a recipe, with overrides.

    Args:
        method_or_recipe: A method name (see ``workbench.augment.METHOD_NAMES``) or a Recipe.
        **overrides: Keyword overrides as for :func:`workbench.augment.recipe`, e.g.
            ``input_size=128, cj_prob=0.0, rr_prob=0.5`` or ``local_count=4``.

    Returns:
        MultiView: PIL image -> list of float32 tensors (3, size, size), normalised, in
        ``recipe.view_names`` order; ``.recipe`` holds the resolved Recipe.

    Raises:
        ValueError: Unknown method or override key, or an invalid value (naming the field).

    Example:
        >>> t = make_transform("simclr", input_size=64)
        >>> [v.shape for v in t(Image.new("RGB", (100, 80)))]  # doctest: +SKIP
        [torch.Size([3, 64, 64]), torch.Size([3, 64, 64])]
    """
    if isinstance(method_or_recipe, Recipe):
        rec = apply_overrides(method_or_recipe, **overrides) if overrides else method_or_recipe
    elif isinstance(method_or_recipe, str):
        rec = recipe(method_or_recipe, **overrides)
    else:
        raise ValueError(
            f"make_transform needs a method name or a Recipe, got "
            f"{type(method_or_recipe).__name__}."
        )
    return MultiView.from_recipe(rec)


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run a block with ``n`` intra-op torch threads (restored afterwards).

    Small-image augmentations gain nothing from intra-op threads, and on a busy 2-core machine
    those threads spin against each other: measured 2 ms vs 50-150 ms per 64 px view.
    """
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)
