"""TrainingLauncher: start a pretraining run from a notebook, watch it live, stop it, compare runs.

A thin view over ``wb.train``. The run happens in a daemon thread so the cell returns at once and
the kernel keeps handling clicks (ipywidgets #3468). The training thread only appends records and
sets flags; a second "painter" thread redraws the live figure at most every
``redraw_interval`` seconds into an ``ipywidgets.Image`` (plain matplotlib to PNG: no ipympl,
no pyplot state). Neither thread prints (ipykernel 7 may drop output from threads); they change
widget traits, and every error lands in the widget's error area.

Headless use (what the tests do)::

    launcher = TrainingLauncher("digits", method="simclr", epochs=2, limit_images=256)
    launcher.start()          # returns at once
    launcher.wait(60)
    launcher.status           # "finished" | "stopped" | "failed"
"""

from __future__ import annotations

import html
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as widgets

from workbench.widgets import button_layout

DEVICES = ("auto", "cpu", "cuda")
_FIELDS_WITH_FORM = ("out", "model", "epochs", "batch_size", "input_size", "lr", "accelerator")


# ---------------------------------------------------------------------------------------------
# Pure helpers (tested without widgets)


def backbone_hint(card: Mapping[str, Any], model: str | None) -> str | None:
    """A hint when ``model`` is not among the method's usual backbones (``card["backbones"]``)."""
    backbones = card.get("backbones")
    if not model or model == "auto" or not backbones:
        return None
    names = [backbones] if isinstance(backbones, str) else [str(b) for b in backbones]
    if any(model == n for n in names):
        return None
    return f"Backbone {model!r} is not among the usual ones for this method: {', '.join(names)}."


def method_hints(
    name: str, card: Mapping[str, Any], *, batch_size: int, epochs: int, model: str | None
) -> list[str]:
    """Hints when the settings are far from the method's recommendation (batch, epochs, model)."""
    from workbench.methods import settings_hints

    hints = list(settings_hints(name, batch_size=batch_size, epochs=epochs))
    hint = backbone_hint(card, model)
    return hints + ([hint] if hint else [])


_CARD_TITLES = {
    "summary": None,
    "use_when": "Use when",
    "avoid_when": "Avoid when",
    "batch_size": "Recommended batch size",
    "epochs": "Recommended epochs",
    "backbones": "Backbones",
    "paper": "Paper",
    "note": "Note",
    "changed": "Changed for short runs",
    "defaults": "Defaults",
}
_CARD_SKIP = ("name",)


