import math
from types import SimpleNamespace

import pytest

from workbench.plots.common import figure_to_png
from workbench.plots.training import (
    COLLAPSE_LABEL,
    REFERENCE_LABEL,
    figure_line_data,
    training_curves,
)

REF = 1 / math.sqrt(512)
LOSS, STD, KNN = "Training loss", "Representation std (collapse monitor)", "kNN accuracy"


def _records(n_epochs=3, steps_per_epoch=4, std=0.03, knn=True):
    steps = [
        {"type": "step", "step": i, "epoch": i // steps_per_epoch, "loss": 5.0 - 0.1 * i}
        for i in range(n_epochs * steps_per_epoch)
    ]
    history = [
        {
            "type": "epoch",
            "epoch": e,
            "step": (e + 1) * steps_per_epoch - 1,
            "loss": 5.0 - e,
            "rep_std": std,
            "rep_std_ref": REF,
            "knn_acc": 0.5 + 0.1 * e if knn else None,
        }
        for e in range(n_epochs)
    ]
    return history, steps


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_history_and_steps_give_three_labelled_panels():
    history, steps = _records()
    fig = training_curves(history, steps=steps, title="t")
    assert [ax.get_title() for ax in fig.axes] == [LOSS, STD, KNN]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    data = figure_line_data(fig)
    assert data[LOSS]["loss per step"][1] == [s["loss"] for s in steps]
    assert data[LOSS]["loss per epoch"] == ([3.0, 7.0, 11.0], [5.0, 4.0, 3.0])
    assert data[STD]["rep std per epoch"][1] == [0.03] * 3
    ref_label = next(k for k in data[STD] if k.startswith(REFERENCE_LABEL))
    assert data[STD][ref_label][1] == pytest.approx([REF, REF])
    assert "d=512" in ref_label
    assert data[KNN]["kNN accuracy"][1] == pytest.approx([0.5, 0.6, 0.7])
    std_ax = fig.axes[1]
    assert COLLAPSE_LABEL in std_ax.get_legend_handles_labels()[1]
    assert not any("COLLAPSE" in t for t in _texts(fig))
    assert figure_to_png(fig)[:4] == b"\x89PNG"


def test_collapse_warning_when_last_std_below_ten_percent_of_reference():
    history, steps = _records(std=0.05 * REF)
    fig = training_curves(history, steps=steps)
    assert any("COLLAPSE" in t for t in _texts(fig))
    # Healthy at the end -> no warning even if it dipped earlier.
    history[-1]["rep_std"] = REF
    assert not any("COLLAPSE" in t for t in _texts(training_curves(history)))


def test_knn_panel_omitted_without_values_or_when_disabled():
    history, _ = _records(knn=False)
    assert len(training_curves(history).axes) == 2
    history, _ = _records()
    assert len(training_curves(history, show_knn=False).axes) == 2


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"type": "step", "step": 0, "epoch": 0, "loss": 4.2}],
        [{"type": "epoch", "epoch": 0, "loss": 3.0}],  # no std yet, no reference
        [{"type": "epoch", "epoch": 0, "loss": None, "rep_std": None, "knn_acc": None}],
        [{"type": "step", "step": 0, "loss": float("nan")}, {"type": "event", "kind": "nan"}],
    ],
)
def test_partial_data_draws_without_error(records):
    fig = training_curves(records)
    assert len(fig.axes) == 2
    figure_to_png(fig)


def test_run_like_object_takes_reference_from_steps_before_first_epoch():
    step = {"step": 1, "epoch": 0, "batch": 0, "batches_per_epoch": 4, "loss": 1.0}
    step |= {"rep_std": 0.1, "rep_std_ref": 64**-0.5}
    run = SimpleNamespace(name="r", history=[], steps=[step], config={})
    data = figure_line_data(training_curves(run))
    assert any(k.startswith(REFERENCE_LABEL) and "d=64" in k for k in data[STD])
    assert data[LOSS]["loss per step"] == ([1.0], [1.0])
    assert data[STD]["rep std per step"] == ([0.25], [0.1])  # epoch 0 + 1/4


def test_list_of_runs_overlays_one_colour_per_run_with_names():
    h1, s1 = _records()
    h2, _ = _records(std=0.001)
    for rec in h2:
        rec["rep_std_ref"] = 1 / math.sqrt(128)
    runs = [
        SimpleNamespace(name="a", history=h1, steps=s1, config={}),
        SimpleNamespace(name="b", history=h2, steps=[], config={}),
    ]
    fig = training_curves(runs)
    data = figure_line_data(fig)
    assert {"a", "b"} <= set(data[STD]) and {"a", "b"} <= set(data[KNN])
    assert {"a loss per epoch", "b loss per epoch", "a loss per step"} <= set(data[LOSS])
    colors = {line.get_label(): line.get_color() for line in fig.axes[1].get_lines()}
    assert colors["a"] != colors["b"]
    assert sum(k.startswith(REFERENCE_LABEL) for k in data[STD]) == 2  # d=512 and d=128
    assert any(t.startswith("b: COLLAPSE") for t in _texts(fig))


def test_bad_input_raises_clear_error():
    with pytest.raises(ValueError, match="epoch records, a Run or a list of Runs"):
        training_curves("runs/x")
    with pytest.raises(ValueError, match="dict records"):
        training_curves([1, 2])
