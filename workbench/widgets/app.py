"""Workbench: the three widgets in one tabbed app sharing the dataset and the method.

A thin wiring of :class:`AugmentationExplorer`, :class:`TrainingLauncher` and
:class:`EmbeddingExplorer`; nothing here trains, embeds or draws by itself. Settings flow
left to right:

- **Augment -> Train**: the method chosen above the tabs drives both tabs, and the
  augmentation tab's settings (``explorer.overrides()``) are the ``transform_args`` of the next
  run started in the Train tab (the form's input size decides the view size).
- **Train -> Embed**: when a run ends (finished or stopped), the Embed tab lists it, selects it
  and (with ``auto_embed``) opens the embedding explorer on it, with the augmentation tab's
  recipe as the strengths of the invariance probe.

Headless use (what the tests do)::

    app = Workbench(ds, method="simclr", epochs=1, input_size=16, batch_size=64)
    app.augment.controls["global_cj_prob"].value = 0.0   # no colour jitter
    app.train.start(); app.train.wait()                  # the run uses cj_prob=0.0
    app.wait_embed()                                     # the Embed tab shows that run
    app.embed.embeddings.features.shape
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from workbench.widgets import button_layout
from workbench.widgets.augmentation import AugmentationExplorer
from workbench.widgets.training import TrainingLauncher, run_label

TAB_TITLES = ("Augment", "Train", "Embed")
RANDOM_INIT = "__random_init__"  # value of the Embed tab's "random init backbone" choice


class Workbench(widgets.VBox):
    """Augment, Train and Embed tabs over one dataset and one method.

    Args:
        data: A ``load_dataset`` spec (``"digits"``, ``"shapes"``, a folder...) or an
            ImageDataset; it is loaded once and shared by the three tabs.
        method: SSL method name (``wb.list_methods()``), shared by the Augment and Train tabs.
        runs_root: Folder of the runs listed in the Train and Embed tabs (default ``"runs"``).
        reducer: Map of the Embed tab: ``"umap"`` | ``"pca"`` | ``"tsne"``.
        auto_embed: Open the finished (or stopped) run in the Embed tab at once.
        compare_random: Show a random-init copy of the backbone next to the run in the Embed tab.
        n_images: Images in the augmentation preview.
        background: Embed in a background thread (False for scripts that need the result at
            once).
        data_root: Confine "Load data", the runs folder and run folders to this directory
            (``workbench app --data-root``); paths outside it are refused with a message.
        **train_kwargs: ``wb.train`` arguments for the Train tab (``epochs``, ``batch_size``,
            ``input_size``, ``model``, ``method_args``...); ``input_size`` also sets the
            augmentation preview's view size.

    Raises:
        ValueError: An unknown method or reducer (the message lists the valid ones).
        FileNotFoundError: ``data`` names a folder that does not exist.

    The Augment tab previews at the size the Train tab's Start will train at (the form's input
    size, else the dataset's native size, else 224 px on a GPU / 96 px on a CPU:
    :func:`workbench.augment.recipes.training_input_size`), so it shows the same recipe,
    small-image settings included.

    Attributes:
        dataset: The shared ImageDataset.
        tabs: The ``ipywidgets.Tab`` (children: Augment, Train, Embed).
        augment: The AugmentationExplorer (Augment tab); rebuilt when the data changes.
        train: The TrainingLauncher (Train tab).
        embed: The EmbeddingExplorer of the Embed tab, or None until one is opened.
        method_dropdown: The shared method choice.
        error: The last error message ("" when none); also shown in the error area.
    """

    def __init__(
        self,
        data: Any = "digits",
        method: str = "simclr",
        *,
        runs_root: str | Path = "runs",
        reducer: str = "umap",
        auto_embed: bool = True,
        compare_random: bool = False,
        n_images: int = 4,
        background: bool = True,
        data_root: str | Path | None = None,
        **train_kwargs: Any,
    ) -> None:
        super().__init__()
        from workbench.app import check_data_spec, check_inside
        from workbench.data import load_dataset
        from workbench.methods import list_methods
        from workbench.widgets.embeddings import REDUCERS

        methods = list(list_methods())
        if method not in methods:
            raise ValueError(f"Unknown method {method!r}. Valid methods: {methods}")
        if reducer not in REDUCERS:
            raise ValueError(f"Unknown reducer {reducer!r}. Valid reducers: {list(REDUCERS)}")
        self.data_root = None if data_root is None else Path(data_root).expanduser().resolve()
        check_data_spec(data, self.data_root)
        check_inside(runs_root, self.data_root, "Runs folder")
        self.dataset = load_dataset(data)
        self.background = bool(background)
        self.auto_embed = bool(auto_embed)
        self.n_images = int(n_images)
        self.error = ""
        self.embed: Any = None
        self._syncing = False  # True while this class sets a linked control
        self._train_kwargs = dict(train_kwargs)

        self.data_label = widgets.HTML(self._data_html())
        self.data_text = widgets.Text(
            value=str(data) if isinstance(data, (str, Path)) else "",
            description="Data",
            placeholder="digits | shapes | photos | a folder",
            layout=widgets.Layout(width="320px"),
        )
        self.load_button = widgets.Button(
            description="Load data", icon="folder-open", layout=button_layout()
        )
        self.method_dropdown = widgets.Dropdown(
            options=methods, value=method, description="Method", layout={"width": "240px"}
        )
        self.error_area = widgets.HTML(layout=widgets.Layout(display="none"))

        self.augment_box = widgets.VBox()
        self.augment = self._new_explorer(method)

        self.train = TrainingLauncher(
            self.dataset,
            method=method,
            runs_root=runs_root,
            data_root=self.data_root,
            **self._train_kwargs,
        )
        # One Data field and one Method choice, above the tabs: the Train tab's own are hidden,
        # and so is its augmentation pop-up (the Augment tab replaces it).
        for w in (self.train.augment_button, self.train.data_text, self.train.method_dropdown):
            w.layout.display = "none"
        for w in (self.train.input_size_input, self.train.device_dropdown):
            w.observe(lambda _: self._safely("Augment", self._follow_train_size), "value")
        self.train.method_dropdown.observe(self._on_train_method, "value")
        self.train.status_label.observe(self._on_train_status, "value")

        self.source_dropdown = widgets.Dropdown(
            description="Embed", layout=widgets.Layout(width="520px")
        )
        self.compare_checkbox = widgets.Checkbox(
            value=bool(compare_random), description="compare with random init", indent=False
        )
        self.reducer_dropdown = widgets.Dropdown(
            options=list(REDUCERS), value=reducer, description="map", layout={"width": "160px"}
        )
        self.open_button = widgets.Button(
            description="Open", icon="braille", layout=button_layout()
        )
        self.embed_note = widgets.HTML(
            "Pick a run (or the random-init backbone as a baseline) and press <b>Open</b>. A run "
            "that ends in the Train tab appears here by itself."
        )
        self.embed_area = widgets.VBox()
        embed_page = widgets.VBox(
            [
                widgets.HBox([self.source_dropdown, self.reducer_dropdown]),
                widgets.HBox([self.compare_checkbox, self.open_button]),
                self.embed_note,
                self.embed_area,
            ]
        )
        self.refresh_sources()

        self.tabs = widgets.Tab(children=[self.augment_box, self.train, embed_page])
        self.tabs.titles = TAB_TITLES
        self.children = [
            widgets.HBox([self.data_text, self.load_button, self.method_dropdown]),
            self.data_label,
            self.error_area,
            self.tabs,
        ]
        self.method_dropdown.observe(
            lambda c: self._safely("Method", lambda: self.set_method(c["new"])), "value"
        )
        self.load_button.on_click(
            lambda _: self._safely("Load data", lambda: self.set_data(self.data_text.value))
        )
        self.open_button.on_click(lambda _: self._safely("Embed", self.open_embeddings))
        self.tabs.observe(self._on_tab, "selected_index")

    # -- errors ----------------------------------------------------------------------------------

    def _report_error(self, title: str, exc: BaseException | str) -> None:
        msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.error = f"{title}: {msg}"
        self.error_area.value = (
            "<div style='color:#a00;border:1px solid #a00;padding:4px 8px;background:#fff0f0'>"
            f"<b>{html.escape(title)}</b>: {html.escape(msg)}</div>"
        )
        self.error_area.layout.display = None

    def clear_error(self) -> None:
        """Empty the error area."""
        self.error = ""
        self.error_area.value = ""
        self.error_area.layout.display = "none"

    def _safely(self, title: str, fn: Callable[[], Any]) -> None:
        """Run a handler; any exception goes to the error area, never out of the observer."""
        try:
            fn()
        except Exception as exc:
            self._report_error(title, exc)

    # -- shared data and method ------------------------------------------------------------------

    def _data_html(self) -> str:
        ds = self.dataset
        labels = f"{ds.num_classes} classes" if ds.has_labels else "unlabelled"
        return (
            f"<span style='color:#444'>Shared by the three tabs: <b>{html.escape(ds.name)}</b>, "
            f"{len(ds)} images, {labels}</span>"
        )

    def preview_input_size(self) -> int:
        """The view side the Train tab's next Start trains at (what the Augment tab shows).

        Raises:
            ValueError: The Train tab's input size is not a whole number of 8 px or more.
        """
        from workbench.augment.recipes import training_input_size

        if getattr(self, "train", None) is None:  # building: the constructor's arguments
            size: Any = self._train_kwargs.get("input_size")
            accelerator = str(self._train_kwargs.get("accelerator", "auto"))
        else:
            size = self._form_input_size()
            accelerator = str(self.train.device_dropdown.value)
        native = (self.dataset.meta or {}).get("image_size")
        return training_input_size(size, native, accelerator)

    def _form_input_size(self) -> int | None:
        text = self.train.input_size_input.value.strip()
        if not text or text == "auto":
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(
                f"Input size {text!r} in the Train tab is not a whole number; "
                f"enter e.g. 32, or leave it empty for auto."
            ) from None

    def _follow_train_size(self) -> None:
        """The Train tab's input size or device changed: preview at the new training size."""
        ex = self.augment
        if ex is None:
            return
        try:
            size = self.preview_input_size()
        except ValueError:
            return  # half-typed; Start reports it
        if ex.recipe.view_sizes and ex.recipe.view_sizes[0] == size:
            return
        self.augment = self._new_explorer(self.method, overrides=self.transform_overrides())
        self.sync_transform()

    def _new_explorer(
        self, method: str, overrides: Mapping[str, Any] | None = None
    ) -> AugmentationExplorer | None:
        """A fresh augmentation tab for ``method`` (or a note when it has no recipe)."""
        from workbench.augment.recipes import METHOD_NAMES

        overrides = dict(overrides or {})
        if method not in METHOD_NAMES:
            self.augment_box.children = [
                widgets.HTML(f"{html.escape(method)} has no augmentation recipe to preview.")
            ]
            return None
        explorer = AugmentationExplorer(
            self.dataset,
            method=method,
            n_images=self.n_images,
            **{**overrides, "input_size": self.preview_input_size()},
        )
        explorer.method_dropdown.layout.display = "none"  # the shared Method choice decides
        explorer.method_dropdown.observe(self._on_augment_method, "value")
        # Every accepted change redraws the preview: that is when the settings flow to training.
        explorer.preview.observe(lambda _: self._safely("Augment", self.sync_transform), "value")
        size = explorer.recipe.view_sizes[0]
        note = widgets.HTML(
            f"<small>Previews at <b>{size} px</b>, the size the Train tab's Start trains at "
            f"(its Input size field, else the data's native size), with the same recipe; these "
            f"settings are the next run's.</small>"
        )
        self.augment_box.children = [note, explorer]
        return explorer

    @property
    def method(self) -> str:
        """The shared method name."""
        return str(self.method_dropdown.value)

    def set_method(self, method: str) -> None:
        """Use ``method`` in every tab (the augmentation tab shows its default views).

        Raises:
            ValueError: An unknown method (the message lists the valid ones).
        """
        options = list(self.method_dropdown.options)
        if method not in options:
            raise ValueError(f"Unknown method {method!r}. Valid methods: {options}")
        self._syncing = True
        try:
            self.method_dropdown.value = method
            self.train.method_dropdown.value = method
            ex = self.augment
            if ex is not None and method in ex.method_dropdown.options:
                ex.method_dropdown.value = method  # redraws with the method's defaults
            else:
                self.augment = self._new_explorer(method)
        finally:
            self._syncing = False
        self.sync_transform()

    def _on_train_method(self, change: Mapping[str, Any]) -> None:
        if not self._syncing:
            self._safely("Method", lambda: self.set_method(change["new"]))

    def _on_augment_method(self, change: Mapping[str, Any]) -> None:
        if not self._syncing:
            self._safely("Method", lambda: self.set_method(change["new"]))

    def set_data(self, data: Any) -> None:
        """Load ``data`` and use it in every tab (the augmentation tab is rebuilt).

        Raises:
            ValueError: An empty or unknown dataset name.
            FileNotFoundError: A folder that does not exist.
        """
        from workbench.app import check_data_spec
        from workbench.data import load_dataset

        if isinstance(data, str) and not data.strip():
            raise ValueError("Data is empty: enter a dataset name (e.g. 'digits') or a folder.")
        data = data.strip() if isinstance(data, str) else data
        check_data_spec(data, self.data_root)
        ds = load_dataset(data)
        self.clear_error()
        self.dataset = ds
        self.data_label.value = self._data_html()
        self.augment = self._new_explorer(self.method)
        self.train.data_text.value = data if isinstance(data, str) else ds.name
        self.sync_transform()

    def transform_overrides(self) -> dict[str, Any]:
        """The augmentation tab's settings as ``wb.train(transform_args=...)`` (no input size)."""
        ex = self.augment
        if ex is None or ex.recipe.method != self.method:
            return {}
        overrides = dict(ex.overrides())
        overrides.pop("input_size", None)  # the Train form's input size decides
        return overrides

    def sync_transform(self) -> None:
        """Hand the augmentation tab's settings to the Train tab's next run."""
        base = self._train_kwargs.get("transform_args")
        overrides = self.transform_overrides()
        if isinstance(base, Mapping):
            merged: Any = {**base, **overrides}
        else:
            merged = overrides or base
        if merged:
            self.train.train_kwargs["transform_args"] = merged
        else:
            self.train.train_kwargs.pop("transform_args", None)

    # -- embeddings ------------------------------------------------------------------------------

    def _backbone_name(self) -> str:
        model = self.train.model_dropdown.value
        return model if isinstance(model, str) and model != "auto" else "resnet18"

    def refresh_sources(self, select: Any = None) -> None:
        """List the runs of the runs folder (newest first) after the random-init choice."""
        from workbench.runs import list_runs

        root = self.train.runs_root_input.value.strip() or "runs"
        runs = [r for r in list_runs(root) if r.backbone_path.is_file()]
        options: list[tuple[str, Any]] = [
            (f"random init ({self._backbone_name()}): the baseline", RANDOM_INIT)
        ]
        options += [(run_label(r.summary()), str(r.out)) for r in runs]
        current = self.source_dropdown.value
        self.source_dropdown.options = options
        values = [v for _, v in options]
        if select is not None and str(select) in values:
            self.source_dropdown.value = str(select)
        elif current in values:
            self.source_dropdown.value = current
        else:
            self.source_dropdown.value = values[1] if len(values) > 1 else RANDOM_INIT

    def _random_backbone(self) -> Any:
        from workbench.nn.backbones import get_backbone

        size = self._input_size()
        return get_backbone(self._backbone_name(), input_size=size)[0].eval()

    def _input_size(self) -> int:
        return self.preview_input_size()

    def open_embeddings(self, source: Any = None) -> Any:
        """Open the EmbeddingExplorer on ``source`` (default: the Embed tab's choice).

        Args:
            source: A run folder or Run, or ``RANDOM_INIT`` for a random-init backbone.

        Returns:
            The EmbeddingExplorer (its slow work may still run: see ``wait_embed``).
        """
        from workbench.runs import load_run
        from workbench.widgets.embeddings import EmbeddingExplorer

        source = self.source_dropdown.value if source is None else source
        if source is None:
            raise ValueError("Nothing to embed: train a run in the Train tab first.")
        recipe: Any = self.augment.recipe if self.augment is not None else "simclr"
        kw: dict[str, Any] = dict(
            data=self.dataset,
            reducer=str(self.reducer_dropdown.value),
            recipe=recipe,
            background=self.background,
        )
        if source == RANDOM_INIT:
            model = self._random_backbone()
            explorer = EmbeddingExplorer(model, model=model, **kw)
            what = f"a random-init {self._backbone_name()} (no training: the baseline)"
        else:
            run = load_run(source) if not hasattr(source, "out") else source
            compare = "random" if self.compare_checkbox.value else None
            explorer = EmbeddingExplorer(run, compare=compare, **kw)
            what = f"run {run.name}"
        self.embed = explorer
        self.embed_note.value = f"Showing {html.escape(what)}."
        self.embed_area.children = [explorer]
        return explorer

    def wait_embed(self, timeout: float | None = None) -> bool:
        """Block until the Embed tab's background work is done (True if it finished in time)."""
        return True if self.embed is None else bool(self.embed.wait(timeout))

    def _on_tab(self, change: Mapping[str, Any]) -> None:
        if change["new"] == 2:  # the user has seen the new run
            self.tabs.set_title(2, TAB_TITLES[2])

    def _on_train_status(self, change: Mapping[str, Any]) -> None:
        status = self.train.status
        if status not in ("finished", "stopped"):
            return
        run = self.train.run

        def update() -> None:
            out = getattr(run, "out", None)
            self.refresh_sources(select=out)
            if not (out is not None and Path(out, "exported", "backbone.pt").is_file()):
                return  # stopped before the first epoch: nothing exported to embed
            self.tabs.set_title(2, "Embed (new run)")
            if self.auto_embed:
                self.open_embeddings(str(out))

        self._safely("Embed", update)