def _card_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(html.escape(str(v)) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{html.escape(str(k))}={html.escape(str(v))}" for k, v in value.items())
    return html.escape(str(value))


def _defaults_html(defaults: Mapping[str, Any]) -> str:
    """The method's config defaults as a folded two-column table (``method_args`` keys)."""
    rows = "".join(
        f"<tr><td style='padding-right:10px'><code>{html.escape(str(k))}</code></td>"
        f"<td>{_card_value(v)}</td></tr>"
        for k, v in defaults.items()
    )
    return (
        "<details><summary>Method settings and their defaults (<code>method_args</code>)"
        f"</summary><table style='font-size:12px'>{rows}</table></details>"
    )


def method_card_html(name: str, card: Mapping[str, Any] | None, hints: Sequence[str] = ()) -> str:
    """The method card as HTML: every key of ``describe_method`` that exists, then the hints."""
    parts = [f"<b>{html.escape(name)}</b>"]
    if not card:
        parts.append("<i>No description available.</i>")
    else:
        if card.get("summary"):
            parts.append(_card_value(card["summary"]))
        keys = [k for k in _CARD_TITLES if k in card] + [k for k in card if k not in _CARD_TITLES]
        for key in keys:
            value = card[key]
            if key == "summary" or key in _CARD_SKIP or value in (None, "", [], (), {}):
                continue
            if key == "defaults" and isinstance(value, Mapping):
                parts.append(_defaults_html(value))
                continue
            title = _CARD_TITLES.get(key) or key.replace("_", " ").capitalize()
            parts.append(f"<b>{html.escape(title)}:</b> {_card_value(value)}")
    for hint in hints:
        parts.append(f"<span style='color:#b35900'>&#9888; {html.escape(hint)}</span>")
    return "<div style='line-height:1.35'>" + "<br>".join(parts) + "</div>"


def _fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_text(
    record: Mapping[str, Any], epochs: int | None, *, eta: bool = True
) -> tuple[int, int, str]:
    """(value, max, label) of the progress bar from a step record (epoch and batch are 0-based).

    Args:
        record: A step record (``epoch``, ``batch``, ``batches_per_epoch``, ``seconds``...).
        epochs: Total epochs of the run (None: the record's ``epochs``).
        eta: Add the estimated time left (False once the run is over).
    """
    bpe = int(record.get("batches_per_epoch") or 0)
    epoch = int(record.get("epoch") or 0)
    batch = int(record.get("batch") or 0)
    total_epochs = int(epochs or record.get("epochs") or 0)
    total = bpe * total_epochs if bpe and total_epochs else 0
    done = epoch * bpe + batch + 1 if bpe else int(record.get("step") or 0) + 1
    parts = [f"epoch {epoch + 1}/{total_epochs or '?'}", f"step {batch + 1}/{bpe or '?'}"]
    ips = record.get("images_per_s")
    if isinstance(ips, (int, float)) and math.isfinite(ips):
        parts.append(f"{ips:,.0f} img/s")
    seconds = record.get("seconds")
    if eta and total and isinstance(seconds, (int, float)) and done > 0:
        parts.append(f"ETA {_fmt_seconds(seconds / done * max(total - done, 0))}")
    return done, max(total, done, 1), " · ".join(parts)


def complete_epochs(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of whole epochs.

    A Stop mid-epoch writes a ``partial`` record (a few steps' mean, no kNN) that must not be
    drawn as an epoch point; its steps stay in the per-step curve.
    """
    return [rec for rec in history if not rec.get("partial")]


def _plotted(run: Any) -> Any:
    """``run`` as the training-curve plot should see it: whole epochs only."""
    return SimpleNamespace(
        history=complete_epochs(getattr(run, "history", None) or []),
        steps=list(getattr(run, "steps", None) or []),
        config=dict(getattr(run, "config", None) or {}),
        name=getattr(run, "name", None),
    )


def stopped_text(
    run: Any, epochs: int | None, history: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """What the message area says after Stop: where the run ended and how to continue it.

    Args:
        run: The stopped Run (its ``config`` and ``out``).
        epochs: Total epochs asked for (when the config lacks them).
        history: Epoch records received (default: ``run.history``).
    """
    from workbench.cli import resume_commands

    config = dict(getattr(run, "config", None) or {})
    total = int(config.get("epochs") or epochs or 0)
    records = history if history is not None else getattr(run, "history", None) or []
    done = len(complete_epochs(records))
    python, cli = resume_commands(config, getattr(run, "out", ""), epochs=total or None)
    return (
        f"Stopped with a checkpoint after {done} of {total or '?'} epochs. To continue it from "
        f"the checkpoint, in the same folder, run\n  {python}\nor\n  {cli}"
    )


def run_label(summary: Mapping[str, Any]) -> str:
    """One line per run for the runs browser: name, method, status and final metrics."""

    def num(key: str, fmt: str) -> str | None:
        v = summary.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else None

    parts = [str(summary.get("name", "?"))]
    what = "/".join(str(summary[k]) for k in ("method", "model") if summary.get(k))
    if what:
        parts.append(what)
    parts.append(str(summary.get("status", "?")))
    if summary.get("epochs"):
        parts.append(f"ep {summary['epochs']}")
    for key, title, fmt in (("loss", "loss", ".3g"), ("rep_std", "std", ".3g")):
        v = num(key, fmt)
        if v is not None:
            parts.append(f"{title} {v}")
    knn, init = num("knn_acc", ".1%"), num("knn_acc_init", ".1%")
    if knn is not None:
        parts.append(f"kNN {knn}" + (f" (random init {init})" if init is not None else ""))
    return " · ".join(parts)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_SUBSHELLS: dict[int, str] = {}  # id(kernel) -> the subshell that serves Stop buttons


def handle_in_subshell(*controls: widgets.Widget) -> bool:
    """Handle these widgets' messages in a kernel subshell, so they work while a cell runs.

    A cell blocked in ``launcher.wait()`` (what Run All does) keeps the kernel's main shell
    busy: a Stop click would queue until the cell ends. ipykernel 7 runs *subshells*, each in
    its own thread (JEP 91), and routes a comm's messages to the subshell its
    ``_reply_subshell_for`` names. So the Stop button's comm is routed to a subshell made for
    it: the click runs ``stop()`` at once, whatever the main shell is doing. This uses
    ipykernel internals (7.4: ``shell_channel_thread.manager`` and ``_reply_subshell_for``), so
    ipykernel is pinned (pyproject, constraints.txt) and tests/test_browser.py checks it.
    jupyter-ui-poll, the usual tool, cannot do it here: its ``do_one_iteration`` is gone in
    ipykernel 7.4.

    Returns:
        True when the controls are served by a subshell; False outside a kernel or with an
        ipykernel without subshells (then Stop works from a free kernel only).
    """
    try:
        from IPython import get_ipython

        kernel = getattr(get_ipython(), "kernel", None)
        thread = getattr(kernel, "shell_channel_thread", None)
        if kernel is None or thread is None or not kernel._supports_kernel_subshells:
            return False
        sid = _SUBSHELLS.get(id(kernel))
        if sid is None:
            socket = thread.manager.control_to_shell_channel.from_socket
            socket.send_json({"type": "create"})  # as a create_subshell_request does
            reply = socket.recv_json()
            if reply.get("status") != "ok":
                return False
            sid = _SUBSHELLS[id(kernel)] = str(reply["subshell_id"])
        for control in controls:
            comm = getattr(control, "comm", None)
            if comm is None or not hasattr(comm, "_reply_subshell_for"):
                return False
            comm._reply_subshell_for = lambda data, default, sid=sid: sid
        return True
    except Exception:  # an ipykernel whose internals differ: fall back to the main shell
        return False


# ---------------------------------------------------------------------------------------------
# The callback object handed to wb.train (called from the training thread)


class _LauncherCallback:
    """Forwards training records to the launcher; never raises into the training loop."""

    def __init__(self, launcher: TrainingLauncher, token: int) -> None:
        self._launcher = launcher
        self._token = token  # records of an older run are ignored

    def _guard(self, where: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a bug in the view must not kill the run
            self._launcher._report_error(f"Error in the live view ({where})", exc)

    def on_start(self, run: Any) -> None:
        self._guard("on_start", lambda: self._launcher._on_start(self._token, run))

    def on_step(self, record: dict[str, Any]) -> None:
        self._guard("on_step", lambda: self._launcher._on_step(self._token, record))

    def on_epoch(self, record: dict[str, Any]) -> None:
        self._guard("on_epoch", lambda: self._launcher._on_epoch(self._token, record))

    def on_event(self, event: dict[str, Any]) -> None:
        self._guard("on_event", lambda: self._launcher._on_event(self._token, event))

    def on_end(self, run: Any) -> None:
        self._guard("on_end", lambda: self._launcher._on_end(self._token, run))

    def should_stop(self) -> bool:
        return self._launcher._stop_flag.is_set()


# ---------------------------------------------------------------------------------------------
# The widget


class TrainingLauncher(widgets.VBox):
    """Launch ``wb.train`` from a form, watch loss / representation std / kNN live, stop, compare.

    Args:
        data: Dataset spec (``"digits"``, a folder, ...) or an ImageDataset.
        method: SSL method name (``wb.list_methods()``).
        runs_root: Folder whose runs the browser lists; new runs without an output folder go
            there. Defaults to the parent of ``out`` when given, else ``"runs"``.
        redraw_interval: Minimum seconds between two redraws of the live figure.
        data_root: Refuse data, output and runs folders outside this directory (``workbench
            app --data-root``); None allows any.
        **train_kwargs: Any other ``wb.train`` argument. ``model``, ``epochs``, ``batch_size``,
            ``input_size``, ``lr``, ``accelerator`` and ``out`` pre-fill the form; the rest
            (``method_args``, ``num_workers``, ``max_steps``, ``seed``, ...) are passed through
            unchanged.

    Raises:
        ValueError: An unknown method or backbone name (the message lists the valid ones).

    Attributes:
        run: The current (or last) Run, once the run folder exists.
        history: Per-epoch records of the current run, as received.
        steps: Per-step records of the current run.
        events: Events of the current run (collapse, nan, hint, stopped, ...).
        status: ``"idle"`` | ``"starting"`` | ``"running"`` | ``"stopping"`` | ``"finished"`` |
            ``"stopped"`` | ``"failed"``.
        error: The last error message ("" when none); also shown in the error area.
        last_figure: The last live Figure; ``last_plot_data`` its lines
            (``{axes title: {label: (x, y)}}``).
    """

    def __init__(
        self,
        data: Any = "digits",
        method: str = "simclr",
        *,
        runs_root: str | Path | None = None,
        redraw_interval: float = 0.5,
        data_root: str | Path | None = None,
        **train_kwargs: Any,
    ) -> None:
        super().__init__()
        self.data_root = None if data_root is None else Path(data_root).expanduser().resolve()
        self._checked_data: tuple[str, Any] | None = None
        self.redraw_interval = float(redraw_interval)
        self.train_kwargs: dict[str, Any] = dict(train_kwargs)
        if "callbacks" in self.train_kwargs:
            raise ValueError(
                "TrainingLauncher adds its own callbacks; pass `callbacks` to wb.train."
            )
        out = self.train_kwargs.get("out")
        if runs_root is None:
            runs_root = Path(out).expanduser().parent if out else Path("runs")
        self.run: Any = None
        self.history: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.error = ""
        self.last_figure: Any = None
        self.last_plot_data: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        self.redraw_times: list[float] = []  # monotonic time of each live redraw (for tests)
        self._status = "idle"
        self._lock = threading.RLock()
        self._paint_lock = threading.Lock()
        self._stop_flag = threading.Event()
        self._paint_stop = threading.Event()
        self._dirty = False
        self._token = 0
        self._thread: threading.Thread | None = None
        self._painter: threading.Thread | None = None
        self._last_progress = 0.0
        self._epochs_total: int | None = None
        self._run_config: dict[str, Any] = {}
        self._explorer: Any = None
        self._runs: list[Any] = []
        self._data_obj = None if isinstance(data, (str, Path)) else data
        self._build(data, method, runs_root)
        self._update_card()
        self.refresh_runs()

    # -- layout -------------------------------------------------------------------------------

    def _build(self, data: Any, method: str, runs_root: str | Path) -> None:
        kw = self.train_kwargs
        label_w = {"description_width": "110px"}
        lay = widgets.Layout(width="340px")
        data_text = str(data) if self._data_obj is None else self._data_label()
        self.data_text = widgets.Text(
            value=data_text,
            description="Data",
            style=label_w,
            layout=lay,
            placeholder="digits | shapes | folder | cifar10:<root>",
        )
        methods, methods_note = self._method_names(method)
        self.method_dropdown = widgets.Dropdown(
            options=methods, value=method, description="Method", style=label_w, layout=lay
        )
        model = kw.get("model", "auto")
        self.model_dropdown = widgets.Dropdown(
            options=self._backbone_options(model),
            value=model,
            description="Backbone",
            style=label_w,
            layout=lay,
        )
        self.epochs_input = widgets.BoundedIntText(
            value=int(kw.get("epochs", 10)),
            min=1,
            max=100_000,
            description="Epochs",
            style=label_w,
            layout=lay,
        )
        self.batch_size_input = widgets.BoundedIntText(
            value=int(kw.get("batch_size", 128)),
            min=1,
            max=1_000_000,
            description="Batch size",
            style=label_w,
            layout=lay,
        )
        input_size = kw.get("input_size")
        self.input_size_input = widgets.Text(
            value="" if input_size in (None, "auto") else str(input_size),
            description="Input size",
            placeholder="auto",
            style=label_w,
            layout=lay,
        )
        lr = kw.get("lr")
        self.lr_input = widgets.Text(
            value="" if lr in (None, "auto") else str(lr),
            description="Learning rate",
            placeholder="auto (scaled by batch size)",
            style=label_w,
            layout=lay,
        )
        device = str(kw.get("accelerator", "auto"))
        devices = list(DEVICES) + ([device] if device not in DEVICES else [])
        self.device_dropdown = widgets.Dropdown(
            options=devices, value=device, description="Device", style=label_w, layout=lay
        )
        self.out_input = widgets.Text(
            value="" if kw.get("out") is None else str(kw["out"]),
            description="Output folder",
            placeholder=f"auto: {Path(runs_root) / '<method>-<date>'}",
            style=label_w,
            layout=lay,
        )
        self.augment_button = widgets.Button(
            description="Augmentations...",
            tooltip="Preview and edit the views of this method",
            icon="image",
            layout=button_layout(),
        )
        form = widgets.VBox(
            [
                self.data_text,
                self.method_dropdown,
                self.model_dropdown,
                self.epochs_input,
                self.batch_size_input,
                self.input_size_input,
                self.lr_input,
                self.device_dropdown,
                self.out_input,
                self.augment_button,
            ]
        )
        self.card = widgets.HTML(layout=widgets.Layout(width="440px", padding="0 0 0 12px"))
        self.augment_area = widgets.VBox()

        self.start_button = widgets.Button(
            description="Start", button_style="success", icon="play", layout=button_layout()
        )
        self.stop_button = widgets.Button(
            description="Stop",
            button_style="danger",
            icon="stop",
            disabled=True,
            layout=button_layout(),
        )
        self.status_label = widgets.HTML(value=self._status_html("idle"))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout={"width": "340px"})
        self.progress_label = widgets.HTML(value="")
        self.message_area = widgets.HTML(value=methods_note)
        self.error_area = widgets.HTML(value="", layout={"display": "none"})
        # hidden while empty: an Image without bytes shows a broken-image icon
        self.plot = widgets.Image(format="png", layout={"max_width": "100%", "display": "none"})

        self.runs_root_input = widgets.Text(
            value=str(runs_root), description="Runs folder", style=label_w, layout=lay
        )
        self.refresh_button = widgets.Button(
            description="Refresh", icon="refresh", layout=button_layout()
        )
        self.runs_select = widgets.SelectMultiple(
            options=[],
            rows=6,
            description="Runs",
            style=label_w,
            layout=widgets.Layout(width="95%"),
        )
        self.embeddings_button = widgets.Button(
            description="Open embeddings",
            icon="braille",
            tooltip="First selected run",
            layout=button_layout(),
        )
        self.overlay_plot = widgets.Image(
            format="png", layout={"max_width": "100%", "display": "none"}
        )
        self.embeddings_area = widgets.VBox()
        browser = widgets.VBox(
            [
                widgets.HBox([self.runs_root_input, self.refresh_button]),
                self.runs_select,
                self.embeddings_button,
                self.overlay_plot,
                self.embeddings_area,
            ]
        )
        self.runs_browser = widgets.Accordion(children=[browser], selected_index=None)
        self.runs_browser.set_title(0, "Earlier runs: select several to overlay")

        self.children = [
            widgets.HBox([form, self.card]),
            self.augment_area,
            widgets.HBox([self.start_button, self.stop_button, self.status_label]),
            widgets.HBox([self.progress, self.progress_label]),
            self.message_area,
            self.error_area,
            self.plot,
            self.runs_browser,
        ]

        # Stop must work while the main shell is busy (a cell blocked in wait())
        self.stop_in_subshell = handle_in_subshell(self.stop_button)
        self.start_button.on_click(lambda _: self._safely("Start", self.start))
        self.stop_button.on_click(lambda _: self._safely("Stop", self.stop))
        self.augment_button.on_click(
            lambda _: self._safely("Augmentations", self.open_augmentations)
        )
        self.refresh_button.on_click(lambda _: self._safely("Refresh", self.refresh_runs))
        self.embeddings_button.on_click(lambda _: self._safely("Embeddings", self.open_embeddings))
        self.runs_select.observe(lambda _: self._safely("Overlay", self.show_overlay), "value")
        for w in (self.method_dropdown, self.model_dropdown, self.epochs_input):
            w.observe(lambda _: self._safely("Method card", self._update_card), "value")
        self.batch_size_input.observe(
            lambda _: self._safely("Method card", self._update_card), "value"
        )
        self.method_dropdown.observe(self._on_method_change, "value")

    def _data_label(self) -> str:
        n = ""
        try:
            n = f", {len(self._data_obj)} images"  # type: ignore[arg-type]
        except TypeError:
            pass
        return f"<{type(self._data_obj).__name__}{n}>"

    @staticmethod
    def _method_names(method: str) -> tuple[list[str], str]:
        try:
            from workbench.methods import list_methods

            names = list(list_methods())
            note = ""
            if method not in names:
                raise ValueError(f"Unknown method {method!r}. Valid methods: {names}")
        except ImportError as exc:
            names, note = [], f"Method list unavailable ({html.escape(str(exc))})."
        if method not in names:
            names.append(method)
        return names, note

    @staticmethod
    def _backbone_options(model: Any) -> list[tuple[str, Any]]:
        from workbench.nn.backbones import list_backbones

        names = ["auto", *list_backbones()]
        options: list[tuple[str, Any]] = [("auto (by input size)", "auto")]
        options += [(name, name) for name in names[1:]]
        if not isinstance(model, str):  # a user nn.Module: keep the object as the value
            options.append((f"custom: {type(model).__name__}", model))
        elif model not in names:
            raise ValueError(f"Unknown backbone {model!r}. Valid backbones: {names}")
        return options

    @staticmethod
    def _status_html(status: str) -> str:
        colors = {"finished": "green", "stopped": "#b35900", "failed": "red", "running": "#0060c0"}
        color = colors.get(status, "#444")
        return f"<b style='color:{color}'>{html.escape(status)}</b>"

    # -- state ---------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The launcher's state (see the class docstring)."""
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value
        self.status_label.value = self._status_html(value)

    @property
    def running(self) -> bool:
        """True while a run is in progress (its thread alive or starting)."""
        return self._thread is not None and self._thread.is_alive()

    def _say(self, text: str, level: str = "info") -> None:
        colors = {"info": "#333", "warning": "#b35900", "success": "green"}
        self.message_area.value = (
            f"<span style='color:{colors.get(level, '#333')};white-space:pre-wrap'>"
            f"{html.escape(text)}</span>"
        )

    def _report_error(self, title: str, exc: BaseException | str, tb: str = "") -> None:
        """Show an error in the error area (thread-safe; never raises)."""
        try:
            msg = exc if isinstance(exc, str) else _error_text(exc)
            if not tb and isinstance(exc, BaseException) and exc.__traceback__ is not None:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            with self._lock:
                self.error = f"{title}: {msg}"
                details = (
                    f"<details><summary>traceback</summary><pre style='font-size:11px'>"
                    f"{html.escape(tb)}</pre></details>"
                    if tb
                    else ""
                )
                self.error_area.value = (
                    "<div style='color:#a00;border:1px solid #a00;padding:4px 8px;"
                    f"background:#fff0f0'><b>{html.escape(title)}</b>: "
                    f"<span style='white-space:pre-wrap'>{html.escape(msg)}</span>{details}</div>"
                )
                self.error_area.layout.display = None
        except Exception:  # the error area itself failed: nowhere left to report
            pass

    def clear_error(self) -> None:
        """Empty the error area."""
        self.error = ""
        self.error_area.value = ""
        self.error_area.layout.display = "none"

    def _safely(self, title: str, fn: Callable[[], Any]) -> None:
        """Run a button handler, sending any exception to the error area."""
        try:
            fn()
        except Exception as exc:
            self._report_error(title, exc)

    # -- form ----------------------------------------------------------------------------------

    def train_arguments(self) -> dict[str, Any]:
        """The keyword arguments the next Start passes to ``wb.train`` (without callbacks).

        Raises:
            ValueError: A form field that cannot be used (names the field and what is expected).
        """
        args = {k: v for k, v in self.train_kwargs.items() if k not in _FIELDS_WITH_FORM}
        data = self.form_data()
        if not isinstance(data, (str, Path)) or not str(data).strip():
            if not data:
                raise ValueError("Data is empty: enter a dataset name (e.g. 'digits') or a folder.")
        else:
            self._check_data(str(data))
        method = str(self.method_dropdown.value)
        args.update(
            data=data,
            method=method,
            model=self.model_dropdown.value,
            epochs=int(self.epochs_input.value),
            batch_size=int(self.batch_size_input.value),
            input_size=self._parse_optional(self.input_size_input.value, "Input size", int),
            lr=self._parse_optional(self.lr_input.value, "Learning rate", float),
            accelerator=self.device_dropdown.value,
        )
        out = self.out_input.value.strip()
        if out:
            self._check_path(out, "Output folder")
            args["out"] = out
        else:
            from workbench.runs import new_run_dir

            root = self.runs_root_input.value.strip() or "runs"
            self._check_path(root, "Runs folder")
            args["out"] = str(new_run_dir(root, method))
        transform_args = self.transform_args()
        if transform_args is not None:
            args["transform_args"] = transform_args
        return args

    def _check_path(self, path: str, what: str) -> None:
        """Refuse a folder outside ``data_root`` (when the launcher has one)."""
        if self.data_root is not None:
            from workbench.app import check_inside

            check_inside(path, self.data_root, what)

    def _check_data(self, spec: str) -> None:
        """Load the form's data before a run is created (cached per spec).

        A bad folder or name is then reported here and no run folder is left behind.

        Raises:
            FileNotFoundError: A folder that does not exist.
            ValueError: An unknown name, a folder without images, or a path outside
                ``data_root``.
        """
        if self.data_root is not None:
            from workbench.app import check_data_spec

            check_data_spec(spec, self.data_root)
        if self._checked_data is not None and self._checked_data[0] == spec:
            return
        from workbench.data import load_dataset

        self._checked_data = (spec, load_dataset(spec))

    @staticmethod
    def _parse_optional(text: str, field: str, kind: type) -> Any:
        text = text.strip()
        if text.lower() in ("", "auto", "none"):
            return None
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(
                f"{field} {text!r} is not a valid {kind.__name__}; leave it blank for auto."
            ) from None
        if value <= 0:
            raise ValueError(f"{field} must be positive, got {text!r}; leave it blank for auto.")
        return value

    def _update_card(self) -> None:
        method = str(self.method_dropdown.value)
        card: dict[str, Any] | None = None
        try:
            from workbench.methods import describe_method

            card = dict(describe_method(method))
        except Exception:  # the card is a help text; a missing description must not break Start
            card = None
        hints: list[str] = []
        if card:
            model = self.model_dropdown.value
            hints = method_hints(
                method,
                card,
                batch_size=int(self.batch_size_input.value),
                epochs=int(self.epochs_input.value),
                model=model if isinstance(model, str) else None,
            )
        self.hints = hints
        self.card.value = method_card_html(method, card, hints)

    # -- augmentations -------------------------------------------------------------------------

    def open_augmentations(self) -> Any:
        """Open an AugmentationExplorer on the form's data and method; its settings go into runs.

        The explorer and the form share the method: changing it in either changes the other.
        The next Start passes the explorer's recipe overrides as ``transform_args`` (the form's
        input size stays in charge of the view size).

        Returns:
            The explorer, or None when the widget is not available (a message says why).
        """
        try:
            from workbench.widgets.augmentation import AugmentationExplorer
        except ImportError as exc:
            self._say(f"The augmentation explorer is not available: {exc}", "warning")
            return None
        from workbench.augment.recipes import training_input_size

        method = str(self.method_dropdown.value)
        data = self.form_data() or "digits"
        if isinstance(data, (str, Path)):
            self._check_data(str(data))
            assert self._checked_data is not None
            data = self._checked_data[1]
        size = self._parse_optional(self.input_size_input.value, "Input size", int)
        native = (getattr(data, "meta", None) or {}).get("image_size")
        # preview at the size Start trains at (small-image recipe included)
        size = training_input_size(size, native, str(self.device_dropdown.value))
        explorer = AugmentationExplorer(data=data, method=method, input_size=size)
        self._explorer = explorer
        dropdown = getattr(explorer, "method_dropdown", None)
        if dropdown is not None:
            dropdown.observe(self._on_explorer_method, "value")
        close = widgets.Button(
            description="Close augmentations", icon="times", layout=button_layout()
        )
        close.on_click(lambda _: self._close_explorer())
        note = widgets.HTML(
            "Augmentation settings: the next Start uses them (with the form's input size)."
        )
        self.augment_area.children = [widgets.HBox([note, close]), explorer]
        return explorer

    def form_data(self) -> Any:
        """The data the form points at: the ImageDataset given to the constructor, or the text."""
        text = self.data_text.value.strip()
        if self._data_obj is not None and text == self._data_label():
            return self._data_obj
        return text

    def _close_explorer(self) -> None:
        """Hide the explorer; its settings still go into the next run (same method)."""
        self.augment_area.children = []

    def _explorer_method(self) -> str | None:
        recipe = getattr(self._explorer, "recipe", None)
        method = getattr(recipe, "method", None)
        return None if method is None else str(method)

    def _on_explorer_method(self, change: Mapping[str, Any]) -> None:
        if change["new"] in self.method_dropdown.options:
            self.method_dropdown.value = change["new"]

    def _on_method_change(self, change: Mapping[str, Any]) -> None:
        explorer = self._explorer
        if explorer is None:
            return
        dropdown = getattr(explorer, "method_dropdown", None)
        if dropdown is not None and change["new"] in dropdown.options:
            dropdown.value = change["new"]  # the explorer shows the new method's defaults
            return
        if self._explorer_method() != change["new"]:
            self._explorer = None
            self._close_explorer()
            self._say(
                f"Augmentation settings dropped: they were for {change['old']}, the method is now "
                f"{change['new']}.",
                "warning",
            )

    def transform_args(self) -> dict[str, Any] | None:
        """Recipe overrides for the run: the explorer's settings over ``transform_args``."""
        base = self.train_kwargs.get("transform_args")
        explorer = self._explorer
        if explorer is None or self._explorer_method() != self.method_dropdown.value:
            return base
        if callable(getattr(explorer, "overrides", None)):
            overrides = dict(explorer.overrides())
        else:
            overrides = dict(explorer.recipe.overrides())
        overrides.pop("input_size", None)  # the form's input size decides
        if isinstance(base, Mapping):
            return {**base, **overrides}
        return overrides or base

    # -- run -----------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start ``wb.train`` with the form's settings in a background thread; returns at once.

        Returns:
            True when a run was started; False when refused (a run is in progress, or the form
            has an invalid value: the message or error area says why).
        """
        with self._lock:
            if self.running:
                self._say(
                    "A run is already in progress: press Stop (or wait for it to end) before "
                    "starting another.",
                    "warning",
                )
                return False
            self.clear_error()
            self._reset_view()
            try:
                kwargs = self.train_arguments()
            except (ValueError, OSError) as exc:  # nothing was created: the form says why
                self._report_error("Cannot start", exc)
                return False
            self._token += 1
            token = self._token
            self._epochs_total = int(kwargs["epochs"])
            self._stop_flag.clear()
            self._paint_stop.clear()
            self.progress_label.value = "starting..."
            self._say(f"Run folder: {kwargs['out']}")
            self.status = "starting"
            self.start_button.disabled = True
            self.stop_button.disabled = False
            callback = _LauncherCallback(self, token)
            self._painter = threading.Thread(
                target=self._paint_loop, name="workbench-painter", daemon=True
            )
            self._thread = threading.Thread(
                target=self._train_worker,
                args=(kwargs, callback, token),
                name="workbench-train",
                daemon=True,
            )
            self._painter.start()
            self._thread.start()
        return True

    def _reset_view(self) -> None:
        """Forget the previous run's state: status, progress, messages, curves (every Start)."""
        self.run = None
        self.history, self.steps, self.events = [], [], []
        self.last_plot_data, self.last_figure = {}, None
        self.plot.value = b""  # the previous run's curves must not pass for this one's
        self.plot.layout.display = "none"  # no broken-image icon before the first redraw
        self.redraw_times = []
        self._run_config = {}
        self._dirty = False
        self.progress.value, self.progress.max, self.progress.bar_style = 0, 1, ""
        self.progress_label.value = ""
        self.message_area.value = ""
        self.status = "idle"

    def stop(self) -> None:
        """Ask the run to stop; it ends within one batch with a checkpoint (status "stopped")."""
        if not self.running:
            self._say("No run in progress.")
            return
        self._stop_flag.set()
        self.stop_button.disabled = True
        self.status = "stopping"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run (and its final redraw) is over.

        In JupyterLab the Stop button still works while a cell blocks here: its messages are
        handled in a kernel subshell (:func:`handle_in_subshell`).

        Returns:
            True when no run is in progress any more, False on timeout.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _train_worker(
        self, kwargs: dict[str, Any], callback: _LauncherCallback, token: int
    ) -> None:
        status = "failed"
        try:
            import torch

            # Grad mode and autocast are thread-local: set what training needs here.
            torch.set_grad_enabled(True)
            from workbench.training import train

            if self._status == "starting":  # not if Stop was pressed meanwhile
                self.status = "running"
            run = train(**kwargs, callbacks=[callback])
            if token == self._token:
                self.run = run
            status = getattr(run, "status", "finished") or "finished"
            if status == "failed":
                events = list(getattr(run, "events", []) or []) + self.events
                bad = [e for e in events if e.get("kind") in ("nan", "error")]
                why = bad[-1].get("message", "") if bad else "see train.log in the run folder"
                self._report_error("Run failed", str(why))
        except BaseException as exc:  # shown to the user; the thread ends here
            status = "failed"
            self._report_error("Run failed", exc)
        finally:
            self._finish(status)

    def _finish(self, status: str) -> None:
        self._paint_stop.set()
        painter = self._painter
        if painter is not None and painter is not threading.current_thread():
            painter.join()
        try:
            self._redraw()
        except Exception as exc:
            self._report_error("Error drawing the final figure", exc)
        if status == "finished":
            self.progress.value = self.progress.max
            self.progress.bar_style = "success"
        elif status == "failed":
            self.progress.bar_style = "danger"
        else:
            self.progress.bar_style = "warning"
        if self.steps:  # where it ended; no ETA once it is over
            _, _, label = progress_text(self.steps[-1], self._epochs_total, eta=False)
            self.progress_label.value = html.escape(f"{status} at {label}")
        elif self.progress_label.value in ("starting...", "preparing the first batch..."):
            self.progress_label.value = html.escape(f"{status} before the first batch")
        if self.run is not None and getattr(self.run, "out", None) is not None:
            if status == "stopped":
                self._say(stopped_text(self.run, self._epochs_total, self.history), "warning")
            else:
                self._say(
                    f"Run {status}: {self.run.out}", "success" if status == "finished" else "info"
                )
        try:
            self.refresh_runs()
        except Exception as exc:
            self._report_error("Could not list the runs", exc)
        self.status = status
        self.start_button.disabled = False
        self.stop_button.disabled = True

    # -- callbacks (training thread) -----------------------------------------------------------

    def _on_start(self, token: int, run: Any) -> None:
        if token != self._token:
            return
        self.run = run
        self.progress_label.value = "preparing the first batch..."
        self._run_config = dict(getattr(run, "config", None) or {})
        if self._run_config.get("epochs"):
            self._epochs_total = int(self._run_config["epochs"])

    def _on_end(self, token: int, run: Any) -> None:
        if token == self._token:
            self.run = run

    def _on_step(self, token: int, record: dict[str, Any]) -> None:
        if token != self._token:
            return
        self.steps.append(dict(record))
        self._dirty = True
        now = time.monotonic()
        if now - self._last_progress >= 0.1:  # progress trait updates at most 10 per second
            self._last_progress = now
            value, maximum, label = progress_text(record, self._epochs_total)
            self.progress.max = maximum
            self.progress.value = min(value, maximum)
            self.progress_label.value = html.escape(label)

    def _on_epoch(self, token: int, record: dict[str, Any]) -> None:
        if token != self._token:
            return
        self.history.append(dict(record))
        self._dirty = True

    def _on_event(self, token: int, event: dict[str, Any]) -> None:
        if token != self._token:
            return
        self.events.append(dict(event))
        kind, message = event.get("kind", "event"), str(event.get("message", ""))
        if kind in ("collapse", "batch_size_reduced", "skipped_files"):
            self._say(f"{kind}: {message}", "warning")
        elif kind == "hint":
            self._say(f"hint: {message}")
        elif kind in ("nan", "error"):
            self._report_error(f"Run error ({kind})", message)

    # -- live figure ---------------------------------------------------------------------------

    def _paint_loop(self) -> None:
        wait = self.redraw_interval
        while not self._paint_stop.wait(wait):
            if not self._dirty:
                continue
            t0 = time.perf_counter()
            try:
                self._redraw()
            except Exception as exc:
                self._report_error("Error drawing the live figure", exc)
                return
            # A redraw costs ~0.1-0.4 s of CPU: keep the painter under ~1/4 of a core so the
            # live view never slows the training much on a small machine.
            wait = max(self.redraw_interval, 3.0 * (time.perf_counter() - t0))

    def _redraw(self) -> None:
        """Draw the current records into the live image (called by the painter, then at the end)."""
        with self._paint_lock:
            self._dirty = False
            history, steps = list(self.history), list(self.steps)
            if not history and not steps:
                return
            from workbench.plots.common import figure_to_png
            from workbench.plots.training import figure_line_data, training_curves

            name = getattr(self.run, "name", None)
            live = SimpleNamespace(
                history=complete_epochs(history), steps=steps, config=self._run_config, name=name
            )
            method = self._run_config.get("method") or self.method_dropdown.value
            title = f"{method} · {name}" if name else str(method)
            fig = training_curves(live, title=title)
            self.last_figure = fig
            self.last_plot_data = figure_line_data(fig)
            self.plot.value = figure_to_png(fig, close=False)
            self.plot.layout.display = None
            self.redraw_times.append(time.monotonic())

    # -- runs browser --------------------------------------------------------------------------

    def refresh_runs(self) -> list[Any]:
        """List the runs under the runs folder (newest first) into the browser."""
        from workbench.runs import list_runs

        root = self.runs_root_input.value.strip() or "runs"
        self._check_path(root, "Runs folder")
        runs = list_runs(root)
        selected = {getattr(self._runs[i], "out", None) for i in self.runs_select.value}
        self._runs = runs
        options = [(run_label(r.summary()), i) for i, r in enumerate(runs)]
        self.runs_select.options = options
        self.runs_select.value = tuple(i for i, r in enumerate(runs) if r.out in selected)
        return runs

    @property
    def selected_runs(self) -> list[Any]:
        """The runs selected in the browser."""
        return [self._runs[i] for i in self.runs_select.value if i < len(self._runs)]

    def show_overlay(self) -> Any:
        """Overlay the loss, std and kNN curves of the selected runs; returns the Figure."""
        runs = self.selected_runs
        if not runs:
            self.overlay_plot.value = b""
            self.overlay_plot.layout.display = "none"
            return None
        from workbench.plots.common import figure_to_png
        from workbench.plots.training import figure_line_data, training_curves

        fig = training_curves([_plotted(r) for r in runs], title=f"{len(runs)} run(s)")
        self.overlay_data = figure_line_data(fig)
        self.overlay_plot.value = figure_to_png(fig, close=False)
        self.overlay_plot.layout.display = None
        return fig

    def open_embeddings(self) -> Any:
        """Open the EmbeddingExplorer on the first selected run (when that widget exists)."""
        runs = self.selected_runs or ([self.run] if self.run is not None else [])
        if not runs:
            self._say("Select a run in the list first.", "warning")
            return None
        try:
            from workbench.widgets.embeddings import EmbeddingExplorer
        except ImportError as exc:
            self._say(f"The embedding explorer is not available: {exc}", "warning")
            return None
        run = runs[0]
        data = (getattr(run, "config", None) or {}).get("data")
        if self._data_obj is not None and data == getattr(self._data_obj, "name", None):
            data = self._data_obj  # the run was trained on the ImageDataset given to the widget
        data = data or self.form_data()
        explorer = EmbeddingExplorer(run, data=data)
        self.embeddings_area.children = [explorer]
        self.runs_browser.selected_index = 0
        return explorer
