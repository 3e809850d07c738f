"""Training curves: loss and kNN accuracy next to the collapse signals, each against its level.

Records in, matplotlib Figure out. The same figure serves the live panel of the
``TrainingLauncher`` widget (fed with the records its callbacks receive), a finished run folder
(``training_curves(wb.load_run(out))``) and an overlay of several runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.eval.collapse import (
    KNN_CHANCE_MARGIN,
    ONE_DIM_ENTROPY,
    RANK_FLOOR,
    STD_FRACTION,
    UNIFORM_ENTROPY,
    findings,
    relative_signals,
)


@dataclass
class _Series:
    """The records of one run, split by kind."""

    name: str | None
    history: list[Mapping[str, Any]] = field(default_factory=list)  # per-epoch records
    steps: list[Mapping[str, Any]] = field(default_factory=list)  # per-step records
    method: str | None = None  # the run's SSL method, if known


def _is_run(obj: Any) -> bool:
    return hasattr(obj, "history") and not isinstance(obj, Mapping)


def _split_records(records: Iterable[Any]) -> tuple[list[Mapping[str, Any]], list[Any]]:
    """Separate epoch records from step records (``type`` key); untyped records are epochs."""
    history: list[Mapping[str, Any]] = []
    steps: list[Mapping[str, Any]] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise ValueError(
                f"training_curves expects dict records, got a {type(rec).__name__} at index {i}."
            )
        kind = rec.get("type", "epoch")
        if kind == "step":
            steps.append(rec)
        elif kind == "epoch":
            history.append(rec)
        # events and status records carry no curve
    return history, steps


def _series_from_run(run: Any) -> _Series:
    name = getattr(run, "name", None)
    if name is None and getattr(run, "out", None) is not None:
        name = str(getattr(run.out, "name", run.out))
    history, stray_steps = _split_records(getattr(run, "history", None) or [])
    steps = list(getattr(run, "steps", None) or []) or stray_steps
    config = getattr(run, "config", None)
    return _Series(
        name=None if name is None else str(name),
        history=history,
        steps=steps,
        method=config.get("method") if isinstance(config, Mapping) else None,
    )


def _to_series(history_or_runs: Any, steps: Sequence[Mapping[str, Any]] | None) -> list[_Series]:
    if _is_run(history_or_runs):
        series = [_series_from_run(history_or_runs)]
    elif isinstance(history_or_runs, (list, tuple)):
        items = list(history_or_runs)
        if items and all(_is_run(r) for r in items):
            series = [_series_from_run(r) for r in items]
        elif any(_is_run(r) for r in items):
            raise ValueError(
                "training_curves got a list mixing runs and records; pass a list of epoch "
                "records, one Run, or a list of Runs."
            )
        else:
            history, stray_steps = _split_records(items)
            series = [_Series(name=None, history=history, steps=stray_steps)]
    else:
        raise ValueError(
            "training_curves expects a list of epoch records, a Run or a list of Runs, got "
            f"{type(history_or_runs).__name__}."
        )
    if steps is not None:
        if len(series) != 1:
            raise ValueError("training_curves: `steps` can only be given with a single run.")
        _, only_steps = _split_records(steps)
        series[0].steps = only_steps or [s for s in steps if s.get("type", "step") == "step"]
    return series


def _num(value: Any) -> float:
    """A float for plotting; None and non-numbers become NaN (a gap in the line)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _epochs_done(rec: Mapping[str, Any], i: int) -> float:
    """The x of an epoch record: epochs completed (records count epochs from 0)."""
    return _num(rec["epoch"]) + 1 if rec.get("epoch") is not None else float(i + 1)


def _epoch_fraction(rec: Mapping[str, Any]) -> float:
    """The x of a step record on the epoch axis: epoch + (batch + 1) / batches_per_epoch."""
    epoch, batch, per = rec.get("epoch"), rec.get("batch"), rec.get("batches_per_epoch")
    if epoch is None or batch is None or not per:
        return math.nan
    return _num(epoch) + (_num(batch) + 1) / _num(per)


