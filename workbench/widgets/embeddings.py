"""EmbeddingExplorer: where do my images land, who are their neighbours, what did the model learn.

A thin view over ``workbench.eval`` (embed, project, nearest_neighbors, knn, invariance_probe) and
``workbench.plots.embeddings``. Figures are plain matplotlib rendered to PNG in
``ipywidgets.Image`` widgets (no ipympl), so everything works headless and from threads.

Selecting a point. A PNG gives no click coordinates, and this package does not depend on
bqplot/ipyevents, so a point is selected by:

- its index (the ``index`` box), or ``Random``;
- position: the ``x``/``y`` sliders give a spot as a fraction of the map's width and height
  (0, 0 = bottom left); the point nearest to it is selected;
- clicking a neighbour's button under the neighbour grid: the selection walks to that image.

Slow work (embedding a dataset, UMAP/t-SNE fits, the invariance probe) runs in a background
thread when ``background=True`` (the default), so the cell returns at once; the thread only
changes widget values. ``wait()`` blocks until it is done (what headless tests do)::

    ex = EmbeddingExplorer(embeddings, data=ds, reducer="pca", background=False)
    ex.index.value = 12          # select image 12
    ex.neighbor_indices          # its k nearest neighbours
    ex.reducer.value = "umap"    # recompute the map
"""

from __future__ import annotations

import copy
import html
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

