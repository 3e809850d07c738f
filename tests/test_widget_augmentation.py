import datetime
import io
import re

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.augment import recipe
from workbench.augment.transforms import torch_threads
from workbench.widgets import AugmentationExplorer
from workbench.widgets.augmentation import parse_indices

NOW = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(2)
    return [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(5)]


def _exec_code(code: str):
    ns: dict = {}
    exec(code, ns)  # the "Copy as code" text is a complete snippet (it imports workbench)
    return ns["transform"]


def test_changing_a_control_changes_the_preview(images) -> None:
    ex = AugmentationExplorer(images, method="simclr", n_images=3, input_size=32)
    before = ex.preview.value
    assert before[:8] == b"\x89PNG\r\n\x1a\n" and ex.error.value == ""
    ex.controls["view_cj_prob"].value = 0.0
    assert ex.preview.value != before
    assert ex.recipe.groups[0].cj_prob == 0.0
    assert ex.transform.recipe == ex.recipe
    assert "cj_prob=0.0" in ex.code
    ex.controls["view_blur_prob"].value = 1.0  # off by default at <= 64 px
    changes = {
        "view_crop_scale": (0.5, 0.9),
        "view_blur_sigma": (0.5, 1.0),
        "view_size": 24,
        "view_count": 3,
    }
    for key, value in changes.items():
        previous = ex.preview.value
        ex.controls[key].value = value
        assert ex.preview.value != previous, key
    assert ex.recipe.view_sizes == [24, 24, 24]


def test_invalid_value_shows_message_and_keeps_preview(images) -> None:
    ex = AugmentationExplorer(images, method="byol", n_images=2, input_size=32)
    good_png, good_recipe, good_code = ex.preview.value, ex.recipe, ex.code
    ex.controls["view1_size"].value = 4
    assert "size" in ex.error.value and "previous preview is kept" in ex.error.value
    assert ex.preview.value == good_png
    assert ex.recipe == good_recipe and ex.code == good_code
    ex.controls["view1_size"].value = 32
    assert ex.error.value == "" and ex.recipe == good_recipe
    ex.controls["view1_cj_strength"].value = 2.0  # hue shift 2.0 x 0.1: valid
    strong_png = ex.preview.value
    assert ex.error.value == "" and strong_png != good_png
    ex.controls["view1_cj_hue"].value = 0.3  # 2.0 x 0.3 > 0.5: invalid combination
    assert "cj_hue" in ex.error.value and ex.preview.value == strong_png
    ex.controls["view1_cj_hue"].value = 0.1
    assert ex.error.value == ""


def test_reset_restores_defaults(images) -> None:
    ex = AugmentationExplorer(images, method="dino", n_images=2, input_size=32)
    defaults, default_png = ex.recipe, ex.preview.value
    assert defaults == recipe("dino", input_size=32)
    ex.controls["local_count"].value = 2
    ex.controls["global2_solarize_prob"].value = 1.0
    ex.controls["global1_crop_scale"].value = (0.6, 0.8)
    assert ex.recipe != defaults
    ex.reset_button.click()
    assert ex.recipe == defaults
    assert ex.controls["local_count"].value == 0  # no local crops at <= 64 px
    assert ex.controls["global1_crop_scale"].value == (0.4, 1.0)
    assert ex.preview.value == default_png  # same seed, same settings: same picture


def test_copy_as_code_rebuilds_the_same_transform(images) -> None:
    ex = AugmentationExplorer(images, method="dino", n_images=1)
    ex.controls["local_count"].value = 3
    ex.controls["global1_size"].value = 64
    ex.controls["global2_size"].value = 64
    ex.controls["local_size"].value = 27
    ex.controls["global2_solarize_prob"].value = 0.35000000000000003  # slider float noise
    ex.controls["local_crop_scale"].value = (0.1, 0.45)
    ex.code_button.click()
    assert ex.code_area.value == ex.code and ex.code_area.layout.display == "block"
    assert "wb.make_transform('dino', input_size=64" in ex.code
    assert re.search(r"global2_solarize_prob=0\.35[,)]", ex.code)
    t = _exec_code(ex.code)
    assert t.recipe == ex.recipe
    assert t.recipe.view_sizes == [64, 64, 27, 27, 27]


def test_method_dropdown_rebuilds_tabs(images) -> None:
    ex = AugmentationExplorer(images, method="simclr", n_images=1, input_size=32)
    assert ex.tabs.titles == ("view",)
    ex.method_dropdown.value = "dino"
    assert ex.tabs.titles == ("global1", "global2", "local")
    assert "local_count" in ex.controls and "view_count" not in ex.controls
    assert ex.recipe == recipe("dino", input_size=32)  # constructor overrides carried over
    assert _exec_code(ex.code).recipe == ex.recipe


