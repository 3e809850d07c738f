"""AugmentationExplorer: see the views a method trains on, tune them, copy the settings as code.

A thin view over ``workbench.augment`` (recipes, ``make_transform``) and
``workbench.plots.augment.augmentation_png``. Every control is generated from the recipe's
fields (``FIELD_INFO``), grouped by the invariance it teaches (``INVARIANCES``), one tab per view
group. A change redraws the preview synchronously into an ``ipywidgets.Image`` (PNG bytes, no
ipympl); an invalid value shows a message in the error area and leaves the last preview, recipe
and code in place.

Headless use (what the tests do)::

    ex = AugmentationExplorer("photos", method="dino")
    ex.controls["local_count"].value = 2      # redraws ex.preview.value
    ex.recipe, ex.transform, ex.code          # current settings
    ex.reset_button.click()
"""

from __future__ import annotations

import dataclasses
import html
import io
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from PIL import Image

from workbench.augment.recipes import (
    FIELD_INFO,
    INVARIANCES,
    METHOD_NAMES,
    Recipe,
    ViewSpec,
    recipe,
    valid_override_keys,
)
from workbench.widgets import button_layout

MAX_ROWS = 12  # images in one preview (uploads included)
_FAMILIES = {
    "views": "Views",
    "shape": "Shape: crop, flip, rotation",
    "texture": "Texture: blur",
    "colour": "Colour: jitter, grayscale, solarize",
}
_LINKED_EXCLUDED = ("count", "size")  # "edit all groups" never copies view counts and sizes