REDUCERS = ("umap", "pca", "tsne")


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def random_init_like(model: Any, config: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A freshly initialised copy of a backbone (the baseline a trained run should beat).

    Args:
        model: The trained ``nn.Module``.
        config: Its run config; with a ``model`` name the backbone is rebuilt by ``get_backbone``.
        seed: Seeds the initialisation (global RNG state is restored).

    Returns:
        An ``nn.Module`` of the same architecture with random weights.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        name = (config or {}).get("model")
        if isinstance(name, str) and name not in ("custom", "auto"):
            from workbench.nn.backbones import get_backbone

            size = int((config or {}).get("input_size", 224))
            return get_backbone(name, input_size=size)[0].eval()
        fresh = copy.deepcopy(model)
        for m in fresh.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
        return fresh.eval()


class EmbeddingExplorer(widgets.VBox):
    """Map, neighbours, kNN accuracy, comparison and invariance of an embedding, in one widget.

    Args:
        run_or_embeddings: An ``Embeddings`` (or an ``.npz`` written by ``Embeddings.save``), a
            features array (N, D), or something ``workbench.eval.embed`` accepts (backbone
            module, Run, run folder, ``.pt`` module file); the latter is embedded on ``data``.
        data: The images (ImageDataset or ``load_dataset`` spec): needed to embed a model and to
            show images; without it neighbours are listed by path.
        compare: A second embedding of the same images, shown side by side: the same kinds as
            ``run_or_embeddings``, or ``"random"`` for a random-init copy of the model.
        reducer: ``"umap"`` | ``"pca"`` | ``"tsne"``.
        k: Neighbours shown for the selected image.
        model: The backbone, when ``run_or_embeddings`` is precomputed; enables the invariance
            probe and ``compare="random"``.
        knn_k: Neighbours of the kNN classifier (leave-one-out over the shown images).
        knn_temperature: Its vote temperature.
        point_size: Marker size on the map.
        n_thumbnails: Images drawn on the map in thumbnail mode.
        recipe: Augmentation strengths of the invariance probe (method name, Recipe or dict).
        probe_images: Images used by the invariance probe.
        background: Run slow work in a thread (the cell returns at once); False for scripts.
        warm_umap: With ``background``, compile UMAP in a thread after loading (see
            ``workbench.eval.projection.warm_up_umap``) so that choosing it is quick.
        batch_size: Batch size when embedding.
        device: Device when embedding (``"auto"``, ``"cpu"``, ``"cuda"``...).

    Attributes:
        selected: Index of the selected image, or None.
        neighbor_indices: Its k nearest neighbours (int array, nearest first, itself excluded).
        neighbor_distances: Their cosine distances.
        neighbor_images: The images shown in the neighbour grid.
        compare_neighbor_indices: Its neighbours in the comparison embedding (or None).
        projection: The 2-D map (N, 2) of the main embedding; ``compare_projection`` likewise.
        projection_method: The reducer that made ``projection`` (the PCA preview is shown
            while a UMAP/t-SNE map is computed in the background).
        knn: kNN report of the main embedding (``knn_report`` dict) or None when unlabelled;
            ``compare_knn`` likewise.
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
        point_size: float = 6.0,
        n_thumbnails: int = 60,
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
        self.n_thumbnails, self.recipe, self.probe_images = n_thumbnails, recipe, probe_images
        self.batch_size, self.device = batch_size, device
        self.embeddings: Any = None
        self.compare_embeddings: Any = None
        self.dataset: Any = None
        self.model, self.compare_model = model, None
        self.names = ("embedding", "comparison")
        self.selected: int | None = None
        self.neighbor_indices = np.zeros(0, dtype=np.int64)
        self.neighbor_distances = np.zeros(0, dtype=np.float32)
        self.neighbor_images: list[Any] = []
        self.compare_neighbor_indices: np.ndarray | None = None
        self._compare_distances = np.zeros(0, dtype=np.float32)
        self.projection: np.ndarray | None = None
        self.compare_projection: np.ndarray | None = None
        self.projection_method = "pca"
        self.knn: dict[str, Any] | None = None
        self.compare_knn: dict[str, Any] | None = None
        self.invariance: dict[str, dict[str, float]] = {}
        self.error = ""
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._thumb_cache: dict[int, Any] = {}
        self._config: dict[str, Any] = {}
        self._build(reducer, k, point_size)
        precomputed = type(run_or_embeddings).__name__ in ("Embeddings", "ndarray", "Tensor")
        fast = precomputed and reducer == "pca" and not isinstance(compare, str)
        self._start("Loading", lambda: self._load(run_or_embeddings, data, compare, reducer),
                    slow=not fast)  # fmt: skip

    # -- layout ----------------------------------------------------------------------------------

    def _build(self, reducer: str, k: int, point_size: float) -> None:
        w = widgets
        self.header = w.HTML()
        self.status_area = w.HTML()
        self.error_area = w.HTML(layout=w.Layout(display="none"))
        self.reducer = w.Dropdown(
            options=list(REDUCERS),
            value=reducer if reducer in REDUCERS else "pca",
            description="map",
            layout=w.Layout(width="150px"),
        )
        self.point_size = w.FloatSlider(
            value=point_size, min=1, max=40, step=1, description="point size",
            continuous_update=False,
        )  # fmt: skip
        self.thumbnails = w.Checkbox(value=False, description="thumbnails on map", indent=False)
        self.k = w.IntSlider(value=max(1, k), min=1, max=32, description="neighbours",
                             continuous_update=False)  # fmt: skip
        self.index = w.BoundedIntText(value=0, min=0, max=0, description="image #",
                                      layout=w.Layout(width="170px"))  # fmt: skip
        self.random_button = w.Button(description="Random", icon="random",
                                      layout=w.Layout(width="100px"))  # fmt: skip
        self.pick_x = w.FloatSlider(
            value=0.5,
            min=0,
            max=1,
            step=0.01,
            description="x",
            continuous_update=False,
            layout=w.Layout(width="220px"),
        )
        self.pick_y = w.FloatSlider(
            value=0.5,
            min=0,
            max=1,
            step=0.01,
            description="y",
            continuous_update=False,
            layout=w.Layout(width="220px"),
        )
        self.map_image = w.Image(format="png")
        self.neighbors_image = w.Image(format="png")
        self.compare_neighbors_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.neighbor_buttons_box = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.neighbor_buttons: list[widgets.Button] = []
        self.neighbors_html = w.HTML()
        self.knn_html = w.HTML()
        self.confusion_image = w.Image(format="png")
        self.compare_confusion_image = w.Image(format="png", layout=w.Layout(display="none"))
        self.knn_box = w.VBox(
            [w.HTML("<b>kNN accuracy</b>"), self.knn_html,
             w.HBox([self.confusion_image, self.compare_confusion_image])],
        )  # fmt: skip
        self.invariance_button = w.Button(description="Run invariance probe", icon="play",
                                          layout=w.Layout(width="200px"))  # fmt: skip
        self.invariance_image = w.Image(format="png")
        self.invariance_box = w.VBox(
            [w.HTML("<b>Invariance</b>: cosine similarity between an image's embedding and "
                    "its embedding after one augmentation (1 = the model ignores it; 0 = no closer "
                    "than an unrelated image)"),
             self.invariance_button, self.invariance_image],
            layout=w.Layout(display="none"),
        )  # fmt: skip

        self.reducer.observe(lambda c: self._safely("Map", self._on_reducer), names="value")
        self.point_size.observe(lambda c: self._safely("Map", self._draw_map), names="value")
        self.thumbnails.observe(lambda c: self._safely("Map", self._draw_map), names="value")
        self.k.observe(lambda c: self._safely("Neighbours", self._refresh_selection), "value")
        self.index.observe(
            lambda c: self._safely("Selection", lambda: self.select(int(c["new"]))), "value"
        )
        self.random_button.on_click(lambda b: self._safely("Selection", self.select_random))
        for s in (self.pick_x, self.pick_y):
            s.observe(lambda c: self._safely("Selection", self._on_pick), names="value")
        self.invariance_button.on_click(
            lambda b: self._start("Invariance probe", self.run_invariance_probe)
        )
        self.children = [
            self.header,
            self.error_area,
            self.status_area,
            w.HBox([self.reducer, self.point_size, self.thumbnails]),
            self.map_image,
            w.HBox(
                [
                    self.index,
                    self.random_button,
                    w.HTML("&nbsp;or pick by position:"),
                    self.pick_x,
                    self.pick_y,
                ]
            ),  # fmt: skip
            w.HBox([self.k]),
            self.neighbors_image,
            self.neighbor_buttons_box,
            self.compare_neighbors_image,
            self.neighbors_html,
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
        """Block until background work is done; True if it finished within ``timeout``."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
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
        from workbench.data import load_dataset

        if reducer not in REDUCERS:
            raise ValueError(f"Unknown reducer {reducer!r}. Valid reducers: {list(REDUCERS)}")
        self.dataset = None if data is None else load_dataset(data)
        emb, model, config = self._resolve(source, "embedding")
        self.model = model if model is not None else self.model
        self._config = config
        self._check(emb, "embedding")
        self.names = (self._name(source, emb, "embedding"), "comparison")
        if compare is not None:
            if isinstance(compare, str) and compare == "random":
                if self.model is None:
                    raise ValueError(
                        "compare='random' needs a model: pass a run or backbone (or model=...)."
                    )
                self.compare_model = random_init_like(self.model, config)
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
            self.names = (self.names[0], cname)
        else:
            cemb = None
        knn, cknn = self._knn_reports(emb, cemb)
        method = self.reducer.value
        # In the background, show the instant PCA map first and replace it when UMAP/t-SNE is done.
        first = "pca" if self.background else method
        self._say(f"Computing the {first.upper()} map of {len(emb)} points...")
        xy, cxy = self._maps(emb, cemb, first)
        with self._lock:
            self.embeddings, self.compare_embeddings = emb, cemb
            self.knn, self.compare_knn = knn, cknn
            self.projection, self.compare_projection = xy, cxy
            self.projection_method = first
            self._show_loaded()
            self._say("")
        if self.reducer.value != first:
            self._project(self.reducer.value)
        if self.background and self.warm_umap and self.reducer.value != "umap":
            from workbench.eval.projection import warm_up_umap

            warm_up_umap()  # compile UMAP now, so that choosing it later is quick

    def _show_loaded(self) -> None:
        emb = self.embeddings
        n = len(emb)
        self.index.max = n - 1
        labelled = emb.labels is not None
        self.header.value = (
            f"<b>{html.escape(self.names[0])}</b>: {n} images x {emb.dim} dims, "
            + (f"{len(np.unique(emb.labels))} classes" if labelled else "unlabelled")
            + (f"; compared with <b>{html.escape(self.names[1])}</b>"
               if self.compare_embeddings is not None else "")
        )  # fmt: skip
        self.knn_box.layout.display = None if self.knn is not None else "none"
        if self.knn is not None:
            self._draw_knn()
        self.invariance_box.layout.display = (
            None if self.model is not None and self.dataset is not None else "none"
        )
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

    @staticmethod
    def _maps(emb: Any, cemb: Any, method: str) -> tuple[np.ndarray, np.ndarray | None]:
        from workbench.eval.projection import project

        xy = project(emb.features, method=method)
        return xy, None if cemb is None else project(cemb.features, method=method)

    def _project(self, method: str) -> None:
        self._generation += 1
        gen = self._generation
        self._say(f"Computing the {method.upper()} map of {len(self.embeddings)} points...")
        xy, cxy = self._maps(self.embeddings, self.compare_embeddings, method)
        with self._lock:
            if gen != self._generation:  # a newer request superseded this one
                return
            self.projection, self.compare_projection = xy, cxy
            self.projection_method = method
            self._say("")
            self._draw_map()

    def _on_reducer(self) -> None:
        if self.embeddings is None:
            return
        method = self.reducer.value
        self._start("Map", lambda: self._project(method), slow=method != "pca")

    # -- selection ---------------------------------------------------------------------------------

    def select(self, i: int) -> None:
        """Select image ``i``: highlight it, find and show its neighbours."""
        if self.embeddings is None:
            return
        n = len(self.embeddings)
        if not 0 <= int(i) < n:
            raise ValueError(f"Image index {i} is out of range: valid 0..{n - 1}.")
        self.selected = int(i)
        if self.index.value != self.selected:
            self.index.value = self.selected  # the observer calls select() again, which draws
            return
        self._refresh_selection()

    def select_random(self) -> None:
        """Select a random image."""
        if self.embeddings is not None:
            self.select(int(np.random.default_rng().integers(len(self.embeddings))))

    def select_nearest(self, fx: float, fy: float) -> int:
        """Select the point nearest to a spot given as fractions of the map's width and height."""
        if self.projection is None:
            raise ValueError("No map yet: wait for the projection to finish.")
        xy = self.projection
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        target = lo + np.array([fx, fy]) * np.maximum(hi - lo, 1e-12)
        i = int(np.argmin(((xy - target) ** 2).sum(axis=1)))
        self.select(i)
        return i

    def _on_pick(self) -> None:
        self.select_nearest(self.pick_x.value, self.pick_y.value)

    def _refresh_selection(self) -> None:
        from workbench.eval.knn import nearest_neighbors

        if self.selected is None or self.embeddings is None:
            return
        k = min(int(self.k.value), len(self.embeddings) - 1)
        i = self.selected
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
        self._draw_map()

    # -- drawing -----------------------------------------------------------------------------------

    def _image(self, i: int) -> Any:
        """Image i from the data, else from its path, else a grey placeholder."""
        if self.dataset is not None:
            return self.dataset[int(i)][0]
        path = Path(self.embeddings.paths[int(i)])
        if path.is_file():
            from workbench.data import read_image

            try:
                return read_image(path)
            except Exception:
                pass
        return np.full((16, 16), 0.85)

    def _thumb(self, i: int) -> Any:
        if i not in self._thumb_cache:
            img = self._image(i)
            if hasattr(img, "copy") and hasattr(img, "thumbnail"):
                img = img.copy()
                img.thumbnail((32, 32))
            self._thumb_cache[i] = img
        return self._thumb_cache[i]

    def _draw_map(self) -> None:
        from workbench.plots.common import figure_to_png, new_figure
        from workbench.plots.embeddings import embedding_map

        if self.projection is None:
            return
        emb = self.embeddings
        maps: list[tuple[np.ndarray, np.ndarray, str, Any]] = [
            (self.projection, self.neighbor_indices, self.names[0], self.knn)
        ]
        if self.compare_projection is not None:
            cnb = self.compare_neighbor_indices
            none = np.zeros(0, dtype=np.int64)
            maps.append(
                (self.compare_projection, cnb if cnb is not None else none, self.names[1],
                 self.compare_knn)
            )  # fmt: skip
        labelled = emb.labels is not None
        width = (7.0 if labelled else 5.6) * len(maps)
        fig = new_figure(width, 5.2)
        axes = np.atleast_1d(fig.subplots(1, len(maps)))
        thumbs = None
        if self.thumbnails.value:
            n = len(emb)
            rng = np.random.default_rng(0)
            chosen = rng.choice(n, size=min(self.n_thumbnails, n), replace=False)
            thumbs = {int(j): self._thumb(int(j)) for j in chosen}
        for ax, (xy, nb, name, knn) in zip(axes, maps):
            hl = None if self.selected is None else [self.selected, *[int(j) for j in nb]]
            title = f"{name} ({self.projection_method.upper()})"
            if knn is not None:
                title += f", kNN top-1 {knn['top1']:.3f}"
            embedding_map(xy, emb.labels, emb.class_names, highlight=hl,
                          point_size=self.point_size.value, title=title, ax=ax,
                          thumbnails=thumbs, thumbnail_zoom=0.7)  # fmt: skip
        self.map_image.value = figure_to_png(fig)

    def _draw_neighbors(self) -> None:
        from workbench.plots.common import figure_to_png
        from workbench.plots.embeddings import neighbor_grid

        emb, i = self.embeddings, self.selected
        assert i is not None
        labels = emb.labels
        idx, dist = self.neighbor_indices, self.neighbor_distances
        self.neighbor_images = [self._image(int(j)) for j in idx]
        fig = neighbor_grid(
            self.neighbor_images, dist,
            None if labels is None else labels[idx], emb.class_names,
            query_image=self._image(int(i)), query_label=None if labels is None else int(labels[i]),
        )  # fmt: skip
        fig.suptitle(f"nearest neighbours of #{i} in {self.names[0]}", fontsize=9)
        self.neighbors_image.value = figure_to_png(fig)
        self.neighbor_buttons = []
        for j, d in zip(idx, dist):
            b = widgets.Button(description=f"#{int(j)}", tooltip=f"{emb.paths[int(j)]} (d={d:.3f})",
                               layout=widgets.Layout(width="70px"))  # fmt: skip
            b.on_click(lambda _b, j=int(j): self._safely("Selection", lambda: self.select(j)))
            self.neighbor_buttons.append(b)
        self.neighbor_buttons_box.children = [widgets.HTML("go to:"), *self.neighbor_buttons]
        rows = "".join(
            f"<tr><td>#{int(j)}</td><td>{d:.3f}</td><td>{html.escape(emb.paths[int(j)])}</td></tr>"
            for j, d in zip(idx, dist)
        )
        text = (
            f"<details><summary>#{i} {html.escape(emb.paths[i])}: neighbour paths</summary>"
            f"<table><tr><th>#</th><th>distance</th><th>path</th></tr>{rows}</table></details>"
        )
        cnb = self.compare_neighbor_indices
        if cnb is not None:
            common = len(set(idx.tolist()) & set(cnb.tolist()))
            text += (f"<div>{common} of {len(idx)} neighbours in common with "
                     f"{html.escape(self.names[1])}</div>")  # fmt: skip
            cfig = neighbor_grid(
                [self._image(int(j)) for j in cnb], self._compare_distances,
                None if labels is None else labels[cnb], emb.class_names,
            )  # fmt: skip
            cfig.suptitle(f"nearest neighbours of #{i} in {self.names[1]}", fontsize=9)
            self.compare_neighbors_image.value = figure_to_png(cfig)
            self.compare_neighbors_image.layout.display = None
        self.neighbors_html.value = text

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
        head = "".join(f"<th>{html.escape(n)}</th>" for n, _ in reports)
        rows = [
            "<tr><td>top-1</td>" + "".join(f"<td>{r['top1']:.3f}</td>" for _, r in reports)
            + "</tr>",
            "<tr><td>top-5</td>" + "".join(f"<td>{r['top5']:.3f}</td>" for _, r in reports)
            + "</tr>",
        ]  # fmt: skip
        for j in range(c):
            cells = "".join(
                "<td>-</td>" if np.isnan(r["per_class"][j]) else f"<td>{r['per_class'][j]:.2f}</td>"
                for _, r in reports
            )
            rows.append(f"<tr><td>{html.escape(names[j])}</td>{cells}</tr>")
        k = min(self.knn_k, len(emb) - 1)
        self.knn_html.value = (
            f"<div style='font-size:12px'>weighted kNN, cosine, k={k}, t={self.knn_temperature}, "
            f"each image classified by all the others (leave-one-out)</div>"
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
        )
        self.confusion_image.value = figure_to_png(
            confusion_matrix_plot(knn["confusion"], names, title=f"kNN confusion: {self.names[0]}")
        )
        if self.compare_knn is not None:
            self.compare_confusion_image.value = figure_to_png(
                confusion_matrix_plot(
                    self.compare_knn["confusion"], names, title=f"kNN confusion: {self.names[1]}"
                )  # fmt: skip
            )
            self.compare_confusion_image.layout.display = None

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
        self._say("")
        return results
