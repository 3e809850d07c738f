from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from workbench.data import load_dataset
from workbench.eval import confusion_matrix, invariance_probe, linear_probe
from workbench.eval.probes import FAMILIES, SIMCLR_PARAMS, family_transform, probe_params


def test_confusion_matrix_counts_pairs():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert cm.dtype == np.int64
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_linear_probe_on_clusters():
    rng = np.random.default_rng(0)
    centers = 3 * rng.normal(size=(3, 10))
    ytr, yte = rng.integers(0, 3, 150), np.array([0, 1, 2, 2, 1, 0])
    xtr = centers[ytr] + rng.normal(size=(150, 10))
    xte = centers[yte] + rng.normal(size=(6, 10))
    res = linear_probe(torch.tensor(xtr), ytr, xte, yte)
    assert res["accuracy"] == 1.0
    assert res["confusion"].trace() == 6 and res["confusion"].shape == (3, 3)
    np.testing.assert_array_equal(res["per_class"], [1, 1, 1])
    # a probe on noise is near chance: the accuracy measures the features, not the labels
    noise = linear_probe(rng.normal(size=(150, 10)), ytr, rng.normal(size=(60, 10)),
                         rng.integers(0, 3, 60))  # fmt: skip
    assert noise["accuracy"] < 0.6


def test_linear_probe_errors():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(x, [1, 1, 1, 1], x, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="negative labels"):
        linear_probe(x, [0, 1, -1, 1], x, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="2 dims but train_feats have 3"):
        linear_probe(x, [0, 1, 0, 1], np.ones((4, 2)), [0, 1, 0, 1])


class ChannelMeans(nn.Module):
    """Features = per-channel means: blind to geometry, sensitive to colour."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Pixels(nn.Module):
    """Features = the raw pixels: sensitive to everything spatial."""

    def forward(self, x):
        return x.flatten(1)


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", n=24, image_size=16)


def test_invariance_probe_reflects_what_the_model_ignores(shapes):
    geo = invariance_probe(ChannelMeans(), shapes, n_images=12)
    assert list(geo) == list(FAMILIES)
    assert geo["flip"] == pytest.approx(1.0, abs=1e-5)  # a mirror keeps channel means
    assert geo["rotation"] > geo["color_jitter"]
    raw = invariance_probe(ChannelMeans(), shapes, n_images=12, families=["rotation"], center=False)
    assert raw["rotation"] > 0.99  # uncentred cosine: almost 1 for any small change
    assert geo["color_jitter"] < geo["flip"] and geo["solarize"] < 0.999
    pix = invariance_probe(Pixels(), shapes, n_images=12, families=["flip", "grayscale"])
    assert list(pix) == ["flip", "grayscale"]
    assert pix["flip"] < 0.99  # raw pixels do change under a flip
    again = invariance_probe(Pixels(), shapes, n_images=12, families=["flip", "grayscale"])
    assert again == pix  # seeded: images and augmentations are reproducible


def test_invariance_probe_strength_comes_from_the_recipe(shapes):
    weak = {"crop_scale": (0.8, 0.9), "crop_ratio": (1.0, 1.0)}  # changes every image, a bit
    spec = SimpleNamespace(**dict(SIMCLR_PARAMS, crop_scale=(0.05, 0.1)))
    recipe_like = SimpleNamespace(groups=[spec], mean=(0.5,) * 3, std=(0.5,) * 3, normalize=True)
    a = invariance_probe(Pixels(), shapes, weak, n_images=12, families=["crop"])
    b = invariance_probe(Pixels(), shapes, recipe_like, n_images=12, families=["crop"])
    assert a["crop"] > b["crop"] + 0.02  # tiny crops change the image far more
    params, norm = probe_params(recipe_like)
    assert params["crop_scale"] == (0.05, 0.1) and norm["mean"] == (0.5, 0.5, 0.5)


def test_probe_params_and_errors(shapes):
    assert probe_params(None)[0] == SIMCLR_PARAMS
    with pytest.raises(ValueError, match="Unknown probe parameters \\['cj_strenght'\\]"):
        probe_params({"cj_strenght": 0.5})
    with pytest.raises(ValueError, match="Valid families"):
        family_transform("warp", SIMCLR_PARAMS, 16)
    with pytest.raises(ValueError, match="Unknown augmentation families \\['warp'\\]"):
        invariance_probe(Pixels(), shapes, families=["warp"])
    for fam in FAMILIES:
        out = family_transform(fam, SIMCLR_PARAMS, 16)(torch.rand(3, 16, 16))
        assert out.shape == (3, 16, 16)


def test_grayscale_on_grey_images_is_not_measured():
    ds = load_dataset("digits").subset(range(16))  # grey images: grayscale changes nothing
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    res = invariance_probe(model, ds, "simclr", n_images=8, families=["grayscale", "flip"])
    assert np.isnan(res["grayscale"]) and np.isfinite(res["flip"])
    colour = load_dataset("shapes", n=16, image_size=16)  # coloured shapes: it is measured
    res = invariance_probe(model, colour, "simclr", n_images=8, families=["grayscale"])
    assert np.isfinite(res["grayscale"])