LOSS_TITLE = "Training loss"
KNN_TITLE = "kNN accuracy"
STD_TITLE = "Representation std (collapse monitor)"
RANK_TITLE = "Effective rank (RankMe)"
DINO_TITLE = "DINO teacher (collapse signals)"
HEALTHY_LABEL = "healthy level"
COLLAPSE_LABEL = "collapse zone"
RANDOM_INIT_LABEL = "random init"
WARMUP_LABEL = "LR warm-up"

# Point sizes. figure_to_png renders at 100 dpi, where 9 pt is 12.5 px: every text of the
# figure stays readable in a 100 % zoom screenshot of a widget.
FONTS: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
}
_SMALL = 9  # annotations


def _step_epochs(steps: Sequence[Mapping[str, Any]]) -> list[float]:
    """The x of each step record on the epoch axis: epoch + (batch + 1) / batches per epoch.

    Records without ``batch``/``batches_per_epoch`` are spread evenly over their epoch.
    """
    counts: dict[Any, int] = {}
    for rec in steps:
        counts[rec.get("epoch")] = counts.get(rec.get("epoch"), 0) + 1
    seen: dict[Any, int] = {}
    xs = []
    for rec in steps:
        x = _epoch_fraction(rec)
        if not math.isfinite(x) and rec.get("epoch") is not None:
            k = seen[rec["epoch"]] = seen.get(rec["epoch"], 0) + 1
            x = _num(rec["epoch"]) + k / counts[rec["epoch"]]
        xs.append(x)
    return xs


def _series_xy(
    records: Sequence[Mapping[str, Any]], xs: Sequence[float], value: Callable[[Any], Any]
) -> tuple[list[float], list[float]]:
    """(x, y) where the record has a finite x; y is NaN (a gap) where it has no value."""
    out_x, out_y = [], []
    for x, rec in zip(xs, records):
        if math.isfinite(x):
            out_x.append(x)
            out_y.append(_num(value(rec)))
    return out_x, out_y


def _epoch_xs(history: Sequence[Mapping[str, Any]]) -> list[float]:
    return [_epochs_done(rec, i) for i, rec in enumerate(history)]


