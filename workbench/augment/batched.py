"""Recipes applied to whole batches on the training device, with per-sample random parameters.

The per-image torchvision v2 pipeline (``make_transform``) runs in DataLoader workers on the
CPU and is what users preview. For training on cached, decoded images this module applies the same
recipe to a uint8 batch (B, 3, H, W) in one go: every op draws its parameters per sample, exactly
as the per-image pipeline does, but as a few vectorised tensor ops on the GPU (or CPU).
torchvision's v2 ops draw one set of parameters per call, so they cannot do this per sample; the
crop uses ``torchvision.ops.roi_align``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


def _rand(
    n: int,
    device: torch.device,
    lo: float = 0.0,
    hi: float = 1.0,
    gen: torch.Generator | None = None,
) -> Tensor:
    return torch.rand(n, device=device, generator=gen) * (hi - lo) + lo


def _gray(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) of RGB images (B, 3, H, W) in [0, 1]."""
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
    attempts: int = 10,
    gen: torch.Generator | None = None,
) -> Tensor:
    """RandomResizedCrop boxes (n, 4) as x1, y1, x2, y2, drawn as torchvision does per image."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * _rand(n * attempts, device, *scale, gen=gen).view(n, attempts)
    aspect = torch.exp(_rand(n * attempts, device, *log_r, gen=gen)).view(n, attempts)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=device))
    # Fallback as in torchvision: the central crop with the ratio clamped into range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    idx = first.clamp(min=0)[:, None]
    cw = torch.where(first >= 0, w.gather(1, idx)[:, 0], torch.full_like(first, fw, dtype=w.dtype))
    ch = torch.where(first >= 0, h.gather(1, idx)[:, 0], torch.full_like(first, fh, dtype=h.dtype))
    x1 = torch.floor(_rand(n, device, gen=gen) * (width - cw + 1))
    y1 = torch.floor(_rand(n, device, gen=gen) * (height - ch + 1))
    x1 = torch.where(first >= 0, x1, (width - cw) // 2)
    y1 = torch.where(first >= 0, y1, (height - ch) // 2)
    return torch.stack([x1, y1, x1 + cw, y1 + ch], dim=1)


def random_resized_crop(
    x: Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator | None = None,
) -> Tensor:
    """Per-sample random resized crops of x (B, 3, H, W) -> (B, 3, size, size)."""
    from torchvision.ops import roi_align

    b, _, h, w = x.shape
    boxes = crop_boxes(b, h, w, scale, ratio, x.device, gen=gen).to(x.dtype)
    rois = torch.cat([torch.arange(b, device=x.device, dtype=x.dtype)[:, None], boxes], dim=1)
    # sampling_ratio=0: each output pixel averages ceil(crop/size) bilinear samples per axis,
    # i.e. area-style anti-aliasing when shrinking, and the exact pixels for a same-size crop.
    return roi_align(
        x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True
    )


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    v = maxc
    delta = maxc - minc
    s = delta / maxc.clamp(min=1e-8)
    d = delta.clamp(min=1e-8)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack(
        [
            torch.stack([v, q, p, p, t, v], 1),
            torch.stack([t, v, v, q, p, p], 1),
            torch.stack([p, p, t, v, v, q], 1),
        ],
        1,
    )  # fmt: skip  (B, 3, 6, H, W)
    return table.gather(2, i[:, None, None].expand(-1, 3, 1, -1, -1)).squeeze(2)


def color_jitter(
    x: Tensor,
    mask: Tensor,
    b: float,
    c: float,
    s: float,
    h: float,
    gen: torch.Generator | None = None,
    order_gen: torch.Generator | None = None,
) -> Tensor:
    """Per-sample brightness, contrast, saturation and hue jitter on the masked samples.

    Factors are drawn per sample like torchvision's ColorJitter: brightness/contrast/saturation
    in [max(0, 1 - v), 1 + v], hue shift in [-h, h]; the order of the four ops is shuffled.
    """
    n = x.shape[0]
    dev = x.device
    out = x
    for op in torch.randperm(4, generator=order_gen).tolist():  # CPU: no device sync
        if op == 0 and b > 0:
            f = _rand(n, dev, max(0.0, 1 - b), 1 + b, gen).view(n, 1, 1, 1)
            out = (out * f).clamp(0, 1)
        elif op == 1 and c > 0:
            f = _rand(n, dev, max(0.0, 1 - c), 1 + c, gen).view(n, 1, 1, 1)
            mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
            out = (f * out + (1 - f) * mean).clamp(0, 1)
        elif op == 2 and s > 0:
            f = _rand(n, dev, max(0.0, 1 - s), 1 + s, gen).view(n, 1, 1, 1)
            out = (f * out + (1 - f) * _gray(out)).clamp(0, 1)
        elif op == 3 and h > 0:
            shift = _rand(n, dev, -h, h, gen).view(n, 1, 1)
            hsv = _rgb_to_hsv(out)
            hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
            out = _hsv_to_rgb(hsv)
    return torch.where(mask.view(n, 1, 1, 1), out, x)


def gaussian_blur(
    x: Tensor, mask: Tensor, sigma: tuple[float, float], gen: torch.Generator | None = None
) -> Tensor:
    """Per-sample Gaussian blur (sigma drawn per sample) on the masked samples.

    The kernel covers +-3 sigma_max, as the per-image pipeline's (``blur_kernel_size``).
    """
    from workbench.augment.transforms import blur_kernel_size

    n, ch, hgt, wid = x.shape
    k = blur_kernel_size(sigma[1], min(hgt, wid))
    sig = _rand(n, x.device, *sigma, gen=gen).clamp(min=1e-3)
    r = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kern = torch.exp(-(r[None] ** 2) / (2 * sig[:, None] ** 2))
    kern = kern / kern.sum(1, keepdim=True)  # (B, k)
    weight = kern.repeat_interleave(ch, 0)  # (B*C, k): one kernel per sample and channel
    y = x.reshape(1, n * ch, hgt, wid)
    y = F.pad(y, (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, weight.view(n * ch, 1, 1, k), groups=n * ch)
    y = F.conv2d(y, weight.view(n * ch, 1, k, 1), groups=n * ch)
    return torch.where(mask.view(n, 1, 1, 1), y.view(n, ch, hgt, wid), x)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each image by its own angle (degrees, (B,)), bilinear, zero fill."""
    t = degrees * math.pi / 180
    cos, sin = torch.cos(t), torch.sin(t)
    zero = torch.zeros_like(t)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def apply_view(
    x: Tensor,
    spec: Any,
    gen: torch.Generator | None = None,
    order_gen: torch.Generator | None = None,
) -> Tensor:
    """One view of a batch x (B, 3, H, W) float in [0, 1] under a ViewSpec -> (B, 3, s, s).

    Args:
        x: The batch.
        spec: The view's ViewSpec.
        gen: Generator on ``x``'s device for every per-sample draw (None: torch's default).
        order_gen: CPU generator for the colour-jitter op order (None: torch's default).
    """
    n, dev = x.shape[0], x.device

    def coin(p: float) -> Tensor:
        return _rand(n, dev, gen=gen) < p

    crop = (tuple(spec.crop_scale), tuple(spec.crop_ratio))
    v = random_resized_crop(x, int(spec.size), *crop, gen=gen)
    if spec.hflip_prob > 0:
        v = torch.where(coin(spec.hflip_prob).view(n, 1, 1, 1), v.flip(-1), v)
    if getattr(spec, "vflip_prob", 0) > 0:
        v = torch.where(coin(spec.vflip_prob).view(n, 1, 1, 1), v.flip(-2), v)
    if getattr(spec, "rr_prob", 0) > 0:
        k = torch.randint(1, 4, (n,), device=dev, generator=gen) * coin(spec.rr_prob)
        v = torch.stack([torch.rot90(img, int(kk), dims=(1, 2)) for img, kk in zip(v, k.tolist())])
    if getattr(spec, "rotation_prob", 0) > 0 and getattr(spec, "rotation_degrees", 0) > 0:
        deg = _rand(n, dev, -spec.rotation_degrees, spec.rotation_degrees, gen) * coin(
            spec.rotation_prob
        )
        v = rotate(v, deg)
    if spec.cj_prob > 0 and spec.cj_strength > 0:
        st = spec.cj_strength
        v = color_jitter(
            v,
            coin(spec.cj_prob),
            st * spec.cj_brightness,
            st * spec.cj_contrast,
            st * spec.cj_saturation,
            st * spec.cj_hue,
            gen,
            order_gen,
        )
    if spec.gray_prob > 0:
        v = torch.where(coin(spec.gray_prob).view(n, 1, 1, 1), _gray(v).expand_as(v), v)
    if spec.blur_prob > 0:
        v = gaussian_blur(v, coin(spec.blur_prob), tuple(spec.blur_sigma), gen)
    if spec.solarize_prob > 0:
        sol = torch.where(v >= spec.solarize_threshold, 1.0 - v, v)
        v = torch.where(coin(spec.solarize_prob).view(n, 1, 1, 1), sol, v)
    return v


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """One seed per (run seed, epoch, global rank): data order and augmentation draws."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + int(rank) * 104_729) % (2**63)


class BatchedViews(nn.Module):
    """A recipe as a batched, on-device module: uint8 (B, 3, H, W) -> list of normalised views.

    Draws come from the module's own generators, seeded by ``epoch_seed(seed, epoch, rank)``
    in :meth:`set_epoch`: every DDP rank draws different parameters (the default generator is
    seeded alike on every rank), and a resumed run draws what the same epoch would have drawn.

    Args:
        recipe: A ``workbench.augment.Recipe`` (its ``groups`` of ViewSpecs, ``mean``, ``std``).
        seed: The run's seed.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, recipe: Any, seed: int = 0) -> None:
        super().__init__()
        self.recipe = recipe
        self.seed = int(seed)
        self.epoch, self.rank = 0, 0
        self._gen: torch.Generator | None = None
        self._order_gen: torch.Generator | None = None
        self.register_buffer("mean", torch.tensor(recipe.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(recipe.std).view(1, 3, 1, 1), persistent=False)

    def set_epoch(self, epoch: int, rank: int = 0) -> None:
        """Re-seed the draws for ``epoch`` on global rank ``rank`` (called before each epoch)."""
        self.epoch, self.rank = int(epoch), int(rank)
        self._gen = self._order_gen = None

    def _generators(self, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
        if self._gen is None or self._gen.device != device or self._order_gen is None:
            s = epoch_seed(self.seed, self.epoch, self.rank)
            self._gen = torch.Generator(device=device).manual_seed(s)
            self._order_gen = torch.Generator().manual_seed(s + 1)
        return self._gen, self._order_gen

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Tensor]:
        """Views in the recipe's order (``recipe.view_names``), each (B, 3, size, size)."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        gen, order_gen = self._generators(x.device)
        views = []
        for spec in self.recipe.groups:
            for _ in range(int(spec.count)):
                v = apply_view(x, spec, gen, order_gen)
                if getattr(self.recipe, "normalize", True):
                    v = (v - self.mean) / self.std
                views.append(v.contiguous())
        return views
