import numpy as np
import pytest
from PIL import Image
from torch import nn

from workbench.data import ImageDataset, load_dataset
from workbench.eval import Embeddings, nearest_neighbors
from workbench.eval.knn import knn_leave_one_out
from workbench.widgets import EmbeddingExplorer

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(range(150))


def _clustered(labels, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(labels.max() + 1, d))
    return centers[labels] + 0.6 * rng.normal(size=(len(labels), d))


@pytest.fixture(scope="module")
def explorer(digits):
    emb = Embeddings(_clustered(digits.labels), digits.labels, digits.paths, digits.class_names)
    return EmbeddingExplorer(emb, data=digits, reducer="pca", k=5, background=False)


def test_explorer_shows_map_and_accuracy(explorer, digits):
    ex = explorer
    assert ex.error == ""
    assert ex.projection.shape == (150, 2) and ex.map_image.value.tobytes().startswith(PNG)
    assert ex.knn_box.layout.display is None  # labelled: the accuracy panel is shown
    ref = knn_leave_one_out(ex.embeddings.features, digits.labels, k=149)
    assert ex.knn["top1"] == pytest.approx(ref["top1"]) and ex.knn["top1"] > 0.8
    assert "top-1" in ex.knn_html.value and ">7<" in ex.knn_html.value  # class names listed
    assert ex.confusion_image.value.tobytes().startswith(PNG)
    assert ex.invariance_box.layout.display == "none"  # no model: no probe


def test_selecting_a_point_fills_the_neighbour_grid(explorer, digits):
    ex = explorer
    before = ex.neighbors_image.value
    ex.index.value = 7
    assert ex.selected == 7 and ex.error == ""
    ref, _ = nearest_neighbors(ex.embeddings.features, 7, 6)
    assert ex.neighbor_indices.tolist() == ref[1:].tolist() and 7 not in ex.neighbor_indices
    assert len(ex.neighbor_images) == 5 and len(ex.neighbor_buttons) == 5
    assert np.array_equal(np.asarray(ex.neighbor_images[0]), np.asarray(digits[int(ref[1])][0]))
    assert np.all(np.diff(ex.neighbor_distances) >= -1e-6)
    assert ex.neighbors_image.value != before and ex.neighbors_image.value.tobytes().startswith(PNG)
    ex.k.value = 3
    assert len(ex.neighbor_indices) == 3 and len(ex.neighbor_images) == 3
    target = int(ex.neighbor_indices[1])
    ex.neighbor_buttons[1].click()  # walk to a neighbour
    assert ex.selected == target and ex.index.value == target


def test_pick_by_position_and_random(explorer):
    ex = explorer
    ex.pick_x.value, ex.pick_y.value = 0.0, 0.0
    xy = ex.projection
    lo = xy.min(axis=0)
    assert ex.selected == int(np.argmin(((xy - lo) ** 2).sum(1)))
    ex.random_button.click()
    assert 0 <= ex.selected < 150 and ex.error == ""


def test_changing_the_reducer_recomputes_the_map(explorer):
    ex = explorer
    pca, png = ex.projection.copy(), ex.map_image.value
    ex.reducer.value = "tsne"
    assert ex.error == ""
    assert ex.projection.shape == (150, 2) and not np.allclose(ex.projection, pca)
    assert ex.map_image.value != png
    ex.reducer.value = "pca"
    np.testing.assert_allclose(ex.projection, pca)  # cached
    ex.thumbnails.value = True
    assert ex.map_image.value != png and ex.error == ""
    ex.thumbnails.value = False


def test_unlabelled_data_still_shows_neighbours():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(30)]
    ds = ImageDataset("noise", images=images)
    ex = EmbeddingExplorer(rng.normal(size=(30, 8)), data=ds, reducer="pca", k=4,
                           background=False)  # fmt: skip
    assert ex.error == "" and ex.embeddings.labels is None and ex.knn is None
    assert ex.knn_box.layout.display == "none"
    ex.index.value = 3
    assert len(ex.neighbor_indices) == 4 and len(ex.neighbor_images) == 4
    assert ex.map_image.value.tobytes().startswith(PNG)


@pytest.mark.parametrize(
    "source,kwargs,message",
    [
        (Embeddings(np.ones((10, 4))), {}, "10 feature rows but the data has 12 images"),
        (Embeddings(np.zeros((0, 4))), {"data": None}, "no feature rows"),
        (np.ones((12, 3)), {"compare": np.ones((11, 3))}, "11 feature rows but the data has 12"),
        (np.ones((12, 3)), {"compare": "random"}, "compare='random' needs a model"),
        (np.ones((12, 3)), {"reducer": "isomap"}, "Unknown reducer 'isomap'"),
        (nn.Flatten(), {"data": None}, "pass data="),
    ],
)
def test_bad_input_gives_a_message_in_the_widget(source, kwargs, message):
    ds = load_dataset("shapes", n=12, image_size=8)
    args = {"data": ds, "reducer": "pca", "background": False, **kwargs}
    ex = EmbeddingExplorer(source, **args)  # never raises
    assert message in ex.error, ex.error
    assert ex.error_area.layout.display is None and message.split("'")[0] in ex.error_area.value


def test_model_with_random_init_comparison_and_invariance_probe():
    ds = load_dataset("shapes", n=40, image_size=16)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    ex = EmbeddingExplorer(model, data=ds, compare="random", reducer="pca", k=4,
                           probe_images=8, background=False)  # fmt: skip
    assert ex.error == ""
    assert ex.embeddings.features.shape == (40, 32) and ex.embeddings.meta["input_size"] == 16
    assert ex.compare_projection.shape == (40, 2) and ex.compare_knn is not None
    assert not np.allclose(ex.compare_embeddings.features, ex.embeddings.features)
    ex.index.value = 5
    assert len(ex.compare_neighbor_indices) == 4
    assert "in common with random init" in ex.neighbors_html.value
    assert ex.compare_neighbors_image.layout.display is None
    assert ex.invariance_box.layout.display is None
    ex.invariance_button.click()
    assert ex.error == ""
    assert set(ex.invariance) == {"Sequential", "random init"}
    assert set(ex.invariance["random init"]) >= {"crop", "flip", "blur"}
    assert ex.invariance_image.value.tobytes().startswith(PNG)


def test_background_loading_returns_at_once_and_finishes():
    ds = load_dataset("shapes", n=24, image_size=16)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    ex = EmbeddingExplorer(model, data=ds, reducer="tsne", k=3, warm_umap=False)
    assert ex.wait(60) and ex.error == ""
    assert ex.projection.shape == (24, 2) and len(ex.neighbor_indices) == 3
    assert ex.projection_method == "tsne"  # the PCA preview was replaced


@pytest.mark.slow
def test_umap_reducer_on_digits_in_the_background(digits):
    emb = Embeddings(_clustered(digits.labels), digits.labels, digits.paths, digits.class_names)
    ex = EmbeddingExplorer(emb, data=digits, reducer="pca", background=True)
    ex.wait(60)
    pca = ex.projection.copy()
    ex.reducer.value = "umap"
    assert ex.wait(300) and ex.error == ""
    assert not np.allclose(ex.projection, pca)
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(5).fit(ex.projection, digits.labels)
    assert clf.score(ex.projection, digits.labels) > 0.9  # the map keeps the clusters