def _rel(key: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda rec: relative_signals(rec)[key]


def _baseline(s: _Series, key: str) -> float | None:
    for rec in s.history:
        v = _num(rec.get(key))
        if math.isfinite(v):
            return v
    return None


def _warmup_end(s: _Series) -> float | None:
    """The epoch where the learning rate peaks after rising: the end of the warm-up."""
    xs, lrs = _series_xy(s.steps, _step_epochs(s.steps), lambda r: r.get("lr"))
    pts = [(x, y) for x, y in zip(xs, lrs) if math.isfinite(y)]
    if len(pts) < 2:
        return None
    i = max(range(len(pts)), key=lambda j: pts[j][1])
    return pts[i][0] if i > 0 and pts[i][1] > pts[0][1] else None


def _has(series: Sequence[_Series], value: Callable[[Any], Any]) -> bool:
    return any(math.isfinite(_num(value(rec))) for s in series for rec in s.history)


def training_curves(
    history_or_runs: Any,
    steps: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
    show_knn: bool = True,
    panel_size: tuple[float, float] = (3.3, 2.7),
) -> Any:
    """The training figure: loss and kNN next to the collapse signals, each against its level.

    Panels (those with data):

    - **Training loss** on the epoch axis: per step (faint) and per epoch, with the learning-rate
      warm-up shaded (the loss often rises there, while the learning rate grows).
    - **kNN accuracy** on held-out images, starting from ``knn_acc_init`` (the same backbone
      before step 1) at epoch 0, with that random-init baseline dashed.
    - **Representation std** (the collapse monitor of SimSiam [0]) against its healthy level,
      on a log axis: the projector output's std over ``1/sqrt(d)`` and the backbone's
      held-out std over its value before training. 1 is healthy; the red zone is collapse.
    - **Effective rank** (RankMe [1]) of the backbone's and projector's held-out features, as a
      fraction of the value before training.
    - **DINO teacher** (DINO runs): the teacher's per-image entropy as a fraction of log K
      (1: uniform output), the entropy of its batch-mean output (0: every image on one
      dimension) and the teacher-student KL, the paper's collapse signals [2].

    A box names what collapsed when a run's last epoch has a signal in its collapse zone
    (the zones and thresholds are those of ``workbench.eval.collapse``, which raises the
    events).

    - [0]: SimSiam, 2021, https://arxiv.org/abs/2011.10566
    - [1]: RankMe, ICML 2023, https://arxiv.org/abs/2210.02885
    - [2]: DINO, 2021, https://arxiv.org/abs/2104.14294 (Sec. 5.3, Fig. 7)

    Args:
        history_or_runs: A list of epoch records (dicts with ``epoch``, ``loss``, ``rep_std``,
            ``rep_std_ref``, ``knn_acc``, ...; step records with ``type="step"`` may be mixed
            in), a Run (anything with ``.history``, optionally ``.steps``, ``.name``), or a
            list of Runs to overlay (one colour per run, named in the figure's legend).
        steps: Per-step records (``step``, ``loss``, ``lr``) for a single run. Defaults to
            the run's ``.steps``.
        title: Figure title.
        show_knn: Add the kNN accuracy panel when any epoch has a kNN value.
        panel_size: (width, height) of one panel in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot). Partial data (one step, no
        epoch yet) gives the loss and std panels with what there is.

    Raises:
        ValueError: An input that is neither records, a Run nor a list of Runs.
    """
    import matplotlib as mpl

    from workbench.plots.common import new_figure

    series = _to_series(history_or_runs, steps)
    overlay = len(series) > 1
    panels = [LOSS_TITLE]
    if show_knn and _has(series, lambda r: r.get("knn_acc")):
        panels.append(KNN_TITLE)
    panels.append(STD_TITLE)
    if _has(series, _rel("rankme_backbone_frac")) or _has(series, _rel("rankme_projector_frac")):
        panels.append(RANK_TITLE)
    if _has(series, _rel("teacher_entropy_frac")):
        panels.append(DINO_TITLE)
    # Up to 3 panels in a row; 4 in a square; 5 with loss and kNN above the collapse panels
    # (the free slot holds an overlay's legend).
    slots = {4: [0, 1, 2, 3], 5: [0, 1, 3, 4, 5]}.get(len(panels), list(range(len(panels))))
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = math.ceil((max(slots) + 1) / ncols)
    legend_rows = 0.0 if not overlay or len(panels) == 5 else 0.3 * math.ceil(len(series) / 3)
    with mpl.rc_context(FONTS):  # type: ignore[arg-type]
        fig = new_figure(panel_size[0] * ncols, panel_size[1] * nrows + legend_rows)
        grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
        free = [ax for i, ax in enumerate(grid) if i not in slots]
        for ax in free:
            ax.axis("off")
        axes = dict(zip(panels, [grid[i] for i in slots]))
        colors = [f"C{i % 10}" for i in range(len(series))]
        _loss_panel(axes[LOSS_TITLE], series, colors, overlay)
        if KNN_TITLE in axes:
            _knn_panel(axes[KNN_TITLE], series, colors, overlay)
        _std_panel(axes[STD_TITLE], series, colors, overlay)
        if RANK_TITLE in axes:
            _rank_panel(axes[RANK_TITLE], series, colors, overlay)
        if DINO_TITLE in axes:
            _dino_panel(axes[DINO_TITLE], series, colors, overlay)
        for ax in axes.values():
            ax.grid(alpha=0.3)
            ax.set_xlabel("epoch")
            ax.set_xlim(left=0)
            # Below the panel, so that the curves and the zone labels stay uncovered: what each
            # line is (one run) or what each line style means (overlay; colours are the runs).
            handles = _style_key(ax) if overlay else ax.get_legend_handles_labels()[0]
            if handles:
                # one column: side by side, two entries are wider than a panel and run into the
                # neighbouring panel's key
                ax.legend(
                    handles=handles,
                    loc="upper center",
                    bbox_to_anchor=(0.5, -0.22),
                    ncol=1,
                    frameon=False,
                    handlelength=1.8,
                    columnspacing=1.0,
                )
        if overlay:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], color=c, lw=2.5, label=s.name or f"run {i + 1}")
                for i, (s, c) in enumerate(zip(series, colors))
            ]
            if free:
                free[0].legend(handles=handles, loc="center", frameon=False, title="runs")
            else:
                fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
        if not _collapse_warning(fig, series, overlay, title) and title:
            fig.suptitle(title)
    return fig


