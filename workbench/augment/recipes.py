"""Per-method view recipes: dataclasses of view specs whose defaults are the papers'.

A :class:`Recipe` is a list of :class:`ViewSpec` groups (one per kind of view a method trains on:
``"view"`` for symmetric methods, ``"view1"``/``"view2"`` for BYOL's asymmetric pair,
``"global1"``/``"global2"``/``"local"`` for DINO's multi-crop). :func:`recipe` returns a method's
defaults with keyword overrides applied; ``workbench.augment.make_transform`` turns it into a
callable that maps one image to its list of view tensors. This module needs no torch.

Defaults follow the reference implementations (Lightly SSL's transforms, which reproduce the
papers' settings) of:

- [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709
- [1] MoCo v2, 2020, https://arxiv.org/abs/2003.04297
- [2] SimSiam, 2020, https://arxiv.org/abs/2011.10566
- [3] BYOL, 2020, https://arxiv.org/abs/2006.07733
- [4] Barlow Twins, 2021, https://arxiv.org/abs/2103.03230
- [5] VICReg, 2021, https://arxiv.org/abs/2105.04906
- [6] DINO, 2021, https://arxiv.org/abs/2104.14294
- [7] Distillation from a DINOv2 teacher (LightlyTrain), https://arxiv.org/abs/2304.07193
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# DINO's local/global crop size ratio (96 / 224); `input_size=` scales local crops by it.
LOCAL_TO_GLOBAL = 96 / 224
MIN_SIZE = 8  # smallest view side we accept (a 3x3 conv stem needs a few pixels)
# At or below this global view side (CIFAR scale) `input_size=` switches to the papers' small-image
# settings: no Gaussian blur for every method (SimCLR [0] appendix B.9; the reference library's
# CIFAR-10 benchmarks do the same for every method), plus SMALL_IMAGE_CHANGES per method.
SMALL_IMAGE = 64
# Keys as in `recipe()`'s overrides (`<field>` for every group, `<group>_<field>` for one).
SMALL_IMAGE_CHANGES: dict[str, dict[str, Any]] = {
    "simclr": {"cj_strength": 0.5},  # SimCLR [0] appendix B.9: colour strength 0.5 on CIFAR-10
    # DINO: no local crops. At 32 px they are 14 px views of 5-40 % of the image, 12 of the loss's
    # 14 pairs; on digits (30 epochs) kNN fell below random init with them and rose without
    # (benchmarks/results/barlow_study.md, "why DINO does not learn on digits").
    "dino": {"local_count": 0},
    # BYOL: crops of at least half the image. A crop of 8 % of an 8x8 digit is a 2x2-pixel blob
    # that the predictor must map onto the whole digit; with (0.5, 1) and half the SGD rate, kNN
    # holds its early peak instead of falling back to random init (barlow_study.md).
    "byol": {"crop_scale": (0.5, 1.0)},
    # Barlow Twins (BYOL's views): the same crops. With the paper's crops 30-epoch digits kNN fell
    # from 0.84 to 0.44, half the untrained backbone's (barlow_study.md).
    "barlowtwins": {"crop_scale": (0.5, 1.0)},
}
KINDS = ("global", "local")


@dataclass(frozen=True)
class ViewSpec:
    """One group of views that share their augmentation parameters.

    Field defaults are SimCLR's [0]; :func:`recipe` holds every method's own defaults. Colour
    jitter factors are ``cj_strength * cj_<base>`` as in the SimCLR and BYOL code.
    """

    name: str = "view"  # group name, used in override keys: "view", "view1", "global1", "local"...
    kind: str = "global"  # "global" (full-size view) or "local" (small multi-crop view, DINO)
    count: int = 1  # number of views drawn from this group for every image
    size: int = 224  # output side in pixels (views are square)
    # random resized crop: area fraction range. 0.08 also at 32 px: gentler crops (0.2, 0.35)
    # learned no better on digits for SimCLR (benchmarks/results/crop_scale_decision.md); BYOL
    # and Barlow Twins take (0.5, 1) at small sizes (SMALL_IMAGE_CHANGES)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: aspect ratio range
    hflip_prob: float = 0.5  # probability of a horizontal flip
    vflip_prob: float = 0.0  # probability of a vertical flip
    rr_prob: float = 0.0  # probability of a random 90/180/270-degree rotation
    rotation_prob: float = 0.0  # probability of a small-angle rotation
    rotation_degrees: float = 15.0  # small-angle rotation range: uniform in [-deg, +deg]
    cj_prob: float = 0.8  # probability of colour jitter
    cj_strength: float = 1.0  # multiplier of the four jitter base values below
    cj_brightness: float = 0.8  # brightness jitter base: factor in [1 - s*b, 1 + s*b]
    cj_contrast: float = 0.8  # contrast jitter base: factor in [1 - s*c, 1 + s*c]
    cj_saturation: float = 0.8  # saturation jitter base: factor in [1 - s*sat, 1 + s*sat]
    cj_hue: float = 0.2  # hue jitter base: shift in [-s*h, +s*h] (s*h <= 0.5)
    gray_prob: float = 0.2  # probability of converting to grayscale (kept 3-channel)
    blur_prob: float = 0.5  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # blur sigma range in output pixels
    solarize_prob: float = 0.0  # probability of solarization
    solarize_threshold: float = 0.5  # solarize pixels >= threshold (0..1 intensity scale)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(self.name, f.name, getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        where = f"in view group {self.name!r}"
        if not self.name.isidentifier():
            raise ValueError(f"Invalid view group name {self.name!r}: use letters, digits and _.")
        if self.kind not in KINDS:
            raise ValueError(f"Invalid kind={self.kind!r} {where}. Valid: {list(KINDS)}")
        low = 0 if self.kind == "local" else 1
        if self.count < low:
            raise ValueError(
                f"Invalid count={self.count} {where}: a {self.kind} group needs count >= {low}."
            )
        if self.size < MIN_SIZE:
            raise ValueError(f"Invalid size={self.size} {where}: views need size >= {MIN_SIZE}.")
        for name in PROB_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Invalid {name}={value} {where}: a probability is in [0, 1].")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(
                f"Invalid crop_scale={self.crop_scale} {where}: need 0 < min <= max <= 1 "
                f"(fractions of the image area)."
            )
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"Invalid crop_ratio={self.crop_ratio} {where}: need 0 < min <= max.")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"Invalid blur_sigma={self.blur_sigma} {where}: need 0 < min <= max.")
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(
                f"Invalid rotation_degrees={self.rotation_degrees} {where}: need 0..180."
            )
        for name in ("cj_strength", "cj_brightness", "cj_contrast", "cj_saturation", "cj_hue"):
            if getattr(self, name) < 0:
                raise ValueError(f"Invalid {name}={getattr(self, name)} {where}: need >= 0.")
        if self.cj_strength * self.cj_hue > 0.5:
            raise ValueError(
                f"Invalid cj_hue={self.cj_hue} with cj_strength={self.cj_strength} {where}: "
                f"the hue shift cj_strength * cj_hue must be <= 0.5."
            )
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(
                f"Invalid solarize_threshold={self.solarize_threshold} {where}: need 0..1."
            )

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        """Colour jitter (brightness, contrast, saturation, hue) after applying the strength."""
        s = self.cj_strength
        return (
            s * self.cj_brightness,
            s * self.cj_contrast,
            s * self.cj_saturation,
            s * self.cj_hue,
        )


# Field groups, used for validation, coercion, override parsing and widget controls.
SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ViewSpec))
EDITABLE_FIELDS: tuple[str, ...] = tuple(f for f in SPEC_FIELDS if f not in ("name", "kind"))
PROB_FIELDS: tuple[str, ...] = tuple(f for f in SPEC_FIELDS if f.endswith("_prob"))
INT_FIELDS: tuple[str, ...] = ("count", "size")
RANGE_FIELDS: tuple[str, ...] = ("crop_scale", "crop_ratio", "blur_sigma")
RECIPE_KEYS: tuple[str, ...] = ("input_size", "mean", "std", "normalize")


def _coerce(group: str, name: str, value: Any) -> Any:
    """Check a ViewSpec field's type and normalise it (ints to float, lists to tuples)."""
    where = f"in view group {group!r}"
    if name in ("name", "kind"):
        if not isinstance(value, str):
            raise ValueError(f"Invalid {name}={value!r} {where}: expected a string.")
        return value
    if name in INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"Invalid {name}={value!r} {where}: expected an integer.")
        return int(value)
    if name in RANGE_FIELDS:
        ok = isinstance(value, (tuple, list)) and len(value) == 2
        if not ok or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise ValueError(f"Invalid {name}={value!r} {where}: expected a pair (min, max).")
        return (float(value[0]), float(value[1]))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"Invalid {name}={value!r} {where}: expected a number.")
    return float(value)


