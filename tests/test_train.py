import json
import math

import numpy as np
import pytest
import torch
import torchvision

import workbench as wb
from workbench.methods import METHODS, SimCLR
from workbench.methods.simsiam import SimSiam
from workbench.runs import CHECKPOINT

EPOCH_KEYS = {
    "epoch",
    "step",
    "loss",
    "rep_std",
    "rep_std_ref",
    "rep_std_backbone",
    "rep_std_backbone_ref",
    "knn_acc",
    "lr",
    "images_per_s",
    "seconds",
}
STEP_KEYS = {"step", "epoch", "batch", "loss", "rep_std", "lr", "images_per_s", "seconds"}
FAST = dict(model="resnet18", batch_size=64, input_size=16, epochs=2)


def _teacher():
    torch.manual_seed(0)
    net, _ = wb.get_backbone("vit-tiny", input_size=16)
    return net


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_two_epochs(method, digits_small, tmp_path):
    args = {"teacher": _teacher()} if method.startswith("distillation") else None
    run = wb.train(digits_small, method=method, out=tmp_path / method, method_args=args, **FAST)
    assert run.status == "finished", run.events
    assert len(run.history) == 2
    for rec in run.history:
        assert EPOCH_KEYS <= set(rec), EPOCH_KEYS - set(rec)
        assert math.isfinite(rec["loss"]) and 0 <= rec["knn_acc"] <= 1
        assert rec["rep_std_ref"] == pytest.approx(
            1 / math.sqrt(run.config["method_args"].get("output_dim", rec["rep_std_ref"] ** -2)),
            rel=1e-6,
        ) or method.startswith("distill")
    assert all(STEP_KEYS <= set(s) for s in run.steps)
    assert [s["step"] for s in run.steps] == list(range(1, len(run.steps) + 1))  # steps done
    if method in ("moco", "byol", "dino"):
        assert "momentum" in run.history[-1]
    if method == "dino":
        assert "teacher_temp" in run.history[-1]
    # the exported backbone reloads, into the torchvision model too
    backbone = wb.load_run(run.out).backbone
    assert backbone(torch.zeros(2, 3, 16, 16)).shape == (2, 512)
    tv = torchvision.models.resnet18()
    missing, unexpected = tv.load_state_dict(torch.load(run.backbone_path), strict=False)
    assert unexpected == [] and set(missing) == {"fc.weight", "fc.bias"}


def test_run_folder_contents(digits_small, tmp_path):
    run = wb.train(digits_small, method="simclr", out=tmp_path / "r", **FAST)
    cfg = json.loads((run.out / "config.json").read_text())
    for key in (
        "method",
        "model",
        "input_size",
        "lr",
        "num_workers",
        "precision",
        "accelerator",
        "devices",
        "transform",
        "seed",
        "batch_size",
        "feature_dim",
    ):
        assert cfg[key] not in (None, "auto"), key
    assert cfg["lr"] == pytest.approx(0.06 * 64 / 256)  # SimCLR: 0.06 per 256 images, scaled
    # the CPU memory format is measured on this machine (or read from its cache) and recorded
    memory = cfg["memory_format"]
    assert cfg["channels_last"] is memory["channels_last"] and memory["source"] in (
        "measured", "cache"
    )  # fmt: skip
    if memory["source"] == "measured":
        faster_nhwc = memory["channels_last_s"] < memory["nchw_s"]
        assert memory["channels_last"] is faster_nhwc
    lines = (run.out / "metrics.jsonl").read_text().splitlines()
    types = {json.loads(ln)["type"] for ln in lines}
    assert types == {"step", "epoch", "event", "status"}
    assert (run.out / CHECKPOINT).is_file() and run.backbone_path.is_file()
    log = (run.out / "train.log").read_text()
    assert "epoch 2/2" in log and "status: finished" in log
    assert wb.list_runs(tmp_path)[0].out == run.out


def test_existing_out_is_never_overwritten(digits_small, tmp_path):
    out = tmp_path / "r"
    wb.train(digits_small, method="simclr", out=out, max_steps=1, **FAST)
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="resume=True.*overwrite=True"):
        wb.train(digits_small, method="simclr", out=out, **FAST)
    assert (out / "metrics.jsonl").read_text() == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a workbench run folder"):
        wb.train(digits_small, method="simclr", out=mine, overwrite=True, **FAST)
    assert (mine / "thesis.tex").read_text() == "precious"


class StopAfter:
    def __init__(self, n):
        self.n, self.steps = n, 0

    def on_step(self, rec):
        self.steps += 1

    def should_stop(self):
        return self.steps >= self.n