def test_seed_resample_and_captions(images) -> None:
    ex = AugmentationExplorer(images, method="simclr", n_images=2, input_size=32, seed=5)
    first = ex.preview.value
    ex.resample_button.click()
    assert ex.seed.value == 6 and ex.preview.value != first
    ex.seed.value = 5
    assert ex.preview.value == first  # a seed reproduces its preview
    ex.show_params.value = True
    assert ex.preview.value != first


def test_link_groups_edits_every_group(images) -> None:
    ex = AugmentationExplorer(images, method="dino", n_images=1, input_size=32)
    ex.link_groups.value = True
    ex.controls["global1_blur_prob"].value = 0.25
    assert [g.blur_prob for g in ex.recipe.groups] == [0.25, 0.25, 0.25]
    ex.controls["local_count"].value = 1  # counts and sizes are never linked
    assert [g.count for g in ex.recipe.groups] == [1, 1, 1]
    ex.controls["global1_size"].value = 40
    assert ex.recipe.view_sizes == [40, 32, 14]


def test_ab_mode_keeps_a_fixed(images) -> None:
    ex = AugmentationExplorer(images, method="simclr", n_images=2, input_size=32)
    a_png = ex.preview.value
    ex.ab_mode.value = True
    assert ex.preview_a.value == a_png and ex._a_box.layout.display == ""
    ex.controls["view_gray_prob"].value = 1.0
    assert ex.preview_a.value == a_png and ex.preview.value != a_png
    ex.seed.value = 1  # same seed and images for A and B
    assert ex.preview_a.value != a_png
    ex.b_to_a_button.click()
    assert ex.preview_a.value == ex.preview.value
    ex.ab_mode.value = False
    assert ex._a_box.layout.display == "none"


def test_choose_images_and_upload(images) -> None:
    ex = AugmentationExplorer(images, method="simclr", n_images=2, input_size=32)
    assert ex.indices.value == "0, 1"
    ex.n_images.value = 4
    assert ex.indices.value == "0, 1, 2, 3"
    ex.indices.value = "4, 2"
    assert ex.n_images.value == 2 and "2 images" in ex.status.value
    ex.indices.value = "9"
    assert "out of range" in ex.error.value and ex.indices.value == "9"
    ex.indices.value = "1-3"
    assert ex.error.value == "" and ex.n_images.value == 3
    ex.random_button.click()
    assert len(parse_indices(ex.indices.value, 5)) == 3

    buf = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 200, 0, 255)).save(buf, format="PNG")
    before = ex.preview.value
    ex.upload.value = (
        {"name": "mine.png", "type": "image/png", "size": len(buf.getvalue()),
         "content": memoryview(buf.getvalue()), "last_modified": NOW},
    )  # fmt: skip
    # item 6: the button keeps its count ("Your images (1)": the browser side resets its file
    # input, so the same file can be chosen again) and the status line names the upload
    assert len(ex.upload.value) == 1
    assert ex.status_text().startswith("1 uploaded image + 3 images from ")
    assert ex.preview.value != before
    ex.upload.value = (
        {"name": "bad.png", "type": "image/png", "size": 3, "content": memoryview(b"abc"),
         "last_modified": NOW},
    )  # fmt: skip
    assert "bad.png" in ex.error.value
    ex.clear_uploads_button.click()
    assert "3 images" in ex.status.value and "uploaded" not in ex.status.value
    assert ex.upload.value == ()


def test_dataset_spec_and_display(tmp_path) -> None:
    for i in range(3):
        Image.new("RGB", (20, 20), (80 * i, 0, 0)).save(tmp_path / f"im{i}.png")
    ex = AugmentationExplorer(str(tmp_path), method="moco", input_size=16)
    assert ex.n_images.max == 3 and "im0.png" in str(ex._current_images()[1])
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert ex.overrides() == {"input_size": 16}


def test_constructor_errors(images) -> None:
    with pytest.raises(ValueError, match="Unknown method"):
        AugmentationExplorer(images, method="nope")
    with pytest.raises(ValueError, match="cj_prb"):
        AugmentationExplorer(images, method="simclr", cj_prb=0.1)


def test_parse_indices() -> None:
    assert parse_indices("0, 3, 5-7", 10) == [0, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="out of range"):
        parse_indices("10", 10)
    with pytest.raises(ValueError, match="Invalid image index 'x'"):
        parse_indices("1, x", 10)
    with pytest.raises(ValueError, match="start > end"):
        parse_indices("5-2", 10)


def test_top_level_export() -> None:
    assert wb.AugmentationExplorer is AugmentationExplorer


