"""EmbeddingExplorer: where do my images land, who are their neighbours, what did the model learn.

A thin view over ``workbench.eval`` (embed, project, nearest_neighbors, knn, invariance_probe),
the interactive map of ``workbench.widgets.scatter`` (jupyter-scatter, drawn with WebGL in the
browser) and ``workbench.plots.embeddings`` (confusion matrices and invariance bars as PNG).

The map's ``selection`` trait holds the selected point indices; a click or a lasso sets it in the
browser, a test or a script sets it from Python, and the explorer observes it:

- one index: ``ex.selected`` and its nearest neighbours (images with distances, also in the
  compared embedding);
- several (lasso, brush or rectangle): ``ex.selection``, shown as a grid of the images with their
  labels and indices, and their label make-up.

The compared map (random init, another run) shares selection and hover with the main one, so a
cluster lassoed in one shows where those images sit in the other. Hovering shows the image's
thumbnail (made on demand), label and index.

Slow work (embedding a dataset, UMAP/t-SNE fits, the leave-one-out kNN behind the colouring, the
compared map, the invariance probe) runs in a background thread when ``background=True`` (the
default): the first map is on screen as soon as the main projection exists, and the rest fills in
once the browser has drawn it (its view reports back), so that the fill-in does not compete with
the first draw for the CPU; the thread only changes widget values. ``wait()`` blocks until it is
done (what headless tests do)::

    ex = EmbeddingExplorer(embeddings, data=ds, reducer="pca", background=False)
    ex.map.selection = [12]      # what a click on point 12 does
    ex.selected, ex.neighbor_indices
    ex.selected = 40             # select from Python: the map highlights it
    ex.map.selection = [3, 4, 9]  # a lasso: ex.selection, the grid, the label make-up
    ex.color.value = "kNN correct/wrong"
"""

from __future__ import annotations

import html
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

REDUCERS = ("umap", "pca", "tsne")
MAX_GRID = 60  # images shown for a lasso selection (the make-up counts all of them)
# The fill-in (kNN colouring, compared map) waits for the first map to be drawn in the browser, at
# most this long: on 2 cores it slowed the first draw of 20,000 points by ~0.7 s in JupyterLab and
# ~1.4 s under Voila (benchmarks/results/map_scale_noknn.json).
DRAW_WAIT_S = 10.0
# The view reports when it renders, not when its points are drawn: the fill-in starts this much
# later (measured in benchmarks/map_scale.py).
DRAW_SETTLE_S = 1.0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def knn_table_html(
    names: Sequence[str],
    reports: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    k: int,
    temperature: float,
) -> str:
    """The kNN accuracy table: top-1 and top-5 per embedding, then top-1 per class.

    Args:
        names: Column titles, one per embedding.
        reports: Their ``knn_report`` dicts (same order).
        class_names: Row titles of the per-class rows.
        k: The k used (for the caption).
        temperature: The vote temperature (for the caption).

    Returns:
        HTML: a table whose numbers are right-aligned in tabular figures, one header per block.
    """
    num = "style='text-align:right;padding:1px 10px;font-variant-numeric:tabular-nums'"
    left = "style='text-align:left;padding:1px 10px 1px 0'"
    head = "".join(f"<th {num}>{html.escape(n)}</th>" for n in names)

    def cell(v: float, digits: int) -> str:
        return f"<td {num}>-</td>" if np.isnan(v) else f"<td {num}>{v:.{digits}f}</td>"

    rows = [f"<tr><th {left}>accuracy</th>{head}</tr>"]
    for key in ("top1", "top5"):
        label = key.replace("top", "top-")
        rows.append(f"<tr><td {left}>{label}</td>{''.join(cell(r[key], 3) for r in reports)}</tr>")
    rows.append(f"<tr><th {left}>top-1 of class</th>{head}</tr>")
    for j, cname in enumerate(class_names):
        cells = "".join(cell(float(r["per_class"][j]), 2) for r in reports)
        rows.append(f"<tr><td {left}>{html.escape(str(cname))}</td>{cells}</tr>")
    return (
        f"<div style='font-size:12px'>weighted kNN, cosine, k={k}, t={temperature}, "
        f"each image classified by all the others (leave-one-out)</div>"
        f"<table class='wb-knn' style='border-collapse:collapse;font-size:12px'>"
        f"{''.join(rows)}</table>"
    )


def recorded_knn(source: Any) -> dict[str, float] | None:
    """The kNN a run recorded while training: the last epoch's and ``knn_acc_init``.

    Args:
        source: A Run or a run folder; anything else gives None.
    """
    from workbench.runs import METRICS, Run, load_run

    if isinstance(source, (str, Path)) and (Path(source) / METRICS).is_file():
        source = load_run(source)
    if not isinstance(source, Run):
        return None
    last = next((h for h in reversed(source.history) if h.get("knn_acc") is not None), None)
    if last is None or last.get("knn_acc_init") is None:
        return None
    return {"knn_acc": float(last["knn_acc"]), "knn_acc_init": float(last["knn_acc_init"])}


