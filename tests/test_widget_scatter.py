import re

import numpy as np
import pytest
from PIL import Image

from workbench.widgets.embeddings import knn_table_html
from workbench.widgets.scatter import (
    COLOR_MODES,
    PENDING,
    GridItem,
    color_spec,
    image_grid_html,
    label_makeup,
    label_makeup_html,
    map_frame,
    thumbnail_data_url,
)


def test_map_frame_has_one_row_per_image_and_fills_predictions_later():
    xy = np.arange(8.0).reshape(4, 2)
    labels = np.array([0, 1, 1, -1])
    f = map_frame(xy, labels, ["cat", "dog"])
    assert f["index"].tolist() == [0, 1, 2, 3] and f["x"].tolist() == [0, 2, 4, 6]
    assert f["label"].astype(str).tolist() == ["cat", "dog", "dog", "?"]
    assert set(f["outcome"].astype(str)) == {PENDING}
    f = map_frame(xy, labels, ["cat", "dog"], predictions=np.array([0, 0, 1, 1]))
    assert f["prediction"].astype(str).tolist() == ["cat", "cat", "dog", "dog"]
    assert f["outcome"].astype(str).tolist() == ["correct", "wrong", "correct", "wrong"]
    with pytest.raises(ValueError, match="4 points but 3 labels"):
        map_frame(xy, labels[:3], [])
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        map_frame(np.ones((4, 3)), None, [])


def test_color_spec_matches_the_png_colours_and_makes_errors_stand_out():
    from workbench.plots.embeddings import class_colors

    f = map_frame(np.zeros((3, 2)), np.array([0, 1, 2]), ["a", "b", "c"], np.array([0, 2, 2]))
    col, cmap = color_spec("label", f)
    first = "#" + "".join(f"{round(255 * c):02x}" for c in class_colors(3)[0][:3])
    assert col == "label" and cmap["a"] == first and len(set(cmap.values())) == 3
    col, cmap = color_spec("kNN correct/wrong", f)
    assert col == "outcome" and cmap["wrong"] == "#e4002b" and cmap["correct"] != cmap["wrong"]
    assert color_spec("kNN prediction", f)[0] == "prediction"
    with pytest.raises(ValueError, match="Valid"):
        color_spec("size", f)
    assert COLOR_MODES[0] == "label"


def test_grids_carry_the_indices_and_captions():
    img = Image.new("RGB", (8, 8), "red")
    out = image_grid_html([GridItem(5, img, "#5 query\n3", True), GridItem(9, img, "#9 d=0.1")])
    assert re.findall(r"data-index='(\d+)'", out) == ["5", "9"]
    assert "#5 query<br>3" in out and "3px solid #e4002b" in out
    url = thumbnail_data_url(img, 32)
    assert url.startswith("data:image/png;base64,")
    import base64
    import io

    thumb = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert thumb.size == (32, 32)


def test_label_makeup_counts_every_selected_image():
    labels = np.array([2, 2, 0, 2, 1, 0])
    assert label_makeup(labels, ["a", "b", "c"]) == [("c", 3), ("a", 2), ("b", 1)]
    assert ">c</td>" in label_makeup_html(labels, ["a", "b", "c"])
    assert label_makeup(np.zeros(0, dtype=int), []) == []


def test_knn_table_lines_up_with_a_header_per_block():
    r = {"top1": 0.9, "top5": 1.0, "per_class": np.array([0.8, np.nan])}
    out = knn_table_html(["trained", "random"], [r, r], ["a", "b"], 5, 0.1)
    assert out.count("<tr>") == 6 and out.count(">trained</th>") == 2  # both headers
    assert "top-1 of class" in out and "text-align:right" in out and ">-</td>" in out
