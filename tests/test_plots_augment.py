import io

import numpy as np
import pytest
from PIL import Image

from workbench.augment import make_transform
from workbench.augment.transforms import torch_threads
from workbench.plots import augmentation_grid
from workbench.plots.augment import augmentation_png
from workbench.plots.common import figure_to_png


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)) for _ in range(3)]


def _canvas(fig) -> np.ndarray:
    (ax,) = fig.axes
    return np.asarray(ax.images[0].get_array())


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_grid_rows_labels_and_reproducibility(images) -> None:
    t = make_transform("dino", input_size=32, local_count=2)
    fig = augmentation_grid(images, t, seed=0)
    texts = _texts(fig)
    assert texts.count("original") == 3
    for label in ("global1", "global2", "local 1", "local 2"):
        assert texts.count(label) == 3
    assert any(s.startswith("dino: global1 32px") for s in texts)
    same = _canvas(augmentation_grid(images, t, seed=0))
    other = _canvas(augmentation_grid(images, t, seed=1))
    assert np.array_equal(_canvas(fig), same)
    assert not np.array_equal(_canvas(fig), other)


def test_n_views_and_params_captions(images) -> None:
    t = make_transform("simclr", input_size=32, count=4)
    fig = augmentation_grid(images[:2], t, n_views=2, seed=0, show_params=True)
    texts = _texts(fig)
    assert texts.count("view 1") == 2 and "view 3" not in texts
    captions = [s for s in texts if s.startswith("crop ")]
    assert len(captions) == 4  # one per shown view
    wide = augmentation_grid(images[:2], t, seed=0)
    assert _canvas(wide).shape[1] > _canvas(augmentation_grid(images[:2], t, n_views=2)).shape[1]


def test_views_are_unnormalised_for_display() -> None:
    red = Image.new("RGB", (50, 50), (200, 30, 30))
    t = make_transform("simclr", input_size=32, count=1, cj_prob=0.0, gray_prob=0.0)
    canvas = _canvas(augmentation_grid([red], t, seed=0, title=""))
    # the view cell: the only region right of the original that is not background white
    right = canvas[:, 140:]
    pixels = right[(right != 255).any(axis=2)]
    assert len(pixels) > 100
    assert np.abs(pixels.astype(int) - [200, 30, 30]).max() <= 2  # un-normalised back to red


def test_local_views_drawn_at_relative_size(images) -> None:
    fig = augmentation_grid(images[:1], "dino", seed=0, title="")
    canvas = _canvas(fig)
    assert canvas.shape[0] < 250  # one row of 128 px plus labels: the 224 px views are reduced
    texts = _texts(fig)
    assert "local 6" in texts


def test_png_fast_path_has_same_layout(images) -> None:
    t = make_transform("byol", input_size=32)
    fig = augmentation_grid(images, t, seed=3, show_params=True)
    png = augmentation_png(images, t, seed=3, show_params=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert decoded.shape == _canvas(fig).shape
    assert png == augmentation_png(images, t, seed=3, show_params=True)
    assert png != augmentation_png(images, t, seed=4, show_params=True)
    assert figure_to_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_accepts_dataset_items_arrays_and_callables(images) -> None:
    arr = np.asarray(images[0])
    fig = augmentation_grid([(images[1], 3), arr], "simclr", seed=0)
    assert _texts(fig).count("original") == 2

    def two_views(img):
        return make_transform("simclr", input_size=16)(img)

    fig = augmentation_grid(images[:1], two_views, seed=0)
    assert {"view1", "view2"} <= set(_texts(fig))


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="no images"):
        augmentation_grid([], "simclr")
    with pytest.raises(ValueError, match="at most 32"):
        augmentation_grid([Image.new("RGB", (8, 8))] * 33, "simclr")
    with pytest.raises(ValueError, match="row_labels"):
        augmentation_grid([Image.new("RGB", (8, 8))], "simclr", row_labels=["a", "b"])
    with pytest.raises(ValueError, match="Unknown method"):
        augmentation_grid([Image.new("RGB", (8, 8))], "simclrr")
    with pytest.raises(ValueError, match="Cannot preview"):
        augmentation_grid(["not an image"], "simclr")