class InvarianceOp(NamedTuple):
    """One augmentation op, the recipe fields that drive it and what it teaches the model."""

    name: str  # short name shown in the UI
    fields: tuple[str, ...]  # ViewSpec fields that control it
    help: str  # one line: what the op induces the model to ignore


# What each op induces: the invariance a model trained on such views acquires (SimCLR [0],
# Sec. 3 and App. B; BYOL [3], Sec. 3.3; DINO [6], Sec. 3.1).
INVARIANCES: dict[str, list[InvarianceOp]] = {
    "shape": [
        InvarianceOp(
            "random resized crop",
            ("crop_scale", "crop_ratio"),
            "Views show different parts at different zooms: the model learns to ignore position "
            "and scale and to predict the whole from a part (the most important op in SimCLR).",
        ),
        InvarianceOp("horizontal flip", ("hflip_prob",), "Ignore left-right orientation."),
        InvarianceOp(
            "vertical flip",
            ("vflip_prob",),
            "Ignore up-down orientation; fine for aerial or microscopy images, harmful when up "
            "matters.",
        ),
        InvarianceOp(
            "90-degree rotation",
            ("rr_prob",),
            "Ignore rotations by multiples of 90 degrees (top-down imagery has no 'up').",
        ),
        InvarianceOp(
            "small rotation",
            ("rotation_prob", "rotation_degrees"),
            "Ignore small camera tilts.",
        ),
    ],
    "texture": [
        InvarianceOp(
            "gaussian blur",
            ("blur_prob", "blur_sigma"),
            "Ignore fine texture and sharpness: pushes the model towards shape and layout.",
        ),
    ],
    "colour": [
        InvarianceOp(
            "colour jitter",
            ("cj_prob", "cj_strength", "cj_brightness", "cj_contrast", "cj_saturation", "cj_hue"),
            "Ignore lighting and colour casts; without it two crops of one image match by their "
            "colour histogram alone (SimCLR).",
        ),
        InvarianceOp(
            "grayscale",
            ("gray_prob",),
            "Ignore colour altogether some of the time: rely on luminance and shape.",
        ),
        InvarianceOp(
            "solarization",
            ("solarize_prob", "solarize_threshold"),
            "Ignore inverted bright tones; a strong perturbation BYOL and DINO apply to one view.",
        ),
    ],
}