def test_stop_within_one_batch_then_resume(digits_small, tmp_path):
    out = tmp_path / "r"
    stopper = StopAfter(2)
    run = wb.train(
        digits_small, method="byol", out=out, callbacks=[stopper], **{**FAST, "epochs": 3}
    )
    assert run.status == "stopped"
    assert len(run.steps) == 2 and stopper.steps == 2  # no batch ran after the request
    assert (out / CHECKPOINT).is_file()
    assert any(e["kind"] == "stopped" for e in run.events)
    resumed = wb.train(digits_small, method="byol", out=out, resume=True, **{**FAST, "epochs": 3})
    assert resumed.status == "finished"
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    assert resumed.history[0]["partial"] and "partial" not in resumed.history[1]
    steps = [s["step"] for s in resumed.steps]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[0] == 1


def test_nan_loss_fails_the_run(digits_small, tmp_path, monkeypatch):
    class NaNSimCLR(SimCLR):
        def training_step_loss(self, views, **kw):
            out = super().training_step_loss(views, **kw)
            if kw["step"] >= 1:
                out.loss = out.loss * float("nan")
            return out

    monkeypatch.setitem(METHODS, "simclr", NaNSimCLR)
    run = wb.train(digits_small, method="simclr", out=tmp_path / "r", **FAST)
    assert run.status == "failed"
    nan = [e for e in run.events if e["kind"] == "nan"]
    assert nan and "step 1" in nan[0]["message"]


class CollapsingSimSiam(SimSiam):
    """Test-only config: SimSiam without predictor and without the output BatchNorm, so the
    trivial constant solution is reachable within a few steps."""

    def __init__(self, backbone, feature_dim, config, **kw):
        super().__init__(backbone, feature_dim, config, **kw)
        self.projection_head = torch.nn.Linear(feature_dim, 64)
        self.prediction_head = torch.nn.Identity()


def test_a_collapsing_projector_is_drawn_but_never_decides_the_event(
    digits_small, tmp_path, monkeypatch
):
    # The projector's output collapses (a plain Linear head, no BatchNorm, no predictor). Its
    # std is recorded and drawn, but only the backbone's signals decide an event: MoCo v2's
    # healthy runs sit at 7% of 1/sqrt(d) (benchmarks/results/collapse_events.md).
    from workbench.eval.collapse import findings

    monkeypatch.setitem(METHODS, "simsiam", CollapsingSimSiam)
    run = wb.train(
        digits_small, method="simsiam", out=tmp_path / "r", lr=0.5, **{**FAST, "epochs": 6}
    )
    ratios = [h["rep_std"] / h["rep_std_ref"] for h in run.history]
    assert ratios[-1] < 0.1, ratios
    assert not [e for e in run.events if "projector" in e.get("message", "")]
    healthy_backbone = {**run.history[-1], "rep_std_backbone": 1.0, "rep_std_backbone_init": 1.0,
                        "rankme_backbone": 20.0, "knn_acc": 0.9}  # fmt: skip
    assert findings(healthy_backbone) == []  # the projector alone: no finding


def test_healthy_run_has_no_collapse(digits_small, tmp_path):
    run = wb.train(digits_small, method="simsiam", out=tmp_path / "h", **{**FAST, "epochs": 1})
    assert run.history[-1]["rep_std"] > 0.5 * run.history[-1]["rep_std_ref"]
    assert not [e for e in run.events if e["kind"] == "collapse"]


def test_batch_size_reduced_and_hints(digits_small, tmp_path):
    small = digits_small.subset(np.arange(40))
    small.meta = {"image_size": 16}
    run = wb.train(
        small,
        method="simclr",
        out=tmp_path / "r",
        val_fraction=0.0,
        **{**FAST, "batch_size": 512, "epochs": 1},
    )
    kinds = [e["kind"] for e in run.events]
    assert "batch_size_reduced" in kinds and "hint" in kinds
    assert run.config["batch_size"] == 40
    assert run.history[0]["knn_acc"] is None  # no held-out split, no kNN


def test_bad_arguments_name_the_value(digits_small, tmp_path):
    with pytest.raises(ValueError, match="simclrr.*simclr"):
        wb.train(digits_small, method="simclrr", out=tmp_path / "a")
    with pytest.raises(ValueError, match="resnet19"):
        wb.train(digits_small, model="resnet19", out=tmp_path / "b")
    with pytest.raises(ValueError, match="temprature"):
        wb.train(digits_small, method_args={"temprature": 0.1}, out=tmp_path / "c")
    with pytest.raises(ValueError, match="Distillation needs a teacher"):
        wb.train(digits_small, method="distillation", out=tmp_path / "d", **FAST)


def test_describe_method():
    d = wb.describe_method("dino")
    assert {"summary", "use_when", "avoid_when", "batch_size", "epochs", "backbones"} <= set(d)
    assert d["defaults"]["teacher_temp"] == 0.04
    # where a short-run default departs from the paper, the card says so and why
    moco = wb.describe_method("moco")
    assert moco["defaults"]["momentum"] == 0.9 and "0.999" in moco["changed"]
    assert "0.1" in wb.describe_method("simclr")["changed"]
    assert wb.list_methods() == sorted(
        [
            "barlowtwins",
            "byol",
            "dino",
            "distillation",
            "distillationv1",
            "moco",
            "simclr",
            "simsiam",
            "vicreg",
        ]
    )


