import math
from types import SimpleNamespace

import pytest

from workbench.eval.collapse import RANK_FLOOR, STD_FRACTION
from workbench.plots.common import figure_to_png
from workbench.plots.training import (
    DINO_TITLE,
    KNN_TITLE,
    LOSS_TITLE,
    RANK_TITLE,
    STD_TITLE,
    WARMUP_LABEL,
    figure_line_data,
    training_curves,
)

REF = 1 / math.sqrt(512)


def _records(n_epochs=3, steps_per_epoch=4, std=0.03, knn=True, signals=False, dino=False):
    steps = [
        {"type": "step", "step": i, "epoch": i // steps_per_epoch, "loss": 5.0 - 0.1 * i,
         "lr": min(1.0, (i + 1) / steps_per_epoch) * (1 - i / (n_epochs * steps_per_epoch))}
        for i in range(n_epochs * steps_per_epoch)
    ]  # fmt: skip
    history = []
    for e in range(n_epochs):
        rec = {"type": "epoch", "epoch": e, "step": (e + 1) * steps_per_epoch - 1,
               "loss": 5.0 - e, "rep_std": std, "rep_std_ref": REF,
               "knn_acc": 0.5 + 0.1 * e if knn else None}  # fmt: skip
        if signals:
            rec |= {"rep_std_backbone": 0.02, "rep_std_backbone_init": 0.01, "knn_acc_init": 0.3,
                    "rankme_backbone": 8.0, "rankme_backbone_init": 4.0,
                    "rankme_projector": 6.0, "rankme_projector_init": 3.0}  # fmt: skip
        if dino:
            rec |= {
                "teacher_entropy": 3.0,
                "teacher_entropy_max": 6.0,
                "teacher_student_kl": 0.4,
                "teacher_batch_entropy": 4.5,
            }
        history.append(rec)
    return history, steps


