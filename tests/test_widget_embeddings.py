import re

import numpy as np
import pytest
from PIL import Image
from torch import nn

from workbench.data import ImageDataset, load_dataset
from workbench.eval import Embeddings, nearest_neighbors
from workbench.eval.knn import knn_leave_one_out
from workbench.widgets import EmbeddingExplorer
from workbench.widgets.embeddings import MAX_GRID
from workbench.widgets.scatter import COLOR_MODES

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


def _grid_indices(html_text):
    return [int(m) for m in re.findall(r"data-index='(\d+)'", html_text)]


def test_explorer_shows_map_and_accuracy(explorer, digits):
    ex = explorer
    assert ex.error == ""
    assert ex.projection.shape == (150, 2)
    assert type(ex.map).__name__ == "JupyterScatter" and len(ex.map.points) == 150
    assert ex.knn_box.layout.display is None  # labelled: the accuracy panel is shown
    ref = knn_leave_one_out(ex.embeddings.features, digits.labels, k=149)
    assert ex.knn["top1"] == pytest.approx(ref["top1"]) and ex.knn["top1"] > 0.8
    table = ex.knn_html.value
    assert "top-1 of class" in table and ">7<" in table  # a header over the per-class rows
    assert table.count("<tr>") == 3 + 1 + 10  # header, top-1, top-5, class header, 10 classes
    assert ex.confusion_image.value.tobytes().startswith(PNG)
    assert ex.confusion_image.layout.display is None
    assert ex.compare_confusion_image.layout.display == "none"  # empty: hidden, no broken icon
    assert ex.invariance_box.layout.display == "none"  # no model: no probe
    assert not hasattr(ex, "pick_x") and not hasattr(ex, "map_image")  # the x/y sliders are gone


def test_a_click_on_the_map_selects_the_point_and_its_neighbours(explorer, digits):
    ex = explorer
    ex.map.selection = np.array([7])  # what a click on point 7 sets in the browser
    assert ex.selected == 7 and ex.error == "" and ex.index.value == 7
    assert len(ex.selection) == 0
    ref, _ = nearest_neighbors(ex.embeddings.features, 7, 6)
    assert ex.neighbor_indices.tolist() == ref[1:].tolist() and 7 not in ex.neighbor_indices
    assert _grid_indices(ex.neighbors_grid.value) == [7, *ref[1:].tolist()]  # query first
    assert "d=" in ex.neighbors_grid.value and "query" in ex.neighbors_grid.value
    assert len(ex.neighbor_images) == 5 and len(ex.neighbor_buttons) == 5
    assert np.array_equal(np.asarray(ex.neighbor_images[0]), np.asarray(digits[int(ref[1])][0]))
    assert np.all(np.diff(ex.neighbor_distances) >= -1e-6)
    assert ex.neighbors_box.layout.display is None and ex.selection_box.layout.display == "none"
    ex.k.value = 3
    assert len(ex.neighbor_indices) == 3 and len(ex.neighbor_images) == 3
    target = int(ex.neighbor_indices[1])
    ex.neighbor_buttons[1].click()  # walk to a neighbour
    assert ex.selected == target and ex.index.value == target
    assert ex.map.selection.tolist() == [target]  # the map follows
    ex.k.value = 5


def test_a_lasso_shows_the_selected_images_and_their_labels(explorer, digits):
    ex = explorer
    lasso = np.flatnonzero(digits.labels == 3)[:9].tolist() + [0, 1]
    ex.map.selection = np.array(lasso)
    assert ex.error == "" and ex.selected is None
    assert ex.selection.tolist() == lasso
    assert _grid_indices(ex.selection_grid.value) == lasso
    assert f"{len(lasso)} images selected" in ex.selection_grid.value
    makeup = ex.makeup_html.value
    want = {str(y): int((digits.labels[lasso] == y).sum()) for y in set(digits.labels[lasso])}
    got = dict(re.findall(r"<td[^>]*>([^<]+)</td><td[^>]*>(\d+)</td>", makeup))
    assert {k: int(v) for k, v in got.items()} == want
    assert ex.selection_box.layout.display is None and ex.neighbors_box.layout.display == "none"
    ex.map.selection = np.array([4])  # a click clears the lasso
    assert ex.selected == 4 and len(ex.selection) == 0
    ex.selection = [5, 6, 7]  # and setting the selection from Python clears the click
    assert ex.selected is None and ex.map.selection.tolist() == [5, 6, 7]


