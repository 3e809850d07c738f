"""The collapse signals and their reading, headless: RankMe, the relative signals, the detector."""

import math

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.eval.collapse import (
    COLLAPSE_EPOCHS,
    ONE_DIM_ENTROPY,
    RECOVER_EPOCHS,
    STD_FRACTION,
    UNIFORM_ENTROPY,
    CollapseDetector,
    baselines_of,
    findings,
    relative_signals,
)
from workbench.nn.losses import DINOLoss


def test_rankme_counts_the_directions_used():
    g = torch.Generator().manual_seed(0)
    assert wb.rankme(torch.eye(16)) == pytest.approx(16, rel=1e-4)  # every direction, evenly
    one = torch.randn(64, 1, generator=g) @ torch.randn(1, 32, generator=g)
    assert wb.rankme(one) == pytest.approx(1.0, abs=1e-3)  # rank 1: collapse
    iso = torch.randn(4096, 32, generator=g)
    assert 28 < wb.rankme(iso) <= 32  # isotropic: close to the maximum min(N, D)
    assert wb.rankme(np.zeros((8, 4))) == 0.0
    with pytest.raises(ValueError, match="N >= 2"):
        wb.rankme(torch.randn(1, 4))


def _epoch(e, std_b=0.02, rank_b=10.0, std=0.05, **kw):
    rec = {"type": "epoch", "epoch": e, "rep_std": std, "rep_std_ref": 0.0625,
           "rep_std_backbone": std_b, "rep_std_backbone_init": 0.01,
           "rankme_backbone": rank_b, "rankme_backbone_init": 8.0, "knn_acc": 0.5}  # fmt: skip
    return rec | kw


def test_relative_signals_put_each_value_against_its_healthy_level():
    r = relative_signals(_epoch(0, teacher_entropy=3.0, teacher_entropy_max=6.0))
    assert r["rep_std_rel"] == pytest.approx(0.8)
    assert r["rep_std_backbone_rel"] == pytest.approx(2.0)
    assert r["rankme_backbone_frac"] == pytest.approx(1.25)
    assert r["teacher_entropy_frac"] == pytest.approx(0.5)
    assert r["rankme_projector_frac"] is None  # no value: no ratio (and no finding)
    assert findings(_epoch(0)) == []


def test_event_after_a_streak_names_what_since_when_and_what_to_try_then_recovery():
    det = CollapseDetector("simsiam")
    low = 0.5 * STD_FRACTION * 0.01
    assert det.update(_epoch(0)) == []
    events = [det.update(_epoch(e, std_b=low)) for e in range(1, 1 + COLLAPSE_EPOCHS)]
    assert events[:-1] == [[]] * (COLLAPSE_EPOCHS - 1)
    ((kind, msg),) = events[-1]
    assert kind == "collapse"
    assert "backbone" in msg and "since epoch 2" in msg and "predictor" in msg
    assert det.update(_epoch(9, std_b=low)) == []  # reported once, not every epoch
    out = [det.update(_epoch(10 + e)) for e in range(RECOVER_EPOCHS)]
    ((kind, msg),) = out[-1]
    assert kind == "recovered" and "since epoch 2" in msg and "kNN accuracy now 0.500)" in msg


def test_one_low_epoch_is_no_collapse_and_the_rank_alone_can_decide():
    det = CollapseDetector("simclr")
    for e in range(6):  # alternating: never COLLAPSE_EPOCHS in a row
        assert det.update(_epoch(e, std_b=1e-5 if e % 2 else 0.02)) == []
    det = CollapseDetector("simclr")
    got = [det.update(_epoch(e, rank_b=1.1)) for e in range(COLLAPSE_EPOCHS)]
    assert "effective rank" in got[-1][0][1] and "learning rate" in got[-1][0][1]