def parse_indices(text: str, n: int) -> list[int]:
    """Parse ``"0, 3, 5-7"`` into image indices, each checked against ``n`` images.

    Raises:
        ValueError: Not a comma list of integers / ranges, or an index outside 0..n-1.
    """
    out: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise ValueError(f"Invalid image range {part!r}: start > end.")
            out.extend(range(lo, hi + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(
                f"Invalid image index {part!r}: use numbers and ranges, e.g. 0, 3, 5-7."
            )
    bad = [i for i in out if i >= n]
    if bad:
        raise ValueError(
            f"Image index {bad[0]} is out of range: the data has {n} images (0..{n - 1})."
        )
    if not out:
        raise ValueError("No image index given: use numbers and ranges, e.g. 0, 3, 5-7.")
    return out[:MAX_ROWS]


def code_for(rec: Recipe) -> str:
    """The Python that rebuilds ``rec``'s transform (the "Copy as code" text)."""
    return f"import workbench as wb\n\ntransform = {rec.to_code()}"


# The browser's clipboard API, called from the click itself (a user gesture, which the API
# requires). Where it is refused (no permission, an insecure page) the textarea below it opens
# with the code selected, for Ctrl+C.
_COPY_JS = (
    "(async (b) => {"
    " const t = b.parentElement.querySelector('textarea'); const label = b.lastChild;"
    " try { await navigator.clipboard.writeText(t.value); label.textContent = ' Copied';"
    "   b.dataset.copied = '1'; }"
    " catch (e) { t.style.display = 'block'; t.focus(); t.select();"
    "   label.textContent = ' Press Ctrl+C'; }"
    " setTimeout(() => { label.textContent = ' Copy as code'; }, 2500);"
    "})(this)"
)


def copy_button_html(code: str) -> str:
    """A "Copy as code" button that puts ``code`` on the clipboard (textarea as fallback)."""
    return (
        "<div class='workbench-copy'><button class='jupyter-widgets jupyter-button "
        "widget-button' style='width:auto;padding:0 10px' title='Copy the make_transform call "
        f"to the clipboard' onclick=\"{html.escape(_COPY_JS)}\"><i class='fa fa-copy'></i>"
        "<span> Copy as code</span></button><textarea readonly style='display:none;"
        f"width:100%;height:90px;font-family:monospace'>{html.escape(code)}</textarea></div>"
    )


class _Images:
    """The explorer's image source: a dataset (lazy) or a list of PIL images."""

    def __init__(self, data: Any) -> None:
        if isinstance(data, Image.Image):
            data = [data]
        if (
            isinstance(data, (list, tuple))
            and data
            and all(isinstance(d, Image.Image) for d in data)
        ):
            self._images: list[Image.Image] | None = [d.convert("RGB") for d in data]
            self._ds: Any = None
            self.native_size: int | None = None
            self.names = [f"image {i}" for i in range(len(data))]
            self.label = f"{len(data)} images"
        else:
            from workbench.data import load_dataset

            self._images = None
            self._ds = load_dataset(data)
            self.native_size = (getattr(self._ds, "meta", None) or {}).get("image_size")
            self.names = [Path(p).name for p in self._ds.paths]
            self.label = getattr(self._ds, "name", str(data))
        if len(self) == 0:
            raise ValueError(f"No images in {self.label!r}.")

    def __len__(self) -> int:
        return len(self._images) if self._images is not None else len(self._ds)

    def __getitem__(self, i: int) -> Image.Image:
        if self._images is not None:
            return self._images[i]
        return self._ds.image(i)


class AugmentationExplorer(widgets.VBox):
    """Preview a method's augmented views on your images and tune every parameter.

    Args:
        data: A dataset spec for ``wb.load_dataset`` ("photos", "digits", a folder, ...), an
            ImageDataset, or a list of PIL images.
        method: SSL method whose recipe is shown (``workbench.augment.METHOD_NAMES``).
        n_images: Images in the preview (at most 12 and the data size).
        seed: Preview seed; "Resample" increments it.
        show_params: Caption each view with its sampled parameters.
        cell_px: Display width of the largest view, in pixels.
        **overrides: Recipe overrides to start from (``input_size=64``, ``cj_prob=0.0`` ...);
            "Reset to defaults" returns to the method's defaults with these overrides. Without
            ``input_size`` the views are shown at the side ``wb.train`` would train this data at
            (the data's native size, e.g. 32 px for digits; else 96 px on a CPU, 224 on a GPU).

    Attributes:
        recipe: The current (last valid) Recipe.
        transform: The current MultiView (``make_transform`` of ``recipe``).
        code: Python source that rebuilds ``transform`` ("Copy as code").
        preview: ``ipywidgets.Image`` with the preview PNG (settings B in A/B mode).
        preview_a: ``ipywidgets.Image`` with the A settings' preview (A/B mode).
        controls: ``"<group>_<field>"`` -> control widget, for the current method.
        error: HTML error area; empty when the last change was valid.
        last_render_s: Seconds the last redraw took.
    """

    def __init__(
        self,
        data: Any = "photos",
        method: str = "simclr",
        *,
        n_images: int = 6,
        seed: int = 0,
        show_params: bool = False,
        cell_px: int = 128,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if method not in METHOD_NAMES:
            raise ValueError(f"Unknown method {method!r}. Valid methods: {list(METHOD_NAMES)}")
        self._images = _Images(data)
        if "input_size" not in overrides:  # what training on this data would use
            from workbench.augment.recipes import training_input_size

            native = self._images.native_size
            overrides = {"input_size": training_input_size(None, native), **overrides}
        self._init_overrides = dict(overrides)
        self._uploads: list[tuple[str, Image.Image]] = []
        self._cell_px = int(cell_px)
        self._updating = False  # True while code sets controls: observers stay quiet
        self._a_recipe: Recipe | None = None
        self._a_key: Any = None
        self.controls: dict[str, widgets.Widget] = {}
        self.last_render_s = 0.0
        self.recipe = recipe(method, **overrides)  # unknown keys and bad values raise here
        self.transform = _make(self.recipe)
        self.code = code_for(self.recipe)
        n = max(1, min(int(n_images), len(self._images), MAX_ROWS))
        self._indices = list(range(n))
        from workbench.augment.preview import is_grayscale

        self._grayscale = is_grayscale([self._images[i] for i in range(min(8, len(self._images)))])
        self._build(method, seed, show_params, n)
        self._set_group_controls(self.recipe)
        self._redraw()

    # -- layout ----------------------------------------------------------------------------------

    def _build(self, method: str, seed: int, show_params: bool, n: int) -> None:
        w = widgets
        self.method_dropdown = w.Dropdown(
            options=list(METHOD_NAMES),
            value=method,
            description="method",
            layout={"width": "220px"},
        )
        self.seed = w.IntText(value=int(seed), description="seed", layout={"width": "150px"})
        self.resample_button = w.Button(
            description="Resample", icon="refresh", layout=button_layout()
        )
        self.reset_button = w.Button(
            description="Reset to defaults", icon="undo", layout=button_layout()
        )
        self.code_button = w.Button(
            description="Show code",
            icon="code",
            tooltip="Show the make_transform call",
            layout=button_layout(),
        )
        self.copy_button = w.HTML(copy_button_html(self.code))
        self.n_images = w.BoundedIntText(
            value=n,
            min=1,
            max=max(1, min(len(self._images), MAX_ROWS)),
            description="images",
            layout={"width": "150px"},
        )
        self.indices = w.Text(
            value=", ".join(map(str, self._indices)),
            description="which",
            continuous_update=False,
            tooltip="Image indices, e.g. 0, 3, 5-7",
            layout={"width": "220px"},
        )
        self.random_button = w.Button(
            description="Random images", icon="random", layout=button_layout()
        )
        self.upload = w.FileUpload(accept="image/*", multiple=True, description="Your images")
        self.clear_uploads_button = w.Button(description="Clear uploads", layout=button_layout())
        self.show_params = w.Checkbox(value=bool(show_params), description="show sampled params")
        self.link_groups = w.Checkbox(value=False, description="edit all view groups together")
        self.ab_mode = w.Checkbox(value=False, description="A/B compare")
        self.b_to_a_button = w.Button(description="B -> A", disabled=True, layout=button_layout())
        self.error = w.HTML()
        self.status = w.HTML()
        self.code_area = w.Textarea(
            value="", layout={"width": "100%", "height": "80px", "display": "none"}
        )
        # natural size (no shrinking to fit): the previews pane scrolls instead
        natural = {"max_width": "none", "flex": "0 0 auto"}
        self.preview = w.Image(format="png", layout=natural)
        self.preview_a = w.Image(format="png", layout=natural)
        self.ab_diff = w.HTML()
        self.tabs = w.Tab()
        self._a_box = w.VBox(
            [w.HTML("<b>A</b> (fixed)"), self.preview_a], layout={"flex": "0 0 auto"}
        )
        self._b_label = w.HTML("<b>B</b> (controls)")
        self._a_box.layout.display = "none"
        self._b_label.layout.display = "none"
        previews = w.VBox(
            [
                self.ab_diff,
                w.HBox(
                    [
                        self._a_box,
                        w.VBox([self._b_label, self.preview], layout={"flex": "0 0 auto"}),
                    ]
                ),
            ],
            layout={"overflow": "auto", "flex": "1 1 auto", "min_width": "0"},
        )
        previews.add_class("workbench-previews")  # the one pane meant to scroll
        left = w.VBox([self.tabs], layout={"width": "480px", "flex": "0 0 auto"})
        self.children = [
            w.HBox(
                [
                    self.method_dropdown,
                    self.seed,
                    self.resample_button,
                    self.reset_button,
                    self.copy_button,
                    self.code_button,
                ]
            ),
            w.HBox([self.n_images, self.indices, self.random_button, self.upload]),
            w.HBox([self.show_params, self.link_groups, self.ab_mode, self.b_to_a_button]),
            w.HBox([self.clear_uploads_button, self.status]),
            self.error,
            self.code_area,
            w.HBox([left, previews]),
        ]
        self.method_dropdown.observe(lambda c: self._guard(self._on_method, c), names="value")
        self.seed.observe(lambda c: self._guard(self._redraw), names="value")
        self.show_params.observe(lambda c: self._guard(self._redraw), names="value")
        self.n_images.observe(lambda c: self._guard(self._on_n_images, c), names="value")
        self.indices.observe(lambda c: self._guard(self._on_indices, c), names="value")
        self.upload.observe(lambda c: self._guard(self._on_upload, c), names="value")
        self.ab_mode.observe(lambda c: self._guard(self._on_ab, c), names="value")
        self.resample_button.on_click(lambda b: self._guard(self.resample))
        self.reset_button.on_click(lambda b: self._guard(self.reset))
        self.code_button.on_click(lambda b: self._guard(self.show_code))
        self.random_button.on_click(lambda b: self._guard(self.random_images))
        self.clear_uploads_button.on_click(lambda b: self._guard(self.clear_uploads))
        self.b_to_a_button.on_click(lambda b: self._guard(self.copy_b_to_a))

    @staticmethod
    def _family_html(family: str) -> str:
        """A family's title and one help line per op (what it teaches the model to ignore)."""
        title = f"<b>{html.escape(_FAMILIES[family])}</b>"
        if family not in INVARIANCES:
            return (
                title + "<div style='font-size:11px'>How many views of this group, how big.</div>"
            )
        items = "".join(
            f"<li><i>{html.escape(op.name)}</i>: {html.escape(op.help)}</li>"
            for op in INVARIANCES[family]
        )
        return (
            f"{title}<ul style='font-size:11px;line-height:1.25;margin:0 0 2px 0;"
            f"padding-left:16px'>{items}</ul>"
        )

    def _control(self, spec: ViewSpec, field: str) -> widgets.Widget:
        info = FIELD_INFO[field]
        value = getattr(spec, field)
        common: dict[str, Any] = {
            "description": info.label,
            "tooltip": info.help,
            "style": {"description_width": "90px"},
            # one column: a ~250 px track (0.004 per pixel over 0..1) and room for the readout
            "layout": {"width": "430px"},
        }
        if info.control == "int":
            # plain IntText, not a bounded one: an invalid value must reach the recipe's check
            # and show its message rather than being clamped silently
            return widgets.IntText(value=int(value), **common)
        high = max(info.high, *(value if isinstance(value, tuple) else (value,)))
        low = min(info.low, *(value if isinstance(value, tuple) else (value,)))
        slider = widgets.FloatRangeSlider if info.control == "range" else widgets.FloatSlider
        return slider(
            value=value,
            min=low,
            max=high,
            step=info.step,
            continuous_update=False,
            readout_format=".2f",
            **common,
        )

    def _set_group_controls(self, rec: Recipe) -> None:
        """(Re)build the tabs: one per view group, controls grouped by family."""
        self.controls = {}
        self._colour_readouts: dict[str, widgets.HTML] = {}
        pages = []
        for spec in rec.groups:
            sections = []
            for family in _FAMILIES:
                fields = [f for f, info in FIELD_INFO.items() if info.family == family]
                ctrls = []
                for f in fields:
                    ctrl = self._control(spec, f)
                    ctrl.observe(
                        lambda c, g=spec.name, f=f: self._guard(self._on_control, g, f),
                        names="value",
                    )
                    self.controls[f"{spec.name}_{f}"] = ctrl
                    ctrls.append(ctrl)
                parts = [widgets.HTML(self._family_html(family)), *ctrls]
                if family == "colour":
                    readout = widgets.HTML()
                    self._colour_readouts[spec.name] = readout
                    parts.append(readout)
                sections.append(widgets.VBox(parts))
            kind = f"{spec.kind}, {spec.count} view{'s' if spec.count != 1 else ''}"
            note = widgets.HTML(f"<small>group <b>{spec.name}</b> ({kind})</small>")
            pages.append(widgets.VBox([note, *sections]))
        self.tabs.children = pages
        self.tabs.titles = tuple(g.name for g in rec.groups)
        self._update_colour_readouts()

    def _update_colour_readouts(self) -> None:
        """Under each group's colour controls: the jitter applied, and a grayscale-data note."""
        from workbench.augment.preview import applied_jitter_text

        note = ""
        if self._grayscale:
            note = (
                "<br><i>These images are grayscale: hue, saturation and grayscale change "
                "nothing on them; brightness and contrast still do.</i>"
            )
        for spec in self.recipe.groups:
            readout = self._colour_readouts.get(spec.name)
            if readout is not None:
                readout.value = (
                    f"<div style='font-size:12px;color:#333;line-height:1.3'>"
                    f"{html.escape(applied_jitter_text(spec))}{note}</div>"
                )

    def _write_controls(self, rec: Recipe) -> None:
        """Set every control from ``rec`` without triggering redraws."""
        self._updating = True
        try:
            for spec in rec.groups:
                for f in FIELD_INFO:
                    ctrl = self.controls[f"{spec.name}_{f}"]
                    value = getattr(spec, f)
                    if hasattr(ctrl, "max"):
                        top = max(value) if isinstance(value, tuple) else value
                        bottom = min(value) if isinstance(value, tuple) else value
                        ctrl.max = max(ctrl.max, top)
                        ctrl.min = min(ctrl.min, bottom)
                    ctrl.value = value
        finally:
            self._updating = False

    # -- state ------------------------------------------------------------------------------------

    def _method_overrides(self, method: str) -> dict[str, Any]:
        """The constructor's overrides that make sense for ``method`` (group keys may not)."""
        valid = set(valid_override_keys(recipe(method).groups))
        return {k: v for k, v in self._init_overrides.items() if k in valid}

    def _read_recipe(self) -> Recipe:
        """The recipe the controls describe (raises ValueError naming an invalid field)."""
        groups = []
        for spec in self.recipe.groups:
            values: dict[str, Any] = {}
            for f in FIELD_INFO:
                values[f] = _clean(self.controls[f"{spec.name}_{f}"].value, getattr(spec, f))
            groups.append(dataclasses.replace(spec, **values))
        r = self.recipe
        return Recipe(method=r.method, groups=groups, mean=r.mean, std=r.std, normalize=r.normalize)

    def overrides(self) -> dict[str, Any]:
        """The current settings as ``make_transform`` keyword overrides of the method defaults."""
        return self.recipe.overrides()

    def _current_images(self) -> tuple[list[Image.Image], list[str]]:
        ims = [im for _, im in self._uploads]
        names = [f"upload: {name}" for name, _ in self._uploads]
        for i in self._indices:
            ims.append(self._images[i])
            names.append(f"[{i}] {self._images.names[i]}")
        return ims[:MAX_ROWS], names[:MAX_ROWS]

    # -- events -----------------------------------------------------------------------------------

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run a handler; any error goes to the error area, never out of the observer."""
        if self._updating:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the preview stays
            self._show_error(exc)

    def _show_error(self, exc: BaseException | str) -> None:
        text = str(exc) if isinstance(exc, BaseException) else exc
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "Error"
        self.error.value = (
            f"<div style='color:#b00020;font-size:12px'><b>{html.escape(kind)}</b>: "
            f"{html.escape(text)} <i>(the previous preview is kept)</i></div>"
        )

    def _on_control(self, group: str, field: str) -> None:
        if self.link_groups.value and field not in _LINKED_EXCLUDED:
            value = self.controls[f"{group}_{field}"].value
            self._updating = True
            try:
                for spec in self.recipe.groups:
                    self.controls[f"{spec.name}_{field}"].value = value
            finally:
                self._updating = False
        self.apply_controls()

    def apply_controls(self) -> None:
        """Read the controls into ``recipe``/``transform``/``code`` and redraw (or show why not)."""
        rec = self._read_recipe()  # ValueError -> error area, state unchanged
        self._set_recipe(rec)
        self._update_colour_readouts()
        self._redraw()

    def _set_recipe(self, rec: Recipe) -> None:
        """Make ``rec`` current: transform, code, copy button, code area."""
        self.recipe, self.transform, self.code = rec, _make(rec), code_for(rec)
        self.copy_button.value = copy_button_html(self.code)
        if self.code_area.layout.display != "none":
            self.code_area.value = self.code

    def _on_method(self, change: Mapping[str, Any]) -> None:
        method = change["new"]
        rec = recipe(method, **self._method_overrides(method))
        self._set_recipe(rec)
        self._set_group_controls(rec)
        self._redraw()

    def reset(self) -> None:
        """Back to the method's defaults (with the constructor's overrides); images stay."""
        method = str(self.method_dropdown.value)
        rec = recipe(method, **self._method_overrides(method))
        self._write_controls(rec)
        self.link_groups.value = False
        self.apply_controls()

    def resample(self) -> None:
        """Draw new views: the seed goes up by one (which redraws)."""
        self.seed.value = int(self.seed.value) + 1

    def show_code(self) -> str:
        """Show (and return) the ``make_transform`` call that reproduces the current settings.

        "Copy as code" puts the same text on the clipboard; this is the visible copy.
        """
        self.code_area.value = self.code
        self.code_area.layout.display = "block"
        return self.code

    def _on_n_images(self, change: Mapping[str, Any]) -> None:
        n = int(change["new"])
        idx = [i for i in self._indices if i < len(self._images)][:n]
        for i in range(len(self._images)):
            if len(idx) >= n:
                break
            if i not in idx:
                idx.append(i)
        self._set_indices(idx)

    def _on_indices(self, change: Mapping[str, Any]) -> None:
        idx = parse_indices(str(change["new"]), len(self._images))
        self._set_indices(idx)

    def _set_indices(self, idx: list[int]) -> None:
        self._indices = idx
        self._updating = True
        try:
            self.indices.value = ", ".join(map(str, idx))
            self.n_images.value = max(self.n_images.min, min(len(idx), self.n_images.max))
        finally:
            self._updating = False
        self._redraw()

    def random_images(self) -> None:
        """Show other images, picked at random (reproducibly from the seed and a counter)."""
        self._picks = getattr(self, "_picks", 0) + 1
        rng = np.random.default_rng([int(self.seed.value), self._picks])
        n = min(len(self._indices), len(self._images))
        self._set_indices(sorted(int(i) for i in rng.choice(len(self._images), n, replace=False)))

    def add_images(self, images: Sequence[Image.Image], names: Sequence[str] | None = None) -> None:
        """Show your own images first in the preview (what the upload button does)."""
        names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
        for name, im in zip(names, images):
            im = im.convert("RGB")
            im.thumbnail((1024, 1024), Image.Resampling.BILINEAR)  # huge uploads stay cheap
            self._uploads.append((name, im))
        self._uploads = self._uploads[-MAX_ROWS:]
        self._redraw()

    def clear_uploads(self) -> None:
        """Forget uploaded images."""
        self._uploads = []
        self._updating = True
        try:
            self.upload.value = ()  # the button's count goes back to (0)
        finally:
            self._updating = False
        self._redraw()

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        files = change["new"] or ()
        if not files:
            return
        images, names, errors = [], [], []
        for f in files:
            name = str(f.get("name", "upload"))
            try:
                with Image.open(io.BytesIO(bytes(f["content"]))) as im:
                    im.load()
                    from workbench.data import to_rgb

                    images.append(to_rgb(im))
                names.append(name)
            except Exception as exc:  # noqa: BLE001 - reported per file
                errors.append(f"{name}: {exc}")
        # The value stays: the button then reads "Your images (n)" for the files just read (the
        # browser side resets its file input, so the same file can be chosen again).
        if images:
            self.add_images(images, names)
        if errors:
            self._show_error(ValueError("Could not read " + "; ".join(errors)))

    def _on_ab(self, change: Mapping[str, Any]) -> None:
        on = bool(change["new"])
        self._a_recipe = self.recipe if on else None
        self._a_key = None
        display = "" if on else "none"
        self._a_box.layout.display = display
        self._b_label.layout.display = display
        self.b_to_a_button.disabled = not on
        self._redraw()

    def copy_b_to_a(self) -> None:
        """A/B mode: make the current settings the new A."""
        self._a_recipe = self.recipe
        self._a_key = None
        self._redraw()

    # -- drawing ----------------------------------------------------------------------------------

    def _png(self, transform: Any, images: list[Image.Image], names: list[str]) -> bytes:
        from workbench.plots.augment import augmentation_png

        return augmentation_png(
            images,
            transform,
            seed=int(self.seed.value),
            show_params=bool(self.show_params.value),
            cell_px=self._cell_px,
            row_labels=names,
        )

    def _redraw(self) -> None:
        """Render the preview (and A's in A/B mode); errors keep the previous image."""
        t0 = time.perf_counter()
        images, names = self._current_images()
        self.preview.value = self._png(self.transform, images, names)
        if self._a_recipe is not None:
            key = (self._a_recipe, tuple(names), int(self.seed.value), bool(self.show_params.value))
            if key != self._a_key:  # A only changes with the images, seed or captions
                self.preview_a.value = self._png(_make(self._a_recipe), images, names)
                self._a_key = key
        self.last_render_s = time.perf_counter() - t0
        self.error.value = ""
        self.status.value = f"<small>{html.escape(self.status_text())}</small>"
        self.ab_diff.value = self._ab_diff_html()

    def status_text(self) -> str:
        """The status line: what the preview shows, uploads included, and how long it took."""
        images, _ = self._current_images()
        n_up = min(len(self._uploads), len(images))
        n_data = len(images) - n_up
        parts = []
        if n_up:
            parts.append(f"{n_up} uploaded image{'s' if n_up != 1 else ''}")
        if n_data:
            parts.append(f"{n_data} image{'s' if n_data != 1 else ''} from {self._images.label}")
        return (
            f"{' + '.join(parts)} x {self.recipe.n_views} views, drawn in "
            f"{1000 * self.last_render_s:.0f} ms"
        )

    def ab_differences(self) -> list[str]:
        """A/B mode: the settings where B (the controls) differs from A (fixed)."""
        from workbench.augment.preview import recipe_differences

        if self._a_recipe is None:
            return []
        return recipe_differences(self._a_recipe, self.recipe)

    def _ab_diff_html(self) -> str:
        if self._a_recipe is None:
            return ""
        diff = self.ab_differences()
        if not diff:
            return "<small><b>A = B</b>: change a control to compare.</small>"
        items = "".join(f"<li>{html.escape(d)}</li>" for d in diff)
        return (
            "<div style='font-size:12px'><b>B differs from A in:</b><ul style='margin:0;"
            f"padding-left:18px'>{items}</ul></div>"
        )


def _clean(value: Any, old: Any) -> Any:
    """A control value for the recipe, without slider float noise.

    Unchanged floats keep their exact value (4/3 stays 4/3); changed ones are rounded to 10
    decimals (slider steps arrive as 0.35000000000000003).
    """
    if isinstance(value, (tuple, list)):
        olds = old if isinstance(old, tuple) else (None,) * len(value)
        return tuple(_clean(v, o) for v, o in zip(value, olds))
    if isinstance(value, float) and not isinstance(old, bool):
        if isinstance(old, (int, float)) and math.isclose(value, old, rel_tol=1e-9, abs_tol=1e-12):
            return old
        return round(value, 10)
    return value


def _make(rec: Recipe) -> Any:
    from workbench.augment.transforms import MultiView

    return MultiView.from_recipe(rec)