def test_setting_selected_from_python_selects_it_on_the_map(explorer):
    ex = explorer
    ex.selected = 12
    assert ex.map.selection.tolist() == [12] and ex.selected == 12 and ex.index.value == 12
    ex.selected = None
    assert ex.selected is None and len(ex.map.selection) == 0
    ex.random_button.click()
    assert ex.selected is not None and 0 <= ex.selected < 150 and ex.error == ""
    with pytest.raises(ValueError, match="out of range: valid 0..149"):
        ex.selected = 999


def test_a_big_lasso_grid_is_capped_but_selection_has_all(explorer):
    ex = explorer
    ex.map.selection = np.arange(100)
    assert len(ex.selection) == 100 and len(_grid_indices(ex.selection_grid.value)) == MAX_GRID
    assert "all in ex.selection" in ex.selection_grid.value


def test_colouring_by_knn_uses_leave_one_out_predictions(explorer, digits):
    ex = explorer
    assert ex.color.options == COLOR_MODES
    ref = knn_leave_one_out(ex.embeddings.features, digits.labels, k=149)["predictions"]
    ex.color.value = "kNN correct/wrong"
    assert ex.error == "" and ex.scatters[0].color()["by"] == "outcome"
    frame = ex.map.data
    wrong = frame["outcome"].to_numpy() == "wrong"
    assert wrong.tolist() == (ref != digits.labels).tolist() and wrong.any()
    assert frame["prediction"].astype(str).tolist() == [str(p) for p in ref]
    ex.color.value = "kNN prediction"
    assert ex.scatters[0].color()["by"] == "prediction"
    ex.color.value = "label"
    assert ex.scatters[0].color()["by"] == "label"


def test_recolouring_keeps_the_map_widget_its_selection_and_colours(explorer):
    """A new colouring (or the kNN predictions arriving) updates the map in place: the browser's
    view keeps its zoom and selection, and nothing is sent again but the points' values."""
    from workbench.widgets.scatter import color_spec, make_map

    ex = explorer
    before = ex.map
    ex.map.selection = [3, 4, 9]
    for mode in COLOR_MODES:
        ex.color.value = mode
        assert ex.map is before and ex.error == "" and list(ex.map.selection) == [3, 4, 9]
        fresh = make_map(ex.map.data, mode).widget  # what a new map of this mode would show
        assert np.allclose(ex.map.points, fresh.points) and ex.map.color == fresh.color
        column, cmap = color_spec(mode, ex.map.data)
        assert ex.scatters[0].color()["by"] == column and len(ex.map.color) == len(cmap)
        assert ex.map.legend_encoding["color"]["variable"] == mode  # the legend's title
    ex._recolor(new_tables=True)  # what the arrival of the kNN predictions does
    assert ex.map is before and list(ex.map.selection) == [3, 4, 9]
    ex.clear_selection()
    ex.color.value = "label"


def test_hover_previews_are_made_on_demand(explorer, digits):
    ex = explorer
    sent = []
    ex.map.send = lambda msg, *a, **k: sent.append(msg)  # the reply that goes to the browser
    try:
        event = {"type": "tooltip", "index": 11, "preview": "preview", "properties": ["label"]}
        ex.map._handle_custom_msg(event, [])
    finally:
        del ex.map.send
    assert sent[0]["index"] == 11 and sent[0]["preview"].startswith("data:image/png;base64,")
    assert sent[0]["properties"] == {"label": str(digits.labels[11])}
    assert set(ex._previews) >= {11} and len(ex._previews) < 150  # only what was hovered


def test_changing_the_reducer_recomputes_the_map_and_keeps_the_selection(explorer):
    ex = explorer
    ex.selected = 21
    pca = ex.projection.copy()
    ex.reducer.value = "tsne"
    assert ex.error == ""
    assert ex.projection.shape == (150, 2) and not np.allclose(ex.projection, pca)
    assert ex.map.selection.tolist() == [21] and ex.selected == 21
    ex.reducer.value = "pca"
    np.testing.assert_allclose(ex.projection, pca)  # cached
    ex.point_size.value = 9
    assert ex.error == "" and ex.map.size == 9