def recorded_knn_html(rec: dict[str, float] | None) -> str:
    """One line under the kNN table: the run's own held-out kNN and its random-init baseline."""
    if rec is None:
        return ""
    return (
        f"<div style='font-size:12px;margin-top:4px'>recorded by the run (held-out split): kNN "
        f"{rec['knn_acc']:.3f} after training, {rec['knn_acc_init']:.3f} before step 1 "
        f"(random init)</div>"
    )


class EmbeddingExplorer(widgets.VBox):
    """Interactive map, neighbours, kNN accuracy, comparison and invariance of an embedding.

    Args:
        run_or_embeddings: An ``Embeddings`` (or an ``.npz`` written by ``Embeddings.save``), a
            features array (N, D), or something ``workbench.eval.embed`` accepts (backbone
            module, Run, run folder, ``.pt`` module file); the latter is embedded on ``data``.
        data: The images (ImageDataset or ``load_dataset`` spec): needed to embed a model and to
            show images; without it neighbours are listed by path.
        compare: A second embedding of the same images, shown side by side with linked
            selection and hover: the same kinds as ``run_or_embeddings``, or ``"random"`` for a
            random-init copy of the model.
        reducer: ``"umap"`` | ``"pca"`` | ``"tsne"``.
        k: Neighbours shown for the selected image.
        model: The backbone, when ``run_or_embeddings`` is precomputed; enables the invariance
            probe and ``compare="random"``.
        knn_k: Neighbours of the kNN classifier (leave-one-out over the shown images).
        knn_temperature: Its vote temperature.
        point_size: Point size on the map, in pixels.
        recipe: Augmentation strengths of the invariance probe (method name, Recipe or dict).
        probe_images: Images used by the invariance probe.
        background: Run slow work in a thread (the cell returns at once); False for scripts.
        warm_umap: With ``background``, compile UMAP in a thread after loading (see
            ``workbench.eval.projection.warm_up_umap``) so that choosing it is quick.
        batch_size: Batch size when embedding.
        device: Device when embedding (``"auto"``, ``"cpu"``, ``"cuda"``...).

    Attributes:
        map: The main map's widget (``jscatter`` ``JupyterScatter``): its ``selection`` trait is
            what a click or a lasso sets; ``compare_map`` likewise (linked to it), or None.
        scatters: The ``jscatter.Scatter`` objects behind the maps (main first).
        selected: Index of the selected image, or None (a property: setting it selects the point
            on the map).
        selection: Indices of a multi-point (lasso) selection, empty otherwise (a property too).
        neighbor_indices: The selected image's k nearest neighbours (int array, nearest first,
            itself excluded); ``neighbor_distances`` their cosine distances.
        neighbor_images: The images shown in the neighbour grid.
        compare_neighbor_indices: Its neighbours in the comparison embedding (or None).
        projection: The 2-D map (N, 2) of the main embedding; ``compare_projection`` likewise.
        projection_method: The reducer that made ``projection`` (the PCA preview is shown
            while a UMAP/t-SNE map is computed in the background).
        knn: Leave-one-out kNN report of the main embedding (``knn_report`` dict, with
            ``predictions``) or None when unlabelled or not computed yet; ``compare_knn`` too.
        invariance: ``{name: {family: similarity}}`` after ``run_invariance_probe()``.
        error: Text of the last error ("" if none); shown in ``error_area``.
    """

    def __init__(
        self,
        run_or_embeddings: Any,
        data: Any = None,
        compare: Any = None,
        reducer: str = "umap",
        k: int = 8,
        *,
        model: Any = None,
        knn_k: int = 200,
        knn_temperature: float = 0.1,
        point_size: float = 4.0,
        recipe: Any = "simclr",
        probe_images: int = 64,
        background: bool = True,
        warm_umap: bool = True,
        batch_size: int = 256,
        device: str = "auto",
    ) -> None:
        super().__init__()
        self.background, self.warm_umap = background, warm_umap
        self.knn_k, self.knn_temperature = knn_k, knn_temperature
        self.recipe, self.probe_images = recipe, probe_images
        self.batch_size, self.device = batch_size, device
        self.embeddings: Any = None
        self.compare_embeddings: Any = None
        self.dataset: Any = None
        self.model, self.compare_model = model, None
        self.names = ("embedding", "comparison")
        self.map: Any = None
        self.compare_map: Any = None
        self.scatters: list[Any] = []
        self._selected: int | None = None
        self._selection = np.zeros(0, dtype=np.int64)
        self.neighbor_indices = np.zeros(0, dtype=np.int64)
        self.neighbor_distances = np.zeros(0, dtype=np.float32)
        self.neighbor_images: list[Any] = []
        self.compare_neighbor_indices: np.ndarray | None = None
        self._compare_distances = np.zeros(0, dtype=np.float32)
        self.projection: np.ndarray | None = None
        self.compare_projection: np.ndarray | None = None
        self.projection_method = "pca"
        self.knn: dict[str, Any] | None = None
        self.recorded_knn: dict[str, float] | None = None  # the run's own kNN and knn_acc_init
        self.compare_knn: dict[str, Any] | None = None
        self.invariance: dict[str, dict[str, float]] = {}
        self.error = ""
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._drawn = threading.Event()  # the map's browser view exists (or someone waits)
        self._generation = 0
        self._previews: dict[int, str] = {}
        self._config: dict[str, Any] = {}
        self._build(reducer, k, point_size)
        precomputed = type(run_or_embeddings).__name__ in ("Embeddings", "ndarray", "Tensor")
        fast = precomputed and reducer == "pca" and not isinstance(compare, str)
        self._start("Loading", lambda: self._load(run_or_embeddings, data, compare, reducer),
                    slow=not fast)  # fmt: skip

    # -- layout ----------------------------------------------------------------------------------

    def _build(self, reducer: str, k: int, point_size: float) -> None:
        from workbench.widgets.scatter import COLOR_MODES

        w = widgets
        hidden = w.Layout(display="none")
        self.header = w.HTML()
        self.status_area = w.HTML()
        self.error_area = w.HTML(layout=w.Layout(display="none"))
        self.reducer = w.Dropdown(
            options=list(REDUCERS),
            value=reducer if reducer in REDUCERS else "pca",
            description="map",
            layout=w.Layout(width="150px"),
        )
        self.color = w.Dropdown(
            options=[COLOR_MODES[0]],
            value=COLOR_MODES[0],
            description="colour by",
            layout=w.Layout(width="260px"),
        )
        self.point_size = w.FloatSlider(
            value=point_size, min=1, max=20, step=1, description="point size",
            continuous_update=False,
        )  # fmt: skip
        self.k = w.IntSlider(value=max(1, k), min=1, max=32, description="neighbours",
                             continuous_update=False)  # fmt: skip
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="image #",
                                      layout=w.Layout(width="170px"))  # fmt: skip
        self.random_button = w.Button(description="Random", icon="random",
                                      layout=w.Layout(width="100px"))  # fmt: skip
        self.map_help = w.HTML(
            "<span style='color:#555;font-size:12px'>Click a point for its neighbours; "
            "for a group, press the lasso button (left of the map) and draw around it; "
            "hover for the image; scroll to zoom, drag to pan; double-click empty space to "
            "clear.</span>"
        )
        self.maps_box = w.VBox(layout=w.Layout(width="100%"))
        self.neighbors_grid = w.HTML()
        self.compare_neighbors_grid = w.HTML(layout=hidden)
        self.neighbor_buttons_box = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.neighbor_buttons: list[widgets.Button] = []
        self.neighbors_html = w.HTML()
        self.neighbors_box = w.VBox(
            [w.HBox([self.k]), self.neighbors_grid, self.neighbor_buttons_box,
             self.compare_neighbors_grid, self.neighbors_html]
        )  # fmt: skip
        self.selection_grid = w.HTML()
        self.makeup_html = w.HTML()
        self.selection_box = w.VBox(
            [w.HBox([self.selection_grid, self.makeup_html],
                    layout=w.Layout(align_items="flex-start"))],
            layout=w.Layout(display="none"),
        )  # fmt: skip
        self.knn_html = w.HTML()
        # Empty Image widgets show a broken-image icon: the PNGs stay hidden until drawn.
        self.confusion_image = w.Image(format="png", layout=w.Layout(display="none",
                                       max_width="100%"))  # fmt: skip
        self.compare_confusion_image = w.Image(format="png", layout=w.Layout(display="none",
                                               max_width="100%"))  # fmt: skip
        self.knn_box = w.VBox(
            [w.HTML("<b>kNN accuracy</b>"), self.knn_html,
             w.HBox([self.confusion_image, self.compare_confusion_image],
                    layout=w.Layout(flex_flow="row wrap", width="100%"))],
        )  # fmt: skip
        self.invariance_button = w.Button(description="Run invariance probe", icon="play",
                                          layout=w.Layout(width="200px"))  # fmt: skip
        self.invariance_image = w.Image(format="png", layout=w.Layout(display="none",
                                        max_width="100%"))  # fmt: skip
        self.invariance_note = w.HTML()
        self.invariance_box = w.VBox(
            [w.HTML("<b>Invariance</b>: cosine similarity between an image's embedding and "
                    "its embedding after one augmentation (1 = the model ignores it; 0 = no closer "
                    "than an unrelated image)"),
             self.invariance_button, self.invariance_image, self.invariance_note],
            layout=w.Layout(display="none"),
        )  # fmt: skip

        self.reducer.observe(lambda c: self._safely("Map", self._on_reducer), names="value")
        self.color.observe(lambda c: self._safely("Map", self._recolor), names="value")
        self.point_size.observe(lambda c: self._safely("Map", self._resize_points), "value")
        self.k.observe(lambda c: self._safely("Neighbours", self._refresh_selection), "value")
        self.index.observe(
            lambda c: self._safely("Selection", lambda: self.select(int(c["new"]))), "value"
        )
        self.random_button.on_click(lambda b: self._safely("Selection", self.select_random))
        self.invariance_button.on_click(
            lambda b: self._start("Invariance probe", self.run_invariance_probe)
        )
        self.children = [
            self.header,
            self.error_area,
            self.status_area,
            w.HBox([self.reducer, self.color, self.point_size]),
            self.map_help,
            self.maps_box,
            w.HBox([self.index, self.random_button]),
            self.neighbors_box,
            self.selection_box,
            self.knn_box,
            self.invariance_box,
        ]

    # -- errors, status, threads -----------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.status_area.value = f"<span style='color:#555'>{html.escape(text)}</span>"

    def _report_error(self, title: str, exc: BaseException | str) -> None:
        """Show an error in the error area (never raises)."""
        try:
            msg = exc if isinstance(exc, str) else _error_text(exc)
            tb = ""
            if isinstance(exc, BaseException) and exc.__traceback__ is not None:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.error = f"{title}: {msg}"
            details = (
                f"<details><summary>traceback</summary><pre style='font-size:11px'>"
                f"{html.escape(tb)}</pre></details>" if tb else ""
            )  # fmt: skip
            self.error_area.value = (
                "<div style='color:#a00;border:1px solid #a00;padding:4px 8px;"
                f"background:#fff0f0'><b>{html.escape(title)}</b>: "
                f"<span style='white-space:pre-wrap'>{html.escape(msg)}</span>{details}</div>"
            )
            self.error_area.layout.display = None
            self._say("")
        except Exception:  # the error area itself failed: nowhere left to report
            pass

    def clear_error(self) -> None:
        """Empty the error area."""
        self.error = ""
        self.error_area.value = ""
        self.error_area.layout.display = "none"

    def _safely(self, title: str, fn: Callable[[], Any], lock: bool = True) -> None:
        """Run a handler; any exception goes to the error area, never to the caller."""
        try:
            if lock:
                with self._lock:
                    fn()
            else:
                fn()
        except Exception as exc:
            self._report_error(title, exc)

    def _start(self, title: str, fn: Callable[[], Any], slow: bool = True) -> None:
        """Run ``fn`` now, or (slow work, ``background=True``) in a thread after the last job.

        Jobs take the state lock only to publish results, so controls stay responsive.
        """
        if not (self.background and slow):
            self._safely(title, fn)
            return
        previous = self._thread

        def job() -> None:
            if previous is not None:
                previous.join()
            self._safely(title, fn, lock=False)

        self._thread = threading.Thread(target=job, name=f"EmbeddingExplorer {title}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until background work is done; True if it finished within ``timeout``.

        A job may queue the next one (loading fills in the rest), so this waits on the newest.
        """
        import time

        self._drawn.set()  # nobody needs to wait for a browser to draw first
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            t = self._thread
            if t is None:
                return True
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                return False
            if self._thread is t:
                return True

    # -- loading -----------------------------------------------------------------------------------

    def _resolve(self, source: Any, role: str) -> tuple[Any, Any, dict[str, Any]]:
        """(Embeddings, model or None, run config) of a source; embeds models on the data."""
        from workbench.eval.embedding import Embeddings, embed, resolve_model

        ds = self.dataset
        if isinstance(source, Embeddings):
            return source, None, {}
        if isinstance(source, (str, Path)) and str(source).endswith(".npz"):
            return Embeddings.load(source), None, {}
        if isinstance(source, np.ndarray) or type(source).__name__ == "Tensor":
            feats = source.detach().cpu().numpy() if hasattr(source, "detach") else source
            feats = np.asarray(feats)
            if ds is not None and feats.ndim == 2 and len(feats) != len(ds):
                raise ValueError(
                    f"The {role} has {len(feats)} feature rows but the data has {len(ds)} images;"
                    f" they must be the same images in the same order."
                )
            return Embeddings(
                feats,
                labels=None if ds is None else ds.labels,
                paths=[] if ds is None else list(ds.paths),
                class_names=[] if ds is None else list(ds.class_names),
            ), None, {}  # fmt: skip
        model, config, _ = resolve_model(source)
        if ds is None:
            raise ValueError(
                f"The {role} is a model; pass data=... (a dataset name, folder or ImageDataset) "
                f"so there are images to embed."
            )
        self._say(f"Embedding {len(ds)} images ({role})...")

        def progress(done: int, total: int) -> None:
            self._say(f"Embedding {role}: {done}/{total} images")

        cfg = config or self._config  # a random-init copy is embedded like the run
        emb = embed(model, ds, batch_size=self.batch_size, device=self.device,
                    input_size=cfg.get("input_size"), mean=cfg.get("mean"), std=cfg.get("std"),
                    progress=progress)  # fmt: skip
        emb.meta["source"] = self._name(source, emb, role)
        return emb, model, config

    def _load(self, source: Any, data: Any, compare: Any, reducer: str) -> None:
        """Phase 1: the main embedding and its first map (on screen as soon as it exists)."""
        from workbench.data import load_dataset
        from workbench.eval.projection import project

        if reducer not in REDUCERS:
            raise ValueError(f"Unknown reducer {reducer!r}. Valid reducers: {list(REDUCERS)}")
        self.dataset = None if data is None else load_dataset(data)
        emb, model, config = self._resolve(source, "embedding")
        self.model = model if model is not None else self.model
        self._config = config
        self.recorded_knn = recorded_knn(source)
        self._check(emb, "embedding")
        self.names = (self._name(source, emb, "embedding"), "comparison")
        # In the background, show the instant PCA map first and replace it when UMAP/t-SNE is done.
        first = "pca" if self.background else reducer
        self._say(f"Computing the {first.upper()} map of {len(emb)} points...")
        xy = project(emb.features, method=first)
        with self._lock:
            self.embeddings, self.projection, self.projection_method = emb, xy, first
            self._show_loaded()
            self._say("")
        self._start("Loading", lambda: self._fill_in(compare, reducer))

    def _fill_in(self, compare: Any, reducer: str) -> None:
        """Phase 2, in the background: the compared map, the kNN colouring, UMAP/t-SNE.

        It starts once the first map's browser view exists, or after ``DRAW_WAIT_S`` if the
        explorer is not shown (a script), or at once when ``wait()`` is called.
        """
        from workbench.eval.projection import project

        if self.background:
            self._drawn.wait(DRAW_WAIT_S)
        emb = self.embeddings
        if compare is not None:
            cemb, cname = self._resolve_compare(compare, emb)
            self._say(f"Computing the {self.projection_method.upper()} map of {cname}...")
            cxy = project(cemb.features, method=self.projection_method)
            with self._lock:
                self.compare_embeddings, self.compare_projection = cemb, cxy
                self.names = (self.names[0], cname)
                self._draw_header()
                self._draw_maps()
                self._refresh_selection()
        if emb.labels is not None and len(emb) >= 2:
            self._say(
                f"kNN of {len(emb)} images (leave-one-out), for the accuracy and colouring..."
            )
            knn, cknn = self._knn_reports(emb, self.compare_embeddings)
            with self._lock:
                self.knn, self.compare_knn = knn, cknn
                self._draw_knn()
                from workbench.widgets.scatter import COLOR_MODES

                self.color.options = list(COLOR_MODES)
                self._recolor(new_tables=True)
        self._say("")
        if reducer != self.projection_method:
            self._project(reducer)
        if self.background and self.warm_umap and self.reducer.value != "umap":
            from workbench.eval.projection import warm_up_umap

            warm_up_umap()  # compile UMAP now, so that choosing it later is quick

    def _resolve_compare(self, compare: Any, emb: Any) -> tuple[Any, str]:
        if isinstance(compare, str) and compare == "random":
            if self.model is None:
                raise ValueError(
                    "compare='random' needs a model: pass a run or backbone (or model=...)."
                )
            from workbench.eval.embedding import random_init_like

            self.compare_model = random_init_like(self.model, self._config)
            cemb, _, _ = self._resolve(self.compare_model, "random-init comparison")
            cname = "random init"
        else:
            cemb, self.compare_model, _ = self._resolve(compare, "comparison")
            cname = self._name(compare, cemb, "comparison")
        self._check(cemb, "comparison")
        if len(cemb) != len(emb):
            raise ValueError(
                f"The comparison has {len(cemb)} images but the embedding has {len(emb)}; "
                f"compare two embeddings of the same images."
            )
        return cemb, cname

    def _draw_header(self) -> None:
        emb = self.embeddings
        labelled = emb.labels is not None
        self.header.value = (
            f"<b>{html.escape(self.names[0])}</b>: {len(emb)} images x {emb.dim} dims, "
            + (f"{len(np.unique(emb.labels))} classes" if labelled else "unlabelled")
            + (f"; compared with <b>{html.escape(self.names[1])}</b>"
               if self.compare_embeddings is not None else "")
        )  # fmt: skip

    def _show_loaded(self) -> None:
        self.index.max = len(self.embeddings) - 1
        self._draw_header()
        self.knn_box.layout.display = None if self.embeddings.labels is not None else "none"
        self.knn_html.value = "<span style='color:#555'>computing (leave-one-out)...</span>"
        self.invariance_box.layout.display = (
            None if self.model is not None and self.dataset is not None else "none"
        )
        self._draw_maps()
        self.select(0)

    @staticmethod
    def _name(source: Any, emb: Any, default: str) -> str:
        out = getattr(source, "out", None)
        if out is not None:
            return Path(out).name
        if isinstance(source, (str, Path)):
            return Path(source).name
        return str(emb.meta.get("source") or default)

    def _check(self, emb: Any, role: str) -> None:
        n = len(emb)
        if n == 0:
            raise ValueError(f"The {role} has no feature rows (0 images); nothing to show.")
        if emb.features.shape[1] == 0:
            raise ValueError(f"The {role}'s features have 0 dimensions.")
        if self.dataset is not None and len(self.dataset) != n:
            raise ValueError(
                f"The {role} has {n} feature rows but the data has {len(self.dataset)} images; "
                f"they must be the same images in the same order."
            )
        if not np.isfinite(emb.features).all():
            raise ValueError(f"The {role} contains NaN or inf features (a diverged run?).")

    # -- computations ------------------------------------------------------------------------------

    def _knn_reports(self, emb: Any, cemb: Any) -> tuple[Any, Any]:
        """Leave-one-out kNN reports of both embeddings (None, None when unlabelled)."""
        from workbench.eval.knn import knn_leave_one_out

        if emb.labels is None or len(emb) < 2:
            return None, None
        c = max(len(emb.class_names), int(emb.labels.max()) + 1)
        args = (self.knn_k, self.knn_temperature, c)
        knn = knn_leave_one_out(emb.features, emb.labels, *args)
        cknn = None if cemb is None else knn_leave_one_out(cemb.features, emb.labels, *args)
        return knn, cknn

    def _project(self, method: str) -> None:
        from workbench.eval.projection import project

        self._generation += 1
        gen = self._generation
        self._say(f"Computing the {method.upper()} map of {len(self.embeddings)} points...")
        xy = project(self.embeddings.features, method=method)
        cemb = self.compare_embeddings
        cxy = None if cemb is None else project(cemb.features, method=method)
        with self._lock:
            if gen != self._generation:  # a newer request superseded this one
                return
            self.projection, self.compare_projection = xy, cxy
            self.projection_method = method
            self._say("")
            self._draw_maps()

    def _on_reducer(self) -> None:
        if self.embeddings is None:
            return
        method = self.reducer.value
        self._start("Map", lambda: self._project(method), slow=method != "pca")

    # -- the maps ----------------------------------------------------------------------------------

    def _frames(self) -> list[Any]:
        """The table of each shown map (main first), with the kNN predictions once computed."""
        from workbench.widgets.scatter import map_frame

        emb = self.embeddings
        out = []
        for xy, knn in ((self.projection, self.knn), (self.compare_projection, self.compare_knn)):
            if xy is not None:
                pred = None if knn is None else knn["predictions"]
                out.append(map_frame(xy, emb.labels, emb.class_names, pred))
        return out

    def _draw_maps(self) -> None:
        """(Re)build the map widgets: one, or two with linked selection and hover."""
        from workbench.widgets.scatter import link_maps, make_map, serve_previews

        if self.projection is None:
            return
        if self.map is not None:
            self.map.unobserve(self._on_map_selection, names="selection")
        scatters = [make_map(f, self.color.value, self.point_size.value) for f in self._frames()]
        for sc in scatters:
            serve_previews(sc, self._preview)
        self.scatters = scatters
        self.map = scatters[0].widget
        self.compare_map = scatters[1].widget if len(scatters) > 1 else None
        method = self.projection_method.upper()
        titles = [f"{name} ({method})" for name in self.names[: len(scatters)]]
        grid = link_maps(list(zip(scatters, titles)))
        current = self._current_selection()
        if len(current):
            self.map.selection = current  # linked: the compared map follows
        self.map.observe(self._on_map_selection, names="selection")
        self.map.observe(self._on_view, names="dom_element_id")  # a browser view rendered
        self.maps_box.children = [grid]

    def _on_view(self, change: Any) -> None:
        """The map's view rendered in a browser: the fill-in may start once it has drawn."""
        timer = threading.Timer(DRAW_SETTLE_S, self._drawn.set)
        timer.daemon = True
        timer.start()

    def _recolor(self, new_tables: bool = False) -> None:
        """Colour the maps by the chosen mode, in place: their zoom and selection stay.

        ``new_tables``: their tables changed too (the kNN predictions arrived).
        """
        from workbench.widgets.scatter import recolor_map

        tables = self._frames() if new_tables else [None] * len(self.scatters)
        for sc, table in zip(self.scatters, tables):
            recolor_map(sc, self.color.value, table)

    def _resize_points(self) -> None:
        for sc in self.scatters:
            sc.size(default=self.point_size.value)

    def _preview(self, i: int) -> str:
        """The hover thumbnail of image i (a data URL), made when first hovered."""
        from workbench.widgets.scatter import thumbnail_data_url

        if i not in self._previews:
            self._previews[i] = thumbnail_data_url(self._image(i))
        return self._previews[i]

    # -- selection ---------------------------------------------------------------------------------

    def _current_selection(self) -> np.ndarray:
        if self._selected is not None:
            return np.array([self._selected], dtype=np.int64)
        return self._selection.copy()

    @property
    def selected(self) -> int | None:
        """The selected image (one point clicked on the map), or None."""
        return self._selected

    @selected.setter
    def selected(self, i: int | None) -> None:
        if i is None:
            self.clear_selection()
        else:
            self.select(int(i))

    @property
    def selection(self) -> np.ndarray:
        """Indices of the lassoed images (several points), empty when none or a single click."""
        return self._selection.copy()

    @selection.setter
    def selection(self, indices: Sequence[int] | np.ndarray) -> None:
        self._set_map_selection(np.asarray(indices, dtype=np.int64).reshape(-1))

    def _set_map_selection(self, sel: np.ndarray) -> None:
        if self.embeddings is None:
            return
        n = len(self.embeddings)
        bad = sel[(sel < 0) | (sel >= n)]
        if len(bad):
            raise ValueError(f"Image index {int(bad[0])} is out of range: valid 0..{n - 1}.")
        if self.map is None:
            self._apply_selection(sel)
        else:
            self.map.selection = sel  # the observer applies it, as for a click

    def select(self, i: int) -> None:
        """Select image ``i``: highlight it on the map, find and show its neighbours."""
        self._set_map_selection(np.array([int(i)], dtype=np.int64))

    def clear_selection(self) -> None:
        """Select nothing."""
        self._set_map_selection(np.zeros(0, dtype=np.int64))

    def select_random(self) -> None:
        """Select a random image."""
        if self.embeddings is not None:
            self.select(int(np.random.default_rng().integers(len(self.embeddings))))

    def _on_map_selection(self, change: Any) -> None:
        new = change["new"]
        sel = np.zeros(0, dtype=np.int64) if new is None else np.asarray(new, dtype=np.int64)
        self._safely("Selection", lambda: self._apply_selection(sel.reshape(-1)))

    def _apply_selection(self, sel: np.ndarray) -> None:
        """One index: the selected image and its neighbours; several: the lasso grid."""
        single = len(sel) == 1
        self._selected = int(sel[0]) if single else None
        self._selection = sel.copy() if len(sel) > 1 else np.zeros(0, dtype=np.int64)
        self.neighbors_box.layout.display = None if single else "none"
        self.selection_box.layout.display = None if len(sel) > 1 else "none"
        if single and self.index.value != self._selected:
            self.index.value = self._selected  # its observer re-selects the same point: no-op
        if single:
            self._refresh_selection()
        elif len(sel) > 1:
            self._draw_selection()

    def _refresh_selection(self) -> None:
        from workbench.eval.knn import nearest_neighbors

        if self._selected is None or self.embeddings is None:
            return
        k = min(int(self.k.value), len(self.embeddings) - 1)
        i = self._selected
        if k < 1:
            self.neighbor_indices = np.zeros(0, dtype=np.int64)
            self.neighbor_distances = np.zeros(0, dtype=np.float32)
        else:
            idx, dist = nearest_neighbors(self.embeddings.features, i, k + 1)
            self.neighbor_indices, self.neighbor_distances = idx[1:], dist[1:]
        self.compare_neighbor_indices = None
        if self.compare_embeddings is not None and k >= 1:
            cidx, cdist = nearest_neighbors(self.compare_embeddings.features, i, k + 1)
            self.compare_neighbor_indices = cidx[1:]
            self._compare_distances = cdist[1:]
        self._draw_neighbors()

    # -- drawing -----------------------------------------------------------------------------------

    def _image(self, i: int) -> Any:
        """Image i from the data, else from its path, else a grey placeholder."""
        if self.dataset is not None:
            return self.dataset[int(i)][0]
        paths = self.embeddings.paths
        path = Path(paths[int(i)]) if int(i) < len(paths) else None
        if path is not None and path.is_file():
            from workbench.data import read_image

            try:
                return read_image(path)
            except Exception:
                pass
        return np.full((16, 16), 0.85)

    def _label_name(self, i: int) -> str:
        from workbench.widgets.scatter import label_names

        labels = self.embeddings.labels
        if labels is None:
            return ""
        return label_names(labels[[int(i)]], self.embeddings.class_names)[0]

    def _grid(self, idx: np.ndarray, dist: np.ndarray, title: str, query: bool) -> str:
        from workbench.widgets.scatter import GridItem, image_grid_html

        items = []
        if query and self._selected is not None:
            q = self._selected
            items.append(GridItem(q, self._image(q), f"#{q} query\n{self._label_name(q)}", True))
        for j, d in zip(idx, dist):
            items.append(GridItem(int(j), self._image(int(j)),
                                  f"#{int(j)} d={d:.3f}\n{self._label_name(int(j))}"))  # fmt: skip
        css = "wb-grid wb-neighbors" if query else "wb-grid wb-compare-neighbors"
        return image_grid_html(items, title, css_class=css)

    def _draw_neighbors(self) -> None:
        emb, i = self.embeddings, self._selected
        assert i is not None
        idx, dist = self.neighbor_indices, self.neighbor_distances
        self.neighbor_images = [self._image(int(j)) for j in idx]
        self.neighbors_grid.value = self._grid(
            idx, dist, f"nearest neighbours of #{i} in {self.names[0]} (cosine distance)", True
        )
        self.neighbor_buttons = []
        for j, d in zip(idx, dist):
            b = widgets.Button(description=f"#{int(j)}", tooltip=f"{emb.paths[int(j)]} (d={d:.3f})"
                               if int(j) < len(emb.paths) else f"d={d:.3f}",
                               layout=widgets.Layout(width="70px"))  # fmt: skip
            b.on_click(lambda _b, j=int(j): self._safely("Selection", lambda: self.select(j)))
            self.neighbor_buttons.append(b)
        self.neighbor_buttons_box.children = [widgets.HTML("go to:"), *self.neighbor_buttons]
        path = lambda j: emb.paths[j] if j < len(emb.paths) else ""  # noqa: E731
        rows = "".join(
            f"<tr><td>#{int(j)}</td><td>{d:.3f}</td><td>{html.escape(path(int(j)))}</td></tr>"
            for j, d in zip(idx, dist)
        )
        text = (
            f"<details><summary>#{i} {html.escape(path(i))}: neighbour paths</summary>"
            f"<table><tr><th>#</th><th>distance</th><th>path</th></tr>{rows}</table></details>"
        )
        cnb = self.compare_neighbor_indices
        if cnb is not None:
            common = len(set(idx.tolist()) & set(cnb.tolist()))
            text += (f"<div>{common} of {len(idx)} neighbours in common with "
                     f"{html.escape(self.names[1])}</div>")  # fmt: skip
            self.compare_neighbors_grid.value = self._grid(
                cnb, self._compare_distances, f"nearest neighbours of #{i} in {self.names[1]}",
                False,
            )  # fmt: skip
            self.compare_neighbors_grid.layout.display = None
        else:
            self.compare_neighbors_grid.layout.display = "none"
        self.neighbors_html.value = text

    def _draw_selection(self) -> None:
        from workbench.widgets.scatter import GridItem, image_grid_html, label_makeup_html

        sel = self._selection
        shown = sel[:MAX_GRID]
        items = [GridItem(int(j), self._image(int(j)), f"#{int(j)}\n{self._label_name(int(j))}")
                 for j in shown]  # fmt: skip
        more = (
            f" (the first {len(shown)} shown; all in ex.selection)" if len(sel) > len(shown) else ""
        )
        self.selection_grid.value = image_grid_html(
            items, f"{len(sel)} images selected{more}", size=56, css_class="wb-grid wb-selection"
        )
        labels, names = self.embeddings.labels, self.embeddings.class_names
        self.makeup_html.value = (
            "" if labels is None else "<b>label make-up</b>" + label_makeup_html(labels[sel], names)
        )

    def _draw_knn(self) -> None:
        from workbench.plots.common import figure_to_png
        from workbench.plots.embeddings import confusion_matrix_plot

        emb, knn = self.embeddings, self.knn
        if knn is None:
            return
        reports: list[tuple[str, dict[str, Any]]] = [(self.names[0], knn)]
        if self.compare_knn is not None:
            reports.append((self.names[1], self.compare_knn))
        c = len(knn["per_class"])
        names = list(emb.class_names) + [str(j) for j in range(len(emb.class_names), c)]
        self.knn_html.value = knn_table_html(
            [n for n, _ in reports], [r for _, r in reports], names,
            min(self.knn_k, len(emb) - 1), self.knn_temperature,
        ) + recorded_knn_html(self.recorded_knn)  # fmt: skip
        for img, (name, r) in zip((self.confusion_image, self.compare_confusion_image), reports):
            img.value = figure_to_png(
                confusion_matrix_plot(r["confusion"], names, title=f"kNN confusion: {name}")
            )
            img.layout.display = None

    # -- invariance --------------------------------------------------------------------------------

    def run_invariance_probe(self) -> dict[str, dict[str, float]]:
        """Probe the model (and the comparison model) and draw the bar chart.

        Returns:
            ``{name: {family: mean cosine similarity}}``.
        """
        from workbench.eval.probes import invariance_probe
        from workbench.plots.common import figure_to_png
        from workbench.plots.embeddings import invariance_bars

        if self.model is None or self.dataset is None:
            raise ValueError(
                "The invariance probe needs a model and images: pass a run or backbone with "
                "data=..., or model=... next to precomputed embeddings."
            )
        size = self.embeddings.meta.get("input_size")
        results: dict[str, dict[str, float]] = {}
        models = [(self.names[0], self.model)]
        if self.compare_model is not None:
            models.append((self.names[1], self.compare_model))
        for name, model in models:
            self._say(f"Invariance probe: {name} on {self.probe_images} images...")
            results[name] = invariance_probe(model, self.dataset, self.recipe,
                                             n_images=self.probe_images, input_size=size,
                                             device=self.device)  # fmt: skip
        self.invariance = results
        self.invariance_image.value = figure_to_png(invariance_bars(results))
        self.invariance_image.layout.display = None
        unchanged = sorted({f for r in results.values() for f, v in r.items() if np.isnan(v)})
        self.invariance_note.value = (
            "" if not unchanged
            else f"<span style='color:#555'>Not measured: {html.escape(', '.join(unchanged))} "
            "(it leaves these images unchanged, e.g. grayscale on grey images, so a similarity "
            "of 1 would say nothing about the model).</span>"
        )  # fmt: skip
        self._say("")
        return results