# The probability that says whether an op is active at all (used by invariance_groups()).
_OP_PROB: dict[str, str] = {
    "random resized crop": "",
    "horizontal flip": "hflip_prob",
    "vertical flip": "vflip_prob",
    "90-degree rotation": "rr_prob",
    "small rotation": "rotation_prob",
    "gaussian blur": "blur_prob",
    "colour jitter": "cj_prob",
    "grayscale": "gray_prob",
    "solarization": "solarize_prob",
}


class FieldInfo(NamedTuple):
    """How a ViewSpec field is edited: control type, bounds, step, family and help."""

    control: str  # "int" | "prob" | "float" | "range"
    low: float  # smallest value a control offers
    high: float  # largest value a control offers
    step: float  # control step
    family: str  # "views" | "shape" | "texture" | "colour"
    label: str  # short label
    help: str  # one-line tooltip


FIELD_INFO: dict[str, FieldInfo] = {
    "count": FieldInfo("int", 0, 16, 1, "views", "views", "Number of views of this group."),
    "size": FieldInfo("int", MIN_SIZE, 1024, 1, "views", "size", "Output side in pixels."),
    "crop_scale": FieldInfo(
        "range", 0.01, 1.0, 0.01, "shape", "crop area", "Fraction of the image area kept."
    ),
    "crop_ratio": FieldInfo(
        "range", 0.25, 4.0, 0.01, "shape", "crop aspect", "Aspect ratio (w/h) of the crop."
    ),
    "hflip_prob": FieldInfo("prob", 0, 1, 0.05, "shape", "h-flip p", "Horizontal flip."),
    "vflip_prob": FieldInfo("prob", 0, 1, 0.05, "shape", "v-flip p", "Vertical flip."),
    "rr_prob": FieldInfo("prob", 0, 1, 0.05, "shape", "rot90 p", "Rotate by 90, 180 or 270."),
    "rotation_prob": FieldInfo("prob", 0, 1, 0.05, "shape", "rotate p", "Small-angle rotation."),
    "rotation_degrees": FieldInfo(
        "float", 0, 180, 1, "shape", "rotate deg", "Rotation range +-degrees."
    ),
    "cj_prob": FieldInfo("prob", 0, 1, 0.05, "colour", "jitter p", "Colour jitter probability."),
    "cj_strength": FieldInfo(
        "float", 0, 2, 0.05, "colour", "strength", "Multiplies the four jitter values."
    ),
    "cj_brightness": FieldInfo("float", 0, 2, 0.05, "colour", "brightness", "Brightness jitter."),
    "cj_contrast": FieldInfo("float", 0, 2, 0.05, "colour", "contrast", "Contrast jitter."),
    "cj_saturation": FieldInfo("float", 0, 2, 0.05, "colour", "saturation", "Saturation jitter."),
    "cj_hue": FieldInfo("float", 0, 0.5, 0.01, "colour", "hue", "Hue shift (x strength <= 0.5)."),
    "gray_prob": FieldInfo("prob", 0, 1, 0.05, "colour", "gray p", "Convert to grayscale."),
    "blur_prob": FieldInfo("prob", 0, 1, 0.05, "texture", "blur p", "Gaussian blur."),
    "blur_sigma": FieldInfo("range", 0.05, 10, 0.05, "texture", "blur sigma", "Sigma in pixels."),
    "solarize_prob": FieldInfo("prob", 0, 1, 0.05, "colour", "solarize p", "Solarization."),
    "solarize_threshold": FieldInfo(
        "float", 0, 1, 0.01, "colour", "threshold", "Invert intensities above this."
    ),
}