def test_compared_maps_share_selection_and_hover(digits):
    rng = np.random.default_rng(1)
    emb = Embeddings(_clustered(digits.labels), digits.labels, digits.paths, digits.class_names)
    other = Embeddings(rng.normal(size=(150, 8)), digits.labels, digits.paths, digits.class_names)
    ex = EmbeddingExplorer(emb, data=digits, compare=other, reducer="pca", k=4, background=False)
    assert ex.error == "" and ex.compare_map is not None and ex.compare_knn is not None
    ex.compare_map.selection = np.array([3, 8, 20])  # a lasso in the compared map
    assert ex.selection.tolist() == [3, 8, 20] and ex.map.selection.tolist() == [3, 8, 20]
    ex.selected = 5
    assert ex.compare_map.selection.tolist() == [5]
    ref, _ = nearest_neighbors(other.features, 5, 5)
    assert ex.compare_neighbor_indices.tolist() == ref[1:].tolist()
    assert _grid_indices(ex.compare_neighbors_grid.value) == ref[1:].tolist()
    ex.map.hovering = 17
    assert ex.compare_map.hovering == 17


def test_unlabelled_data_still_shows_neighbours():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(30)]
    ds = ImageDataset("noise", images=images)
    ex = EmbeddingExplorer(rng.normal(size=(30, 8)), data=ds, reducer="pca", k=4,
                           background=False)  # fmt: skip
    assert ex.error == "" and ex.embeddings.labels is None and ex.knn is None
    assert ex.knn_box.layout.display == "none"
    ex.map.selection = np.array([3])
    assert len(ex.neighbor_indices) == 4 and len(ex.neighbor_images) == 4
    assert ex.color.options == ("label",)  # no kNN colouring without labels
    assert set(ex.map.data["label"].astype(str)) == {"unlabelled"}


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
    ex.map.selection = np.array([5])
    assert len(ex.compare_neighbor_indices) == 4
    assert "in common with random init" in ex.neighbors_html.value
    assert ex.compare_neighbors_grid.layout.display is None
    assert ex.invariance_box.layout.display is None
    assert ex.invariance_image.layout.display == "none"  # nothing drawn yet: no broken icon
    ex.invariance_button.click()
    assert ex.error == ""
    assert set(ex.invariance) == {"Sequential", "random init"}
    assert set(ex.invariance["random init"]) >= {"crop", "flip", "blur"}
    assert ex.invariance_image.value.tobytes().startswith(PNG)
    assert ex.invariance_image.layout.display is None


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


def test_explorer_reuses_the_runs_recorded_random_init_knn(tmp_path):
    """#16 item 3: the explorer quotes the run's own knn_acc_init instead of recomputing it."""
    import json

    from workbench.widgets.embeddings import recorded_knn, recorded_knn_html

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"method": "simclr", "data": "digits"}))
    recs = [{"type": "epoch", "epoch": e, "knn_acc": 0.5 + 0.1 * e, "knn_acc_init": 0.21}
            for e in range(2)]  # fmt: skip
    (out / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    got = recorded_knn(out)
    assert got == {"knn_acc": 0.6, "knn_acc_init": 0.21}
    assert "0.600 after training, 0.210 before step 1" in recorded_knn_html(got)
    assert recorded_knn(tmp_path) is None and recorded_knn_html(None) == ""


def test_fill_in_waits_for_the_first_map_to_be_drawn(digits, monkeypatch):
    """#19 item 3: the kNN colouring starts once the browser's view of the map exists, so that
    it does not compete with the first draw; ``wait()`` (scripts, tests) starts it at once."""
    import time

    import workbench.widgets.embeddings as mod

    monkeypatch.setattr(mod, "DRAW_WAIT_S", 60.0)
    emb = Embeddings(_clustered(digits.labels), digits.labels, digits.paths, digits.class_names)
    ex = EmbeddingExplorer(emb, data=digits, reducer="pca", warm_umap=False)
    assert ex.map is not None  # the first map exists at once (precomputed, PCA)
    time.sleep(0.5)
    assert ex.knn is None and ex.color.options == ("label",)  # not while nothing is drawn
    ex.map.set_trait("dom_element_id", "view1")  # what the front end sets when it renders
    deadline = time.monotonic() + 30
    while "kNN correct/wrong" not in ex.color.options and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ex.knn is not None and "kNN correct/wrong" in ex.color.options

    other = EmbeddingExplorer(emb, data=digits, reducer="pca", warm_umap=False)
    assert other.wait(30) and other.knn is not None  # wait() does not wait for a browser