def _texts(fig):
    """The figure's texts, its legends' included (the collapse warning is a figure legend)."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text)]


def test_history_and_steps_give_labelled_panels_on_one_epoch_axis():
    history, steps = _records()
    fig = training_curves(history, steps=steps, title="t")
    visible = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in visible] == [LOSS_TITLE, KNN_TITLE, STD_TITLE]
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() for ax in visible)
    data = figure_line_data(fig)
    xs, ys = data[LOSS_TITLE]["per step"]
    assert ys == [s["loss"] for s in steps]
    assert xs == pytest.approx([(i + 1) / 4 for i in range(12)])  # epoch + (batch + 1) / 4
    assert data[LOSS_TITLE]["per epoch"] == ([1.0, 2.0, 3.0], [5.0, 4.0, 3.0])
    # The std against its healthy level 1/sqrt(d): 1 is healthy.
    assert data[STD_TITLE]["projector / 1/sqrt(d)"][1] == pytest.approx([0.03 / REF] * 3)
    assert data[KNN_TITLE]["trained"][1] == pytest.approx([0.5, 0.6, 0.7])
    assert not any("COLLAPSE" in t for t in _texts(fig))
    assert figure_to_png(fig)[:4] == b"\x89PNG"


def test_warm_up_is_shaded_up_to_the_learning_rate_peak():
    history, steps = _records()
    ax = training_curves(history, steps=steps).axes[0]
    (span,) = [p for p in ax.patches if p.get_label() == WARMUP_LABEL]
    x0, x1 = span.get_x(), span.get_x() + span.get_width()
    assert (x0, x1) == pytest.approx((0.0, 1.0))  # the LR peaks at the last step of epoch 1


def test_every_signal_gets_its_panel_against_its_level_and_knn_starts_at_random_init():
    history, steps = _records(signals=True, dino=True)
    fig = training_curves(history, steps=steps)
    data = figure_line_data(fig)
    assert set(data) >= {LOSS_TITLE, KNN_TITLE, STD_TITLE, RANK_TITLE, DINO_TITLE}
    xs, ys = data[KNN_TITLE]["trained"]
    assert (xs[0], ys[0]) == (0.0, 0.3)  # epoch 0: the run's own random-init kNN
    assert data[KNN_TITLE]["random init (0.30)"][1] == [0.3, 0.3]
    assert data[STD_TITLE]["backbone / before training"][1] == pytest.approx([2.0] * 3)
    assert data[RANK_TITLE]["backbone"][1] == pytest.approx([2.0] * 3)
    assert data[RANK_TITLE]["projector"][1] == pytest.approx([2.0] * 3)
    assert data[DINO_TITLE]["entropy / log K"][1] == pytest.approx([0.5] * 3)
    assert data[DINO_TITLE]["teacher-student KL (nats)"][1] == pytest.approx([0.4] * 3)


def test_collapse_box_names_what_collapsed_in_the_last_epoch_only():
    history, steps = _records(signals=True)
    for rec in history:
        rec["rep_std_backbone"] = 0.5 * STD_FRACTION * rec["rep_std_backbone_init"]
    assert any("backbone features collapsed" in t for t in _texts(training_curves(history)))
    history[-1]["rep_std_backbone"] = 0.01  # healthy again at the end: no box
    history[-1]["rankme_backbone"] = 0.5 * RANK_FLOOR  # ... but the rank is gone
    assert any("COLLAPSE" in t for t in _texts(training_curves(history)))
    history[-1]["rankme_backbone"] = 8.0
    assert not any("COLLAPSE" in t for t in _texts(training_curves(history)))


def test_every_text_is_at_least_9_points_so_12_px_at_100_dpi():
    from matplotlib.text import Text

    history, steps = _records(signals=True, dino=True)
    runs = [SimpleNamespace(name=n, history=history, steps=steps) for n in ("a", "b")]
    for fig in (training_curves(history, steps=steps, title="t"), training_curves(runs)):
        figure_to_png(fig)  # lays the figure out
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
        assert sizes and min(sizes) >= 9, sorted(sizes)[:5]


def test_knn_panel_omitted_without_values_or_when_disabled():
    history, _ = _records(knn=False)
    assert [ax.get_title() for ax in training_curves(history).axes] == [LOSS_TITLE, STD_TITLE]
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


def test_live_steps_before_the_first_epoch_show_the_projector_std():
    step = {"step": 1, "epoch": 0, "batch": 0, "batches_per_epoch": 4, "loss": 1.0}
    step |= {"rep_std": 0.1, "rep_std_ref": 0.125}
    run = SimpleNamespace(name="r", history=[], steps=[step], config={})
    data = figure_line_data(training_curves(run))
    assert data[LOSS_TITLE]["per step"] == ([0.25], [1.0])  # epoch 0 + 1/4
    assert data[STD_TITLE]["projector, per step"] == ([0.25], [pytest.approx(0.8)])


def test_list_of_runs_overlays_one_colour_per_run_with_names():
    h1, s1 = _records(signals=True)
    h2, _ = _records(signals=True)
    for rec in h2:  # run b's backbone collapses
        rec["rep_std_backbone"] = 1e-4
    runs = [
        SimpleNamespace(name="a", history=h1, steps=s1, config={}),
        SimpleNamespace(name="b", history=h2, steps=[], config={}),
    ]
    fig = training_curves(runs)
    data = figure_line_data(fig)
    assert {"a", "b"} <= set(data[STD_TITLE]) and {"a", "b"} <= set(data[KNN_TITLE])
    assert {"a · backbone / before training", "b · backbone / before training"} <= set(
        data[STD_TITLE]
    )
    std_ax = next(ax for ax in fig.axes if ax.get_title() == STD_TITLE)
    colors = {line.get_label(): line.get_color() for line in std_ax.get_lines()}
    assert colors["a"] != colors["b"]
    assert "b: COLLAPSE" in "\n".join(_texts(fig)) and "a: COLLAPSE" not in "\n".join(_texts(fig))
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert {"a", "b"} <= set(legend)


def test_overlaid_methods_share_the_loss_axis_on_their_own_ranges():
    """Different methods' losses are on different scales: each run's curve spans 0-1."""
    h1, s1 = _records()
    h2, _ = _records()
    for rec in h2:  # a Barlow Twins-sized loss
        rec["loss"] = 1000.0 * rec["loss"]

    def runs(method_b):
        a = SimpleNamespace(name="a", history=h1, steps=s1, config={"method": "simclr"})
        return [a, SimpleNamespace(name="b", history=h2, steps=[], config={"method": method_b})]

    loss_ax = lambda fig: next(ax for ax in fig.axes if ax.get_title() == LOSS_TITLE)  # noqa: E731
    fig = training_curves(runs("barlowtwins"))
    data = figure_line_data(fig)[LOSS_TITLE]
    assert "0-1" in loss_ax(fig).get_ylabel()
    assert data["b"][1] == pytest.approx([1.0, 0.5, 0.0])  # epoch losses 5000, 4000, 3000
    every = [y for _, ys in data.values() for y in ys]
    assert min(every) >= 0.0 and max(every) <= 1.0
    same = training_curves(runs("simclr"))  # one method: the losses as they are
    assert loss_ax(same).get_ylabel() == "loss"
    assert figure_line_data(same)[LOSS_TITLE]["b"][1] == [5000.0, 4000.0, 3000.0]


def test_bad_input_raises_clear_error():
    with pytest.raises(ValueError, match="epoch records, a Run or a list of Runs"):
        training_curves("runs/x")
    with pytest.raises(ValueError, match="dict records"):
        training_curves([1, 2])
