import math

import pytest
import torch

import workbench as wb
from workbench.augment.batched import BatchedViews, apply_view, crop_boxes, gaussian_blur


def _images(n=16, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("method", ["simclr", "byol", "dino", "distillation"])
def test_views_match_recipe(method):
    r = wb.recipe(method, input_size=32)
    views = BatchedViews(r)(_images())
    assert len(views) == r.n_views
    assert [v.shape[-1] for v in views] == r.view_sizes
    assert all(v.dtype == torch.float32 and v.shape[:2] == (16, 3) for v in views)


def test_crop_boxes_follow_scale_and_bounds():
    torch.manual_seed(0)
    b = crop_boxes(4000, 40, 60, (0.2, 0.6), (3 / 4, 4 / 3), torch.device("cpu"))
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 60).all() and (b[:, 3] <= 40).all()
    area = w * h / (40 * 60)
    assert area.min() > 0.17 and area.max() < 0.65  # rounding to whole pixels
    assert abs(float(area.mean()) - 0.4) < 0.03
    ratio = w / h
    assert ratio.min() > 0.7 and ratio.max() < 1.42


def test_per_sample_randomness_and_seed():
    r = wb.recipe("simclr", input_size=32)
    x = _images()
    torch.manual_seed(1)
    a = BatchedViews(r)(x)
    torch.manual_seed(1)
    b = BatchedViews(r)(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    same = _images(1).expand(16, -1, -1, -1)  # one image, 16 times: views must differ
    v = BatchedViews(r)(same)[0]
    assert (v[1:] - v[:1]).abs().flatten(1).amax(1).min() > 0


def test_individual_ops_exact():
    x = _images(8).float() / 255
    base = dict(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        cj_prob=0.0,
        gray_prob=0.0,
        blur_prob=0.0,
        solarize_prob=0.0,
        hflip_prob=0.0,
    )
    spec = wb.recipe("simclr", input_size=32, **base).groups[0]
    ident = apply_view(x, spec)
    assert torch.allclose(ident, x, atol=1e-5)  # full crop at the same size: identity
    flip = apply_view(
        x, wb.recipe("simclr", input_size=32, **{**base, "hflip_prob": 1.0}).groups[0]
    )
    assert torch.allclose(flip, x.flip(-1), atol=1e-5)
    gray = apply_view(x, wb.recipe("simclr", input_size=32, **{**base, "gray_prob": 1.0}).groups[0])
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    sol = apply_view(
        x, wb.recipe("simclr", input_size=32, **{**base, "solarize_prob": 1.0}).groups[0]
    )
    assert torch.allclose(sol, torch.where(x >= 0.5, 1 - x, x), atol=1e-5)


def test_blur_matches_torchvision_for_fixed_sigma():
    from torchvision.transforms.v2 import functional as TF

    x = _images(4).float() / 255
    y = gaussian_blur(x, torch.ones(4, dtype=torch.bool), (1.5, 1.5))
    from workbench.augment.transforms import blur_kernel_size

    k = blur_kernel_size(1.5, 32)
    ref = TF.gaussian_blur(x, [k, k], [1.5, 1.5])
    assert torch.allclose(y, ref, atol=1e-5)


def test_color_jitter_statistics():
    torch.manual_seed(0)
    x = torch.full((2000, 3, 8, 8), 0.5)
    spec = wb.recipe(
        "simclr",
        input_size=8,
        crop_scale=(1.0, 1.0),
        cj_prob=1.0,
        cj_strength=1.0,
        cj_contrast=0.0,
        cj_saturation=0.0,
        cj_hue=0.0,
        gray_prob=0.0,
        blur_prob=0.0,
        hflip_prob=0.0,
    ).groups[0]
    y = apply_view(x, spec)
    f = y[:, 0, 0, 0] / 0.5  # brightness factor, uniform in [0.2, 1.8] for strength 1
    assert f.min() > 0.19 and f.max() < 1.81 and abs(float(f.mean()) - 1.0) < 0.03
    assert abs(float(f.std()) - 1.6 / math.sqrt(12)) < 0.03