def test_dino_uniform_and_one_dimension_collapse_from_its_own_entropies():
    k = math.log(1024)
    healthy = _epoch(0, teacher_entropy=0.93 * k, teacher_batch_entropy=0.6 * k,
                     teacher_entropy_max=k, teacher_student_kl=0.5)  # fmt: skip
    assert findings(healthy) == []
    uniform = {**healthy, "teacher_entropy": (UNIFORM_ENTROPY + 0.005) * k}
    assert [f.kind for f in findings(uniform)] == ["dino-uniform"]
    one_dim = {**healthy, "teacher_batch_entropy": 0.5 * ONE_DIM_ENTROPY * k}
    assert [f.kind for f in findings(one_dim)] == ["dino-one-dim"]
    # A confident teacher (low per-image entropy) that spreads the batch is healthy.
    assert findings({**healthy, "teacher_entropy": 0.05 * k}) == []
    det = CollapseDetector("dino")
    msg = [det.update({**uniform, "epoch": e}) for e in range(COLLAPSE_EPOCHS)][-1][0][1]
    assert "uniform" in msg and "teacher_temp" in msg and "KL 0.500" in msg
    det = CollapseDetector("dino")
    msg = [det.update({**one_dim, "epoch": e}) for e in range(COLLAPSE_EPOCHS)][-1][0][1]
    assert "same dimension" in msg and "center_momentum" in msg


def test_resume_replays_history_keeps_the_baselines_and_reports_once():
    low = [_epoch(e, std_b=1e-6) for e in range(COLLAPSE_EPOCHS)]
    assert baselines_of(low) == {"rep_std_backbone_init": 0.01, "rankme_backbone_init": 8.0}
    det = CollapseDetector("simsiam", history=low)  # the event was raised before the resume
    assert det.collapsed_since == 1
    assert det.update(_epoch(COLLAPSE_EPOCHS, std_b=1e-6)) == []
    half = CollapseDetector("simsiam", history=low[:-1])  # a streak continues across it
    assert half.update(low[-1])[0][0] == "collapse"


def test_dino_loss_reports_teacher_entropy_and_kl():
    loss = DINOLoss(output_dim=16, warmup_teacher_temp_epochs=0, teacher_temp=1.0)
    same = [torch.zeros(4, 16), torch.zeros(4, 16)]  # uniform teacher, student matches it
    loss(same, same, epoch=0)
    sig = loss.last_signals
    assert float(sig["teacher_entropy"]) == pytest.approx(math.log(16), rel=1e-5)
    assert float(sig["teacher_student_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(sig["teacher_batch_entropy"]) == pytest.approx(math.log(16), rel=1e-5)
    loss = DINOLoss(output_dim=16, warmup_teacher_temp_epochs=0, teacher_temp=0.04)
    spread = [torch.eye(16)[:4] * 50, torch.eye(16)[4:8] * 50]  # confident, 8 dimensions used
    loss(spread, same, epoch=0)
    sig = loss.last_signals
    assert float(sig["teacher_entropy"]) < 0.01
    assert float(sig["teacher_batch_entropy"]) == pytest.approx(math.log(8), rel=1e-3)
    assert float(sig["teacher_student_kl"]) == pytest.approx(math.log(16), rel=1e-3)
    one = [torch.eye(16)[:1].repeat(4, 1) * 50] * 2  # every image on dimension 0
    loss(one, same, epoch=0)
    assert float(loss.last_signals["teacher_batch_entropy"]) < 0.01


def test_a_signal_hovering_at_its_threshold_does_not_flip_between_collapse_and_recovery():
    det = CollapseDetector("simsiam")
    low = [_epoch(e, rank_b=0.2 * 8.0) for e in range(COLLAPSE_EPOCHS)]  # rank 20% of start
    assert [k for e in low for k, _ in det.update(e)] == ["collapse"]
    hover = [_epoch(10 + e, rank_b=0.3 * 8.0) for e in range(5)]  # out of the zone, barely
    assert [k for e in hover for k, _ in det.update(e)] == []  # not clearly out: no recovery
    clear = [_epoch(20 + e, rank_b=0.6 * 8.0) for e in range(RECOVER_EPOCHS)]
    assert [k for e in clear for k, _ in det.update(e)] == ["recovered"]
