"""Robust image decoding: any mode to RGB, huge files at reduced size, clear reasons on failure."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

# Above this many pixels an image is decoded at reduced size (JPEG draft mode) or downscaled
# right after decoding, so one 8000x8000 photo cannot take gigabytes.
MAX_SIDE_DEFAULT = 1024


class ImageReadError(Exception):
    """An image file could not be decoded; the message is the reason shown to the user."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F, 1) to 8-bit RGB.

    Transparent pixels are composited on white, as an image viewer would show them; 16-bit and
    float images are rescaled from their own range rather than clipped.
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | Path, max_side: int | None = MAX_SIDE_DEFAULT) -> Image.Image:
    """Decode one file to an RGB image whose longer side is at most ``max_side``.

    Args:
        path: Image file.
        max_side: Longer side after decoding; None keeps the full resolution.

    Returns:
        A fully loaded RGB image (the file handle is closed).

    Raises:
        ImageReadError: With a one-line reason: empty file, not an image, truncated, ...
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageReadError(f"cannot read file ({e.strerror})") from e
    if size == 0:
        raise ImageReadError("empty file (0 bytes)")
    # Allow huge images: we shrink them ourselves below; keep PIL's decompression-bomb check as
    # a warning only for absurd sizes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                if max_side is not None and max(im.size) > max_side:
                    if im.format == "JPEG":
                        im.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4, 1/8 scale
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)  # animated GIF/TIFF: first frame
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                im.load()
                img = to_rgb(im)
        except Image.DecompressionBombError as e:
            raise ImageReadError(f"image too large to decode safely ({e})") from e
        except (OSError, SyntaxError, ValueError) as e:
            msg = str(e) or type(e).__name__
            if "cannot identify image file" in msg:
                msg = "not an image file (unrecognised format)"
            elif "truncated" in msg.lower() or "broken data stream" in msg.lower():
                msg = f"truncated or corrupt image ({msg})"
            raise ImageReadError(msg) from e
    if max_side is not None and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return img


def is_image_path(path: str | Path) -> bool:
    """True when the suffix is one of IMAGE_EXTENSIONS (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