def test_backbone_collapse_behind_batchnorm_is_detected_and_seen_on_the_figure(
    digits_small, tmp_path
):
    # SimSiam without predictor and stop-gradient (the paper's ablations): the projector ends in
    # BatchNorm so its std stays up, but the backbone collapses; the monitor compares the
    # backbone with itself before step 1. Real runs, no mocks.
    from workbench.eval.collapse import RANK_FLOOR
    from workbench.plots.training import RANK_TITLE, STD_TITLE, figure_line_data, training_curves

    STD_DROP = 0.25  # the ablated backbone's std falls below a quarter of its start

    kw = {**FAST, "epochs": 5, "lr": 0.5}
    ablated = wb.train(digits_small, method="simsiam", out=tmp_path / "a",
                       method_args={"predictor": False, "stop_gradient": False}, **kw)  # fmt: skip
    healthy = wb.train(digits_small, method="simsiam", out=tmp_path / "h",
                       **{**kw, "lr": None})  # fmt: skip
    init = ablated.history[0]["rep_std_backbone_init"]
    assert init > 0 and {h["rep_std_backbone_init"] for h in ablated.history} == {init}
    # The std falls below 10 % of its start on AVX2/AVX-512 CPUs, to 12 % on an AMX one (the
    # kernels' numerics differ); the rank and kNN signals catch the collapse on all of them.
    assert min(h["rep_std_backbone"] for h in ablated.history) < STD_DROP * init
    collapse = [e for e in ablated.events if e["kind"] == "collapse"]
    assert len(collapse) == 1 and "backbone" in collapse[0]["message"]
    assert "since epoch" in collapse[0]["message"] and "predictor" in collapse[0]["message"]
    assert "[collapse]" in (ablated.out / "train.log").read_text()
    assert not [e for e in healthy.events if e["kind"] == "collapse"]
    # Each collapse panel separates the two runs: the ablated run falls far below its level (into
    # the rank panel's zone), the healthy one stays at or above it.
    data = figure_line_data(training_curves([healthy, ablated]))
    h, a = healthy.name, ablated.name
    std_h = data[STD_TITLE][f"{h} · backbone / before training"][1]
    std_a = data[STD_TITLE][f"{a} · backbone / before training"][1]
    assert min(std_a) < STD_DROP < 1.0 <= min(std_h)
    rank_h = data[RANK_TITLE][f"{h} · backbone"][1]
    rank_a = data[RANK_TITLE][f"{a} · backbone"][1]
    init_a = ablated.history[0]["rankme_backbone_init"]
    assert min(rank_a) * init_a < RANK_FLOOR and 1.0 <= min(rank_h)  # < 2 directions vs grown
    assert healthy.history[-1]["knn_acc"] > ablated.history[-1]["knn_acc"]


def test_auto_precision_and_the_emulated_bf16_hint(digits_small, tmp_path, monkeypatch):
    """auto = float32 on CPUs; bf16 asked for on a CPU without bf16 units gives a hint."""
    from workbench.training import api

    assert api._resolve_device("cpu", "auto", "auto") == ("cpu", 1, "32-true")
    assert api._resolve_device("cpu", 1, "bf16-mixed")[2] == "bf16-mixed"  # explicit wins
    assert isinstance(api.cpu_has_bf16(), bool)  # the real probe answers on any machine
    monkeypatch.setattr(api, "cpu_has_bf16", lambda: False)
    # One step: what is checked is the hint and the precision. (A 1-epoch bf16 run went
    # non-finite at step 2 once in CI on an AMX CPU, and finished 4 times of 4 on rerun.)
    run = wb.train(digits_small, method="simclr", precision="bf16-mixed", out=tmp_path / "r",
                   val_fraction=0.0, max_steps=1, **{**FAST, "epochs": 1})  # fmt: skip
    assert run.status == "finished" and run.config["precision"] == "bf16-mixed"
    hints = [e["message"] for e in run.events if e["kind"] == "hint"]
    assert any("emulated" in h for h in hints), hints


def test_loader_workers_ignore_ctrl_c_and_keep_lightnings_seeding(monkeypatch):
    import signal

    from workbench.training.data import init_worker

    def in_worker(worker_id):
        torch.manual_seed(1000 + worker_id)  # what PyTorch gives worker i: base seed + i
        init_worker(worker_id)
        return np.random.rand()

    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setenv("PL_SEED_WORKERS", "1")  # what seed_everything(workers=True) sets
    try:
        a, b = in_worker(0), in_worker(1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert in_worker(0) == a  # numpy seeded per worker, reproducibly
    finally:
        signal.signal(signal.SIGINT, previous)
    assert a != b