@dataclass
class Recipe:
    """The views one SSL method trains on, as groups of view specs.

    Attributes:
        method: Method name the defaults come from (a key of ``METHOD_DEFAULTS``).
        groups: View groups, in output order.
        mean: Per-channel normalisation mean (ImageNet's by default).
        std: Per-channel normalisation std (ImageNet's by default).
        normalize: Normalise views with mean/std (else float32 in [0, 1]).
    """

    method: str  # method whose defaults this recipe starts from
    groups: list[ViewSpec]  # view groups in output order
    mean: tuple[float, ...] = IMAGENET_MEAN  # per-channel mean for normalisation
    std: tuple[float, ...] = IMAGENET_STD  # per-channel std for normalisation
    normalize: bool = True  # normalise with mean/std; False leaves float32 in [0, 1]

    def __post_init__(self) -> None:
        self.groups = [g if isinstance(g, ViewSpec) else ViewSpec(**g) for g in self.groups]
        if not self.groups:
            raise ValueError(f"Recipe {self.method!r} needs at least one view group.")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"Invalid groups: view group names must be unique, got {names}.")
        for key in ("mean", "std"):
            value = getattr(self, key)
            ok = isinstance(value, (tuple, list)) and len(value) == 3
            if not ok or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                raise ValueError(f"Invalid {key}={value!r}: expected 3 numbers (R, G, B).")
            setattr(self, key, tuple(float(v) for v in value))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Invalid std={self.std}: every channel's std must be > 0.")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"Invalid normalize={self.normalize!r}: expected True or False.")
        if self.n_views < 1:
            raise ValueError(f"Recipe {self.method!r} makes no views: some count must be >= 1.")

    @property
    def n_views(self) -> int:
        """Total number of views per image."""
        return sum(g.count for g in self.groups)

    @property
    def view_names(self) -> list[str]:
        """Group name of each view, in output order (``["global1", "global2", "local", ...]``)."""
        return [g.name for g in self.groups for _ in range(g.count)]

    @property
    def view_sizes(self) -> list[int]:
        """Output side of each view, in output order."""
        return [g.size for g in self.groups for _ in range(g.count)]

    @property
    def view_kinds(self) -> list[str]:
        """``"global"`` or ``"local"`` for each view, in output order."""
        return [g.kind for g in self.groups for _ in range(g.count)]

    def group(self, name: str) -> ViewSpec:
        """The view group called ``name``."""
        for g in self.groups:
            if g.name == name:
                return g
        raise ValueError(f"Unknown view group {name!r}. Valid: {[g.name for g in self.groups]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists); inverse of :meth:`from_dict`."""
        return {
            "method": self.method,
            "groups": [
                {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in dataclasses.asdict(g).items()
                }
                for g in self.groups
            ],
            "mean": list(self.mean),
            "std": list(self.std),
            "normalize": self.normalize,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """Rebuild a recipe from :meth:`to_dict` output (e.g. a run's config.json)."""
        valid = ("method", "groups", "mean", "std", "normalize")
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"Unknown recipe keys {unknown}. Valid: {list(valid)}")
        if "method" not in d or "groups" not in d:
            raise ValueError("A recipe dict needs 'method' and 'groups'.")
        groups = []
        for g in d["groups"]:
            bad = sorted(set(g) - set(SPEC_FIELDS))
            if bad:
                raise ValueError(f"Unknown view spec fields {bad}. Valid: {list(SPEC_FIELDS)}")
            groups.append(ViewSpec(**g))
        kw = {k: d[k] for k in ("mean", "std", "normalize") if k in d}
        return cls(method=str(d["method"]), groups=groups, **kw)

    def overrides(self) -> dict[str, Any]:
        """The keyword overrides that turn the method's defaults into this recipe.

        ``recipe(r.method, **r.overrides()) == r`` holds for every recipe built by :func:`recipe`
        (the "Copy as code" contract). A field equal in every group is written once
        (``cj_prob=0.0``); a per-group difference as ``<group>_<field>``; equal global sizes as
        ``input_size`` (local sizes then only when they differ from the scaled default).
        """
        base = recipe(self.method)
        if [(g.name, g.kind) for g in base.groups] != [(g.name, g.kind) for g in self.groups]:
            raise ValueError(
                f"Recipe groups {[g.name for g in self.groups]} do not match method "
                f"{self.method!r} ({[g.name for g in base.groups]}); overrides cannot express it."
            )
        out: dict[str, Any] = {}
        global_sizes = {g.size for g in self.groups if g.kind == "global"}
        base_global = {g.size for g in base.groups if g.kind == "global"}
        if len(global_sizes) == 1 and global_sizes != base_global:
            out["input_size"] = global_sizes.pop()
            base = _apply(base, {"input_size": out["input_size"]})
        for f in EDITABLE_FIELDS:
            mine = [getattr(g, f) for g in self.groups]
            theirs = [getattr(g, f) for g in base.groups]
            if mine == theirs:
                continue
            if len(set(mine)) == 1:
                out[f] = mine[0]
                continue
            for g, a, b in zip(self.groups, mine, theirs):
                if a != b:
                    out[f"{g.name}_{f}"] = a
        for key in ("mean", "std", "normalize"):
            if getattr(self, key) != getattr(base, key):
                out[key] = getattr(self, key)
        return out

    def to_code(self, name: str = "make_transform", prefix: str = "wb.") -> str:
        """Python source of the call that rebuilds this recipe, e.g. for "Copy as code".

        Example: ``wb.make_transform("dino", input_size=128, local_count=4)``.
        """
        args = [repr(self.method)] + [f"{k}={v!r}" for k, v in self.overrides().items()]
        return f"{prefix}{name}({', '.join(args)})"

    def invariance_groups(self) -> dict[str, list[InvarianceOp]]:
        """The ops of :data:`INVARIANCES` active in some view group (probability > 0), by family."""
        out: dict[str, list[InvarianceOp]] = {}
        for family, ops in INVARIANCES.items():
            active = [
                op
                for op in ops
                if not _OP_PROB[op.name]
                or any(getattr(g, _OP_PROB[op.name]) > 0 for g in self.groups)
            ]
            out[family] = active
        return out


def _symmetric(count: int = 2, **kw: Any) -> Callable[[], list[ViewSpec]]:
    return lambda: [ViewSpec(name="view", kind="global", count=count, **kw)]


_BYOL_COLOUR: dict[str, Any] = dict(
    cj_brightness=0.4, cj_contrast=0.4, cj_saturation=0.2, cj_hue=0.1
)
_DINO_COLOUR: dict[str, Any] = dict(
    cj_strength=0.5, cj_brightness=0.8, cj_contrast=0.8, cj_saturation=0.4
)


def _byol() -> list[ViewSpec]:
    # BYOL [3], Table 6: blur 1.0 / 0.1 and solarize 0.0 / 0.2 for the two views.
    return [
        ViewSpec(name="view1", count=1, blur_prob=1.0, solarize_prob=0.0, **_BYOL_COLOUR),
        ViewSpec(name="view2", count=1, blur_prob=0.1, solarize_prob=0.2, **_BYOL_COLOUR),
    ]


def _dino() -> list[ViewSpec]:
    # DINO [6], main_dino.py DataAugmentationDINO: 2 global crops (0.4, 1) + 6 local (0.05, 0.4).
    glob: dict[str, Any] = dict(
        kind="global", count=1, size=224, crop_scale=(0.4, 1.0), **_DINO_COLOUR
    )
    return [
        ViewSpec(name="global1", blur_prob=1.0, solarize_prob=0.0, **glob),
        ViewSpec(name="global2", blur_prob=0.1, solarize_prob=0.2, **glob),
        ViewSpec(
            name="local",
            kind="local",
            count=6,
            size=96,
            crop_scale=(0.05, 0.4),
            blur_prob=0.5,
            solarize_prob=0.0,
            **_DINO_COLOUR,
        ),
    ]


# Every method's default view groups (a factory each, so nobody mutates a shared default).
METHOD_DEFAULTS: dict[str, Callable[[], list[ViewSpec]]] = {
    "simclr": _symmetric(),  # SimCLR [0]
    "moco": _symmetric(  # MoCo v2 [1]
        crop_scale=(0.2, 1.0), cj_brightness=0.4, cj_contrast=0.4, cj_saturation=0.4, cj_hue=0.1
    ),
    "simsiam": _symmetric(  # SimSiam [2] uses MoCo v2's augmentations
        crop_scale=(0.2, 1.0), cj_brightness=0.4, cj_contrast=0.4, cj_saturation=0.4, cj_hue=0.1
    ),
    "byol": _byol,  # BYOL [3]
    "barlowtwins": _byol,  # Barlow Twins [4] uses BYOL's augmentations
    "vicreg": _symmetric(solarize_prob=0.1, **_DINO_COLOUR),  # [5]
    "dino": _dino,  # DINO [6]
    # Distillation [7]: one view, fed to the frozen teacher and to the student alike.
    "distillation": _symmetric(count=1, crop_scale=(0.14, 1.0), blur_prob=1.0, **_DINO_COLOUR),
    "distillationv1": _symmetric(count=1, crop_scale=(0.14, 1.0), blur_prob=1.0, **_DINO_COLOUR),
}
METHOD_NAMES: tuple[str, ...] = tuple(sorted(METHOD_DEFAULTS))


def valid_override_keys(groups: list[ViewSpec]) -> list[str]:
    """Every keyword :func:`recipe` accepts for these groups."""
    per_group = [f"{g.name}_{f}" for g in groups for f in EDITABLE_FIELDS]
    return list(RECIPE_KEYS) + list(EDITABLE_FIELDS) + per_group


def _scaled_local(input_size: int) -> int:  # local crops keep their 96/224 proportion
    return max(MIN_SIZE, math.floor(input_size * LOCAL_TO_GLOBAL + 0.5))


def _small_image_changes(method: str, group: ViewSpec) -> dict[str, Any]:
    """The fields of ``SMALL_IMAGE_CHANGES[method]`` for ``group`` that it holds at paper value.

    So a recipe resized to 32 px keeps the local crops its user asked for.
    """
    paper = {g.name: g for g in METHOD_DEFAULTS[method]()}.get(group.name, group)
    out = {}
    for key, value in SMALL_IMAGE_CHANGES.get(method, {}).items():
        target = _override_target(key, [group.name])
        if target and getattr(group, target[1]) == getattr(paper, target[1]):
            out[target[1]] = value
    return out


def _override_target(key: str, names: list[str]) -> tuple[str | None, str] | None:
    """``(group, field)`` an override key sets (group None: every group), or None if none."""
    if key in EDITABLE_FIELDS:
        return None, key
    group = next((n for n in names if key.startswith(n + "_")), None)
    field = key[len(group) + 1 :] if group else ""
    return (group, field) if field in EDITABLE_FIELDS else None


def _apply(base: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """Apply ``overrides`` to ``base`` (see :func:`recipe` for the key rules)."""
    names = [g.name for g in base.groups]
    per_group: dict[str, dict[str, Any]] = {n: {} for n in names}
    everywhere: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in RECIPE_KEYS:
            top[key] = value
            continue
        target = _override_target(key, names)
        if target is None:
            valid = valid_override_keys(base.groups)
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"Unknown override {key!r} for method {base.method!r}.{hint} Valid: "
                f"{list(RECIPE_KEYS)}, any of {list(EDITABLE_FIELDS)} (sets every view "
                f"group), or '<group>_<field>' with group in {names}."
            )
        group, fname = target
        if group is None:
            everywhere[fname] = value
        else:
            per_group[group][fname] = value
    size_from_input: dict[str, Any] = {}
    if "input_size" in top:
        size = top["input_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
            raise ValueError(f"Invalid input_size={size!r}: expected an integer >= {MIN_SIZE}.")
        size_from_input = {"global": size, "local": _scaled_local(size)}
    groups = []
    for g in base.groups:
        changes: dict[str, Any] = {}
        if size_from_input:
            changes["size"] = size_from_input[g.kind]
            # Blur sigma is in pixels: keep it the same fraction of the view (the papers' values
            # are for 224 px; at 32 px a sigma of 2 erases strokes, which is why the reference
            # CIFAR recipes switch blur off).
            f = changes["size"] / g.size
            changes["blur_sigma"] = (g.blur_sigma[0] * f, g.blur_sigma[1] * f)
            if size_from_input["global"] <= SMALL_IMAGE:
                changes["blur_prob"] = 0.0
                changes.update(_small_image_changes(base.method, g))
        changes.update(everywhere)
        changes.update(per_group[g.name])
        groups.append(dataclasses.replace(g, **changes) if changes else g)
    extra = {k: top[k] for k in ("mean", "std", "normalize") if k in top}
    return Recipe(
        method=base.method,
        groups=groups,
        mean=extra.get("mean", base.mean),
        std=extra.get("std", base.std),
        normalize=extra.get("normalize", base.normalize),
    )


def recipe(method: str = "simclr", **overrides: Any) -> Recipe:
    """A method's view recipe with its paper defaults, with keyword overrides applied.

    Override keys:
        - ``<field>=value`` (any :class:`ViewSpec` field except name/kind) sets every view group.
        - ``<group>_<field>=value`` sets one group: ``local_count=4``, ``view2_solarize_prob=0``.
        - ``input_size=`` sets every global group's size and scales local sizes by 96/224
          (rounded, at least 8) unless ``local_size`` is also given; the blur sigma range
          scales with the view size too (sigma is in pixels; the papers' values are at 224 px).
          At ``input_size <= 64`` (CIFAR scale) the small-image settings apply: no blur (the
          papers'), SimCLR's colour strength 0.5 (its paper's) and DINO without local crops
          (measured here; :data:`SMALL_IMAGE_CHANGES`). Explicit keys win.
        - ``mean=``, ``std=``, ``normalize=`` set the normalisation.

    Group-specific keys win over ``<field>`` keys, which win over ``input_size``.

    Args:
        method: One of :data:`METHOD_NAMES`.
        **overrides: See above.

    Returns:
        The validated Recipe.

    Raises:
        ValueError: An unknown method or override key, or an invalid value (the message names the
            field): a probability outside [0, 1], a scale range with min > max, a size < 8, a
            count < 1 for a global group or < 0 for a local one.

    Example:
        >>> recipe("dino", input_size=128).view_sizes
        [128, 128, 55, 55, 55, 55, 55, 55]
    """
    if method not in METHOD_DEFAULTS:
        raise ValueError(f"Unknown method {method!r}. Valid methods: {list(METHOD_NAMES)}")
    base = Recipe(method=method, groups=METHOD_DEFAULTS[method]())
    return _apply(base, overrides) if overrides else base


def training_input_size(
    input_size: int | None, native_size: int | None = None, accelerator: str = "auto"
) -> int:
    """The global view side ``wb.train`` trains at (and so the side a preview must show).

    The rule of ``wb.train(input_size=None)``: the dataset's native size when it has one
    (``ds.meta["image_size"]``: digits and shapes), else 224 on a GPU and 96 on a CPU. With
    :func:`recipe`'s ``input_size=`` this also decides the small-image settings (<= 64 px).

    Args:
        input_size: The size asked for (None or "auto": resolve it).
        native_size: The dataset's native image side, if it has one.
        accelerator: ``"auto"`` (a GPU when torch sees one), ``"cpu"``, ``"gpu"``/``"cuda"``...

    Raises:
        ValueError: A size below 8 px.
    """
    if input_size not in (None, "auto"):
        if int(input_size) < MIN_SIZE:  # type: ignore[arg-type]
            raise ValueError(
                f"input_size={input_size} is too small; use {MIN_SIZE} or more pixels."
            )
        return int(input_size)  # type: ignore[arg-type]
    if native_size:
        return int(native_size)
    if accelerator == "auto":
        import torch

        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    return 224 if accelerator in ("gpu", "cuda") else 96


def apply_overrides(base: Recipe, **overrides: Any) -> Recipe:
    """``base`` with :func:`recipe`-style keyword overrides applied (a new Recipe)."""
    return _apply(base, overrides)


__all__ = [
    "FIELD_INFO",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INVARIANCES",
    "METHOD_DEFAULTS",
    "METHOD_NAMES",
    "FieldInfo",
    "InvarianceOp",
    "Recipe",
    "ViewSpec",
    "apply_overrides",
    "recipe",
    "training_input_size",
    "valid_override_keys",
]
