"""Built-in datasets that need no download: digits, shapes, photos."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from workbench.data.dataset import ImageDataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "magenta": (200, 50, 200),
    "cyan": (40, 200, 210),
}


def digits(image_size: int = 32) -> ImageDataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, upscaled to RGB (white ink on black).

    Args:
        image_size: Side of the returned square images in pixels.
    """
    from sklearn.datasets import load_digits

    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small for digits; use 8 or more.")
    bunch = load_digits()
    arr = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)  # (N, 8, 8) in 0..255
    images = [
        Image.fromarray(a, "L")
        .resize((image_size, image_size), Image.Resampling.BICUBIC)
        .convert("RGB")
        for a in arr
    ]
    return ImageDataset(
        "digits",
        images=images,
        labels=bunch.target,
        class_names=[str(i) for i in range(10)],
        meta={"image_size": image_size},
    )


def photos(max_side: int | None = None) -> ImageDataset:
    """scikit-learn's two sample photographs (a temple in China, a flower), unlabelled."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    images = [Image.fromarray(np.asarray(a, dtype=np.uint8), "RGB") for a in bunch.images]
    if max_side:
        for im in images:
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    names = [str(f).rsplit("/", 1)[-1] for f in bunch.filenames]
    return ImageDataset("photos", images=images, paths=names)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif kind == "hexagon":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(6) * math.pi / 3]
    elif kind == "star":
        pts = [
            (
                (1.0 if k % 2 == 0 else 0.45) * math.cos(a),
                (1.0 if k % 2 == 0 else 0.45) * math.sin(a),
            )
            for k, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)
        ]
    elif kind == "cross":
        w = 0.33
        pts = [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A textured gray-ish background: noise, stripes or checkerboard (a nuisance factor)."""
    base = rng.uniform(60, 200)
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:
        tex = rng.normal(0, 18, (size, size))
    elif kind == 1:
        period = rng.uniform(3, 8) * size / 32
        theta = rng.uniform(0, math.pi)
        tex = 20 * np.sign(
            np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * 2 * math.pi / period)
        )
    else:
        cell = max(2, int(rng.uniform(3, 7) * size / 32))
        tex = 18 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    tint = rng.uniform(-15, 15, 3)
    arr = np.clip(base + tex[..., None] + tint, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def shapes(
    n: int = 1200,
    image_size: int = 32,
    label_by: str = "shape",
    seed: int = 0,
    shape_names: tuple[str, ...] = SHAPES,
    color_names: tuple[str, ...] = tuple(COLORS),
) -> ImageDataset:
    """A procedural labelled dataset for teaching which invariances augmentations choose.

    Each image has a shape (the default label) drawn in one colour over a textured background,
    with random size, position and rotation. With ``label_by="color"`` the label is the colour
    instead, so colour jitter during pretraining destroys exactly the information the label needs.

    Args:
        n: Number of images.
        image_size: Side in pixels (drawn at 4x and downsampled, so edges are anti-aliased).
        label_by: ``"shape"`` or ``"color"``.
        seed: Everything (classes and nuisances) is a deterministic function of the seed.
        shape_names: Subset of SHAPES to use.
        color_names: Subset of COLORS to use.
    """
    if label_by not in ("shape", "color"):
        raise ValueError(f"label_by={label_by!r} is not valid. Valid values: ['color', 'shape']")
    for s in shape_names:
        if s not in SHAPES:
            raise ValueError(f"Unknown shape {s!r}. Valid shapes: {list(SHAPES)}")
    for c in color_names:
        if c not in COLORS:
            raise ValueError(f"Unknown colour {c!r}. Valid colours: {list(COLORS)}")
    if n < 1 or image_size < 8:
        raise ValueError(f"shapes needs n >= 1 and image_size >= 8 (got n={n}, size={image_size}).")
    rng = np.random.default_rng(seed)
    ss = 4 * image_size  # supersampled canvas
    shape_idx = rng.integers(len(shape_names), size=n)
    color_idx = rng.integers(len(color_names), size=n)
    images = []
    for i in range(n):
        bg = _background(rng, ss)
        draw = ImageDraw.Draw(bg)
        r = rng.uniform(0.18, 0.34) * ss
        cx, cy = rng.uniform(r, ss - r, 2)
        angle = rng.uniform(0, 2 * math.pi)
        rgb = np.array(COLORS[color_names[color_idx[i]]]) + rng.integers(-20, 21, 3)
        fill = tuple(int(v) for v in np.clip(rgb, 0, 255))
        kind = shape_names[shape_idx[i]]
        if kind == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)
        img = bg.filter(ImageFilter.BoxBlur(1)).resize(
            (image_size, image_size), Image.Resampling.LANCZOS
        )
        images.append(img)
    labels = shape_idx if label_by == "shape" else color_idx
    names = list(shape_names) if label_by == "shape" else list(color_names)
    return ImageDataset(
        f"shapes(label_by={label_by})",
        images=images,
        labels=labels,
        class_names=names,
        meta={
            "label_by": label_by,
            "seed": seed,
            "image_size": image_size,
            "shape": shape_idx.tolist(),
            "color": color_idx.tolist(),
        },
    )