def _label(s: _Series, overlay: bool, what: str, primary: bool = True) -> str:
    """A line's label: what it is (one run), or the run's name (overlay; + what, if secondary)."""
    if not overlay:
        return what
    name = s.name or "run"
    return name if primary else f"{name} · {what}"


def _scaled_loss(s: _Series) -> Callable[[Any], Any]:
    """A record's loss as a fraction of its run's range (0: the run's lowest, 1: its highest)."""
    vals = [_num(r.get("loss")) for r in [*s.history, *s.steps]]
    vals = [v for v in vals if math.isfinite(v)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    return lambda r: None if r.get("loss") is None else (_num(r["loss"]) - lo) / (hi - lo or 1.0)


def _loss_panel(ax: Any, series: Sequence[_Series], colors: Sequence[str], overlay: bool) -> None:
    # Losses of different methods are on different scales (InfoNCE ~5, negative cosine ~-1,
    # Barlow Twins ~1000): overlaid, each run's curve is scaled to its own range.
    scaled = overlay and len({s.method for s in series}) > 1
    for s, color in zip(series, colors):
        loss = _scaled_loss(s) if scaled else (lambda r: r.get("loss"))
        if s.steps:
            xs, ys = _series_xy(s.steps, _step_epochs(s.steps), loss)
            ax.plot(
                xs,
                ys,
                color=color,
                alpha=0.35,
                lw=1,
                marker="." if len(xs) < 3 else None,
                label=_label(s, overlay, "per step", primary=False),
                gid="per step",
            )
        _epoch_lines(ax, [s], [color], overlay, [(loss, "per epoch", "-", True)])
    end = _warmup_end(series[0])
    if end is not None:
        ax.axvspan(0, end, color="0.5", alpha=0.15, lw=0, label=WARMUP_LABEL)
    ax.set_ylabel("loss, each run's range as 0-1" if scaled else "loss")
    ax.set_title(LOSS_TITLE)


def _knn_panel(ax: Any, series: Sequence[_Series], colors: Sequence[str], overlay: bool) -> None:
    for s, color in zip(series, colors):
        init = _baseline(s, "knn_acc_init")
        xs, ys = _series_xy(s.history, _epoch_xs(s.history), lambda r: r.get("knn_acc"))
        if init is not None:  # the curve starts where the run started: random init, epoch 0
            xs, ys = [0.0, *xs], [init, *ys]
            ax.axhline(
                init,
                color=color,
                ls="--",
                lw=1.2,
                label=_label(s, overlay, f"{RANDOM_INIT_LABEL} ({init:.2f})", False),
                gid=RANDOM_INIT_LABEL,
            )
        if any(math.isfinite(y) for y in ys):
            ax.plot(
                xs,
                ys,
                color=color,
                lw=2,
                marker="o",
                ms=4,
                label=_label(s, overlay, "trained"),
                gid="trained",
            )
    chance = [v for s in series if (v := _baseline(s, "knn_chance")) is not None]
    if chance:  # the collapse zone of the kNN signal: within a few points of guessing
        top = max(chance) + KNN_CHANCE_MARGIN
        ax.axhspan(0, top, color="red", alpha=0.12, lw=0)
        ax.annotate(
            "chance",
            xy=(0.99, top),
            xycoords=("axes fraction", "data"),
            xytext=(0, -1),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=_SMALL,
            color="red",
        )
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (held-out)")
    ax.set_title(KNN_TITLE)


def _levels(ax: Any, healthy: str, zone_top: float, zone: str) -> None:
    """The healthy level (dotted, at 1) and the collapse zone (red), named on the plot itself.

    The zone's name takes two lines (a panel is narrower than it), inside the zone where the
    zone is tall enough to hold them, else just above its top.
    """
    ax.axhline(1.0, color="black", ls=":", lw=1.2)
    ax.axhspan(ax.get_ylim()[0], zone_top, color="red", alpha=0.12, lw=0)
    top = ax.transAxes.inverted().transform(ax.transData.transform((0.0, zone_top)))[1]
    for y, text, color, va, x, ha in (
        (1.0, healthy, "black", "bottom", 0.01, "left"),
        (zone_top, zone.replace(" (", "\n("), "red", "top" if top > 0.15 else "bottom", 0.99,
         "right"),
    ):  # fmt: skip
        ax.annotate(
            text,
            xy=(x, y),
            xycoords=("axes fraction", "data"),
            xytext=(0, 1 if va == "bottom" else -1),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=_SMALL,
            color=color,
        )


def _plain_log_ticks(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _epoch_lines(
    ax: Any,
    series: Sequence[_Series],
    colors: Sequence[str],
    overlay: bool,
    specs: Sequence[tuple[Callable[[Any], Any], str, str, bool]],
) -> list[float]:
    """One line per (run, signal) on the epoch axis; returns every value drawn.

    Args:
        ax: The panel.
        series: The runs.
        colors: One colour per run.
        overlay: Several runs (the labels name the run).
        specs: (value of a record, what it is, line style, primary?) per signal.
    """
    values: list[float] = []
    for s, color in zip(series, colors):
        ex = _epoch_xs(s.history)
        for value, what, ls, primary in specs:
            xs, ys = _series_xy(s.history, ex, value)
            if any(math.isfinite(y) for y in ys):
                ax.plot(xs, ys, color=color, lw=2, ls=ls, marker="o", ms=4,
                        label=_label(s, overlay, what, primary), gid=what)  # fmt: skip
                values += [y for y in ys if math.isfinite(y)]
    return values


def _std_panel(ax: Any, series: Sequence[_Series], colors: Sequence[str], overlay: bool) -> None:
    ax.set_yscale("log")
    values: list[float] = []
    for s, color in zip(series, colors):
        if not overlay and s.steps:  # live view: the training batches' std before epoch ends
            xs, ys = _series_xy(s.steps, _step_epochs(s.steps), _rel("rep_std_rel"))
            if xs:
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    alpha=0.35,
                    lw=1,
                    marker="." if len(xs) < 3 else None,
                    label="projector, per step",
                )
                values += ys
    values += _epoch_lines(ax, series, colors, overlay, [
        (_rel("rep_std_rel"), "projector / 1/sqrt(d)", "-", True),
        (_rel("rep_std_backbone_rel"), "backbone / before training", "--", False),
    ])  # fmt: skip
    finite = [v for v in values if math.isfinite(v) and v > 0]
    lo = min([STD_FRACTION / 3, *(v / 2 for v in finite)])
    hi = max([3.0, *(v * 2 for v in finite)])
    ax.set_ylim(lo, hi)
    _plain_log_ticks(ax)
    _levels(ax, HEALTHY_LABEL, STD_FRACTION, f"{COLLAPSE_LABEL} (backbone < {STD_FRACTION:.0%})")
    if not any(s.history for s in series) and not finite:
        ax.text(
            0.5,
            0.55,
            "waiting for the first epoch",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    ax.set_ylabel("std / healthy level")
    ax.set_title(STD_TITLE)


def _rank_panel(ax: Any, series: Sequence[_Series], colors: Sequence[str], overlay: bool) -> None:
    values = _epoch_lines(ax, series, colors, overlay, [
        (_rel("rankme_projector_frac"), "projector", "-", True),
        (_rel("rankme_backbone_frac"), "backbone", "--", False),
    ])  # fmt: skip
    top = max([1.5, *(1.15 * v for v in values)])
    ax.set_ylim(0, top)
    # The backbone's zone is an absolute rank (RANK_FLOOR directions): on this axis, a fraction
    # of each run's own start; shaded up to the highest of them.
    inits = [v for s in series if (v := _baseline(s, "rankme_backbone_init")) and v > 0]
    zone = max((RANK_FLOOR / v for v in inits), default=0.0)
    _levels(ax, "before training", zone, f"{COLLAPSE_LABEL} (backbone < {RANK_FLOOR:g} dims)")
    ax.set_ylabel("rank / rank before training")
    ax.set_title(RANK_TITLE)


def _dino_panel(ax: Any, series: Sequence[_Series], colors: Sequence[str], overlay: bool) -> None:
    values = _epoch_lines(ax, series, colors, overlay, [
        (_rel("teacher_entropy_frac"), "entropy / log K", "-", True),
        (_rel("teacher_batch_entropy_frac"), "batch-mean entropy / log K", "--", False),
        (lambda r: r.get("teacher_student_kl"), "teacher-student KL (nats)", ":", False),
    ])  # fmt: skip
    top = max([1.05, *(1.1 * v for v in values)])
    ax.set_ylim(0, top)
    ax.axhspan(UNIFORM_ENTROPY, top, color="red", alpha=0.12, lw=0)
    ax.axhspan(0, ONE_DIM_ENTROPY, color="red", alpha=0.12, lw=0)
    for y, text, va in ((top, "uniform (entropy)", "top"), (0, "one dimension (batch)", "bottom")):
        ax.annotate(
            text,
            xy=(0.99, y),
            xycoords=("axes fraction", "data"),
            ha="right",
            va=va,
            fontsize=_SMALL,
            color="red",
        )
    ax.set_ylabel("fraction of log K / nats")
    ax.set_title(DINO_TITLE)


def _style_key(ax: Any) -> list[Any]:
    """An overlay panel's key to its line styles, in grey (the colours are the runs).

    Returns:
        Legend handles; none when the panel draws one style only.
    """
    from matplotlib.lines import Line2D

    seen: dict[str, Line2D] = {}
    for line in ax.get_lines():
        what = line.get_gid()
        if what and what not in seen:
            style = {
                "lw": line.get_linewidth(),
                "alpha": line.get_alpha(),
                "ls": line.get_linestyle(),
            }
            seen[what] = Line2D([], [], color="0.35", label=what, **style)
    return list(seen.values()) if len(seen) > 1 else []


def _collapse_warning(
    fig: Any, series: Sequence[_Series], overlay: bool, title: str | None
) -> bool:
    """Under the title, in red: what collapsed, for each run whose last full epoch is in a zone.

    Returns:
        True when there is a warning (it carries the figure's title then).
    """
    from matplotlib.patches import Patch

    lines = []
    for s in series:
        full = [r for r in s.history if not r.get("partial")]
        found = findings(full[-1]) if full else []
        if found:
            who = f"{s.name}: " if overlay and s.name else ""
            labels = ", ".join(dict.fromkeys(f.label for f in found))
            lines.append(f"{who}COLLAPSE: {labels}")
    if lines:
        fig.legend(
            handles=[Patch(facecolor="red", alpha=0.85) for _ in lines],
            labels=lines,
            loc="outside upper center",
            labelcolor="red",
            frameon=False,
            prop={"weight": "bold", "size": 10},
            title=title,
            title_fontproperties={"size": 12},
        )
    return bool(lines)


def figure_line_data(fig: Any) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """The plotted lines of a figure: ``{axes title: {line label: (x, y)}}``.

    For tests and for widgets that expose what they drew. Unlabelled lines are skipped.
    """
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for ax in fig.axes:
        lines: dict[str, tuple[list[float], list[float]]] = {}
        for line in ax.get_lines():
            label = str(line.get_label())
            if label.startswith("_"):
                continue
            xs = [float(v) for v in line.get_xdata()]  # type: ignore[union-attr]
            ys = [float(v) for v in line.get_ydata()]  # type: ignore[union-attr]
            lines[label] = (xs, ys)
        out[ax.get_title()] = lines
    return out
