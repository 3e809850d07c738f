"""Training curves: loss next to the representation std (the collapse monitor) and kNN accuracy.

Records in, matplotlib Figure out. The same figure serves the live panel of the
``TrainingLauncher`` widget (fed with the records its callbacks receive), a finished run folder
(``training_curves(wb.load_run(out))``) and an overlay of several runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# A std below this fraction of 1/sqrt(d) counts as collapsed (all rows point the same way).
COLLAPSE_FRACTION = 0.1
REFERENCE_LABEL = "healthy ~ 1/sqrt(d)"
COLLAPSE_LABEL = "collapse (< 10% of 1/sqrt(d))"


@dataclass
class _Series:
    """The records of one run, split by kind."""

    name: str | None
    history: list[Mapping[str, Any]] = field(default_factory=list)  # per-epoch records
    steps: list[Mapping[str, Any]] = field(default_factory=list)  # per-step records


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
    return _Series(
        name=None if name is None else str(name),
        history=history,
        steps=steps,
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


def _xy(
    records: Sequence[Mapping[str, Any]],
    x_of: Callable[[Mapping[str, Any], int], float],
    y_key: str,
) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for i, rec in enumerate(records):
        if y_key not in rec:
            continue
        x = x_of(rec, i)
        if math.isfinite(x):
            xs.append(x)
            ys.append(_num(rec.get(y_key)))
    return xs, ys


def _by_key(key: str) -> Callable[[Mapping[str, Any], int], float]:
    return lambda rec, i: _num(rec[key]) if rec.get(key) is not None else float(i)


def _epochs_done(rec: Mapping[str, Any], i: int) -> float:
    """The x of an epoch record: epochs completed (records count epochs from 0)."""
    return _num(rec["epoch"]) + 1 if rec.get("epoch") is not None else float(i + 1)


def _epoch_fraction(rec: Mapping[str, Any], i: int) -> float:
    """The x of a step record on the epoch axis: epoch + (batch + 1) / batches_per_epoch."""
    epoch, batch, per = rec.get("epoch"), rec.get("batch"), rec.get("batches_per_epoch")
    if epoch is None or batch is None or not per:
        return math.nan
    return _num(epoch) + (_num(batch) + 1) / _num(per)


def _reference(s: _Series) -> float | None:
    """1/sqrt(d) from the latest epoch record, else from a step record (before epoch 1)."""
    for rec in [*reversed(s.history), *reversed(s.steps)]:
        ref = _num(rec.get("rep_std_ref"))
        if math.isfinite(ref) and ref > 0:
            return ref
    return None


def _last_finite(values: Sequence[float]) -> float | None:
    for v in reversed(values):
        if math.isfinite(v):
            return v
    return None


def training_curves(
    history_or_runs: Any,
    steps: Sequence[Mapping[str, Any]] | None = None,
    title: str | None = None,
    show_knn: bool = True,
    panel_size: tuple[float, float] = (4.2, 3.6),
) -> Any:
    """Loss (left) next to representation std (right) and kNN accuracy per epoch.

    The std panel is the collapse monitor of SimSiam [0]: the mean per-dimension std of
    L2-normalised outputs (``rep_std``; the training engine records the head output the loss
    sees) is about ``1/sqrt(d)`` (``rep_std_ref``) when the outputs spread over the sphere and
    falls to 0 when they collapse. The panel draws that reference, shades the collapse
    zone (below 10% of it) and writes a warning when the latest value lies inside it.

    - [0]: SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        history_or_runs: A list of epoch records (dicts with ``epoch``, ``loss``, ``rep_std``,
            ``rep_std_ref``, ``knn_acc``, ...; step records with ``type="step"`` may be mixed
            in), a Run (anything with ``.history``, optionally ``.steps``, ``.config``,
            ``.name``), or a list of Runs to overlay (one colour per run, legend by run name).
        steps: Per-step records (``step``, ``loss``) for a single run; drawn as a faint line
            under the per-epoch loss. Defaults to the run's ``.steps``.
        title: Figure title.
        show_knn: Add the kNN accuracy panel when any epoch has a ``knn_acc`` value.
        panel_size: (width, height) of one panel in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot) with 2 or 3 axes: loss,
        representation std and, when there are kNN values, kNN accuracy. Partial data (one
        step, no epoch yet) gives the same panels with what there is.

    Raises:
        ValueError: An input that is neither records, a Run nor a list of Runs.
    """
    from workbench.plots.common import new_figure

    series = _to_series(history_or_runs, steps)
    overlay = len(series) > 1
    has_knn = show_knn and any(
        math.isfinite(_num(rec.get("knn_acc"))) for s in series for rec in s.history
    )
    n_panels = 3 if has_knn else 2
    fig = new_figure(panel_size[0] * n_panels, panel_size[1])
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    ax_loss, ax_std = axes[0], axes[1]
    colors = [f"C{i % 10}" for i in range(len(series))]

    # Loss: per-step (faint) and per-epoch (solid), both against the optimizer step when known.
    by_step = any(s.steps for s in series) or any("step" in r for s in series for r in s.history)
    x_label = "step" if by_step else "epoch"
    x_epoch = _by_key("step") if by_step else _epochs_done
    for s, color in zip(series, colors):
        prefix = f"{s.name} " if overlay and s.name else ""
        if s.steps:
            xs, ys = _xy(s.steps, _by_key("step"), "loss")
            ax_loss.plot(
                xs,
                ys,
                color=color,
                alpha=0.35,
                lw=1,
                marker="." if len(xs) < 3 else None,
                label=f"{prefix}loss per step",
            )
        xs, ys = _xy(s.history, x_epoch, "loss")
        if xs:
            ax_loss.plot(
                xs, ys, color=color, lw=2, marker="o", ms=4, label=f"{prefix}loss per epoch"
            )
    ax_loss.set_xlabel(x_label)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Training loss")

    # Representation std with the healthy reference and the collapse zone.
    refs: list[tuple[float, str, str | None]] = []  # (ref, colour, run name)
    warnings: list[str] = []
    for s, color in zip(series, colors):
        if not overlay and s.steps:  # live view: the training batches' std before epoch ends
            sx, sy = _xy(s.steps, _epoch_fraction, "rep_std")
            if sx:
                ax_std.plot(
                    sx,
                    sy,
                    color=color,
                    alpha=0.35,
                    lw=1,
                    marker="." if len(sx) < 3 else None,
                    label="rep std per step",
                )
        xs, ys = _xy(s.history, _epochs_done, "rep_std")
        label = s.name if overlay and s.name else "rep std per epoch"
        if xs:
            ax_std.plot(xs, ys, color=color, lw=2, marker="o", ms=4, label=label)
        elif not overlay and s.steps:
            ys = _xy(s.steps, _epoch_fraction, "rep_std")[1]
        ref = _reference(s)
        if ref is not None:
            refs.append((ref, color, s.name))
            last = _last_finite(ys)
            if last is not None and last < COLLAPSE_FRACTION * ref:
                who = f"{s.name}: " if overlay and s.name else ""
                warnings.append(
                    f"{who}COLLAPSE? std {last:.2g}\nbelow 10% of 1/sqrt(d) = {ref:.2g}"
                )
    distinct = sorted({round(r, 12) for r, _, _ in refs})
    for i, ref in enumerate(distinct):
        one = len(distinct) == 1
        color = "black" if one else next(c for r, c, _ in refs if round(r, 12) == ref)
        dim = round(1.0 / ref**2)
        ax_std.axhline(
            ref, color=color, ls="--", lw=1.2, label=f"{REFERENCE_LABEL} = {ref:.3g} (d={dim})"
        )
        # Name the line on the plot too, so a screenshot without the legend still reads.
        ax_std.annotate(
            f"{REFERENCE_LABEL}" + ("" if one else f" (d={dim})"),
            xy=(0.01, ref),
            xycoords=("axes fraction", "data"),
            xytext=(0, 2),
            textcoords="offset points",
            va="bottom",
            fontsize=7,
            color=color,
        )
        ax_std.axhspan(
            0,
            COLLAPSE_FRACTION * ref,
            color="red",
            alpha=0.15,
            lw=0,
            label=COLLAPSE_LABEL if i == 0 else None,
        )
    if refs:
        ax_std.set_ylim(bottom=0, top=max(ax_std.get_ylim()[1], 1.4 * max(distinct)))
        ax_std.annotate(
            "collapse",
            xy=(0.99, COLLAPSE_FRACTION * min(distinct)),
            xycoords=("axes fraction", "data"),
            xytext=(0, -1),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=7,
            color="red",
        )
    if not any(s.history for s in series) and not ax_std.get_lines():
        ax_std.text(
            0.5,
            0.55,
            "waiting for the first epoch",
            transform=ax_std.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    if warnings:
        ax_std.text(
            0.5,
            0.62,
            "\n".join(warnings),
            transform=ax_std.transAxes,
            ha="center",
            va="center",
            color="white",
            fontsize=8,
            fontweight="bold",
            bbox={"boxstyle": "round", "facecolor": "red", "alpha": 0.85},
        )
    ax_std.set_xlabel("epoch")
    ax_std.set_ylabel("std of L2-normalised outputs")
    ax_std.set_title("Representation std (collapse monitor)")

    if has_knn:
        ax_knn = axes[2]
        for s, color in zip(series, colors):
            xs, ys = _xy(s.history, _epochs_done, "knn_acc")
            if any(math.isfinite(y) for y in ys):
                label = s.name if overlay and s.name else "kNN accuracy"
                ax_knn.plot(xs, ys, color=color, lw=2, marker="o", ms=4, label=label)
        ax_knn.set_ylim(0, 1)
        ax_knn.set_xlabel("epoch")
        ax_knn.set_ylabel("accuracy (validation split)")
        ax_knn.set_title("kNN accuracy")

    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            # Below the panel: the curves and the reference line stay uncovered.
            ax.legend(
                fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False
            )
    if title:
        fig.suptitle(title)
    return fig


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