def test_controls_grouped_by_invariance_with_help(images) -> None:
    import ipywidgets as widgets

    from workbench.augment import INVARIANCES

    ex = AugmentationExplorer(images, method="byol", n_images=1, input_size=32)
    page = ex.tabs.children[1]  # view2
    texts = " ".join(
        c.value for sec in page.children[1:] for c in sec.children if isinstance(c, widgets.HTML)
    )
    for ops in INVARIANCES.values():
        for op in ops:
            assert op.name in texts
    shape = page.children[2].children  # the family's help, then one control per line
    assert [c.description for c in shape[1:3]] == ["crop area", "crop aspect"]
    assert isinstance(ex.controls["view2_crop_scale"], widgets.FloatRangeSlider)
    assert isinstance(ex.controls["view2_count"], widgets.IntText)
    assert isinstance(ex.controls["view2_solarize_prob"], widgets.FloatSlider)
    assert ex.controls["view2_solarize_prob"].value == 0.2


# -- issue 20: copy to the clipboard, effective colour values, A/B legend, natural size ------


def test_copy_as_code_button_writes_the_code_to_the_clipboard(images) -> None:
    """Item 5 (headless half): the button calls the clipboard API with the current code; the
    browser test clicks it and reads the clipboard back."""
    import html

    ex = AugmentationExplorer(images, method="simclr", n_images=1, input_size=32)
    assert "navigator.clipboard.writeText" in html.unescape(ex.copy_button.value)
    assert f">{html.escape(ex.code)}</textarea>" in ex.copy_button.value  # the fallback
    ex.controls["view_cj_prob"].value = 0.25
    assert "cj_prob=0.25" in ex.code and html.escape(ex.code) in ex.copy_button.value
    assert ex.code_area.layout.display == "none"
    ex.code_button.click()  # "Show code": the visible copy
    assert ex.code_area.layout.display == "block" and ex.code_area.value == ex.code


def test_colour_controls_show_the_applied_jitter_and_a_grayscale_note(images) -> None:
    """Item 9: "brightness 0.80" next to "strength 0.50" applies 0.40: say so."""
    ex = AugmentationExplorer(images, method="simclr", n_images=1, input_size=32)
    readout = ex._colour_readouts["view"].value
    assert "brightness 0.40" in readout and "strength 0.50" in readout
    assert "hue 0.10" in readout and "grayscale" not in readout  # colour images: no note
    ex.controls["view_cj_strength"].value = 1.0
    assert "brightness 0.80" in ex._colour_readouts["view"].value
    ex.controls["view_cj_prob"].value = 0.0
    assert "none" in ex._colour_readouts["view"].value

    gray = [im.convert("L").convert("RGB") for im in images]
    ex = AugmentationExplorer(gray, method="simclr", n_images=1, input_size=32)
    assert "grayscale" in ex._colour_readouts["view"].value
    assert "hue, saturation" in ex._colour_readouts["view"].value


def test_ab_mode_says_which_settings_differ(images) -> None:
    """Item 8: the A/B comparison names the settings that differ."""
    ex = AugmentationExplorer(images, method="simclr", n_images=1, input_size=32)
    ex.ab_mode.value = True
    assert ex.ab_differences() == [] and "A = B" in ex.ab_diff.value
    ex.controls["view_gray_prob"].value = 1.0
    assert ex.ab_differences() == ["view gray p: 0.20 → 1.00"]
    assert "gray p: 0.20 → 1.00" in ex.ab_diff.value
    ex.ab_mode.value = False
    assert ex.ab_diff.value == ""


def test_previews_are_shown_at_natural_size(images) -> None:
    """Item 8 (headless half): no CSS shrinking; the pane scrolls (checked in the browser)."""
    ex = AugmentationExplorer(images, method="dino", n_images=1, input_size=96)
    assert ex.preview.layout.max_width == "none" and ex.preview_a.layout.max_width == "none"
    assert all(c.layout.width == "430px" for c in ex.controls.values())


def test_without_input_size_the_preview_shows_the_training_size(images, digits) -> None:
    """The views are the size ``wb.train`` would train the same data at (one rule for both)."""
    from workbench.augment.recipes import training_input_size

    ex = AugmentationExplorer(digits, method="byol", n_images=2)
    native = digits.meta["image_size"]
    assert {g.size for g in ex.recipe.groups} == {training_input_size(None, native)} == {native}
    assert ex.recipe == recipe("byol", input_size=native)  # the small-image recipe, crops and all
    ex.method_dropdown.value = "simclr"  # a method switch and a reset keep the size
    ex.reset_button.click()
    assert {g.size for g in ex.recipe.groups} == {native}
    photos = AugmentationExplorer(images, method="dino", n_images=2)
    assert photos.recipe.groups[0].size == training_input_size(None, None)  # 96 CPU, 224 GPU
