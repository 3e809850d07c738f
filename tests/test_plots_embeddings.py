import numpy as np
import pytest
from PIL import Image

from workbench.plots import (
    compared_maps,
    confusion_matrix_plot,
    embedding_map,
    figure_to_png,
    invariance_bars,
    neighbor_grid,
)

PNG = b"\x89PNG"


def _xy(n=60, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2))


def _scatter_colors(ax):
    return [tuple(np.round(c.get_facecolor()[0], 3)) for c in ax.collections]


def test_embedding_map_labelled_has_legend_with_class_names():
    labels = np.repeat([0, 1, 2], 20)
    fig = embedding_map(_xy(), labels, ["cat", "dog", "emu"], title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat", "dog", "emu"]
    assert len(set(_scatter_colors(ax))) == 3  # one colour per class
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert offsets.shape == (60, 2)
    assert figure_to_png(fig).startswith(PNG)


def test_embedding_map_unlabelled_single_colour_and_highlight():
    fig = embedding_map(_xy(), None, highlight=[5, 1, 2, 3])
    ax = fig.axes[0]
    assert ax.get_legend() is None
    points, ring, star = ax.collections
    assert len(points.get_offsets()) == 60
    np.testing.assert_allclose(star.get_offsets(), _xy()[[5]])
    np.testing.assert_allclose(ring.get_offsets(), _xy()[[1, 2, 3]])
    # all -1 labels are unlabelled too
    assert embedding_map(_xy(), -np.ones(60)).axes[0].get_legend() is None


def test_embedding_map_side_by_side_and_thumbnails():
    from workbench.plots.common import new_figure

    fig = new_figure(8, 4)
    a, b = fig.subplots(1, 2)
    thumbs = {0: Image.new("RGB", (8, 8), "red"), 7: np.zeros((8, 8))}
    assert embedding_map(_xy(), ax=a, thumbnails=thumbs) is fig
    embedding_map(_xy(seed=1), np.zeros(60, int), ax=b)
    assert len(a.artists) == 2 and len(fig.axes) == 2


def test_embedding_map_errors():
    with pytest.raises(ValueError, match="60 points but 3 labels"):
        embedding_map(_xy(), [0, 1, 2])
    with pytest.raises(ValueError, match="shape \\(N, 2\\)"):
        embedding_map(np.zeros(5))
    with pytest.raises(ValueError, match="highlight index 99"):
        embedding_map(_xy(), highlight=99)


def test_neighbor_grid_titles_show_distances_and_classes():
    imgs = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    fig = neighbor_grid(imgs, [0.0, 0.125, 0.5], [0, 1, 1], ["a", "b"],
                        query_image=imgs[0], query_label=0)  # fmt: skip
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["query\na", "d=0\na", "d=0.125\nb", "d=0.5\nb"]
    assert figure_to_png(fig).startswith(PNG)
    with pytest.raises(ValueError, match="3 images but 2 distances"):
        neighbor_grid(imgs, [0.1, 0.2])
    assert neighbor_grid([], []).axes[0].texts[0].get_text() == "no neighbours"


def test_confusion_matrix_plot_annotates_counts():
    cm = np.array([[5, 1], [0, 4]])
    fig = confusion_matrix_plot(cm, ["x", "y"])
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "4", "5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y"]
    with pytest.raises(ValueError, match="square"):
        confusion_matrix_plot(np.ones((2, 3)))


def test_invariance_bars_groups_runs():
    res = {"random": {"crop": 0.9, "flip": 0.99}, "trained": {"crop": 0.7, "blur": 0.5}}
    fig = invariance_bars(res)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["crop", "flip", "blur"]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_array_equal(heights, [0.9, 0.99, np.nan, 0.7, np.nan, 0.5])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random", "trained"]
    with pytest.raises(ValueError, match="no results"):
        invariance_bars({})


def test_invariance_legend_does_not_cover_the_bars():
    res = {"trained": {"crop": 0.95, "flip": 0.99, "blur": 0.97}, "random": {"crop": 0.9}}
    fig = invariance_bars(res)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    bars = [p.get_window_extent() for p in ax.patches if np.isfinite(p.get_height())]
    assert bars and not any(legend.overlaps(b) for b in bars)


def test_invariance_bars_say_when_a_family_was_not_measured():
    fig = invariance_bars({"run": {"crop": 0.8, "grayscale": float("nan")}})
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("not measured" in t for t in texts)


def test_compared_maps_side_by_side_with_one_legend():
    labels = np.repeat([0, 1, 2], 20)
    fig = compared_maps([_xy(), _xy(seed=1)], ["trained: kNN 90%", "random init: kNN 80%"],
                        labels, ["a", "b", "c"], suptitle="UMAP of 60 images")  # fmt: skip
    left, right = fig.axes
    assert left.get_title() == "trained: kNN 90%" and right.get_title() == "random init: kNN 80%"
    assert left.get_legend() is None and right.get_legend() is not None
    assert fig._suptitle.get_text() == "UMAP of 60 images"
    with pytest.raises(ValueError, match="one title per map"):
        compared_maps([_xy()], ["a", "b"])
