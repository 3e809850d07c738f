"""Collapse detection: every threshold, the relative signals and the event messages, in one place.

The monitor (``training/callbacks.py``) measures, each epoch, on held-out images:

- ``rep_std_backbone``: the std of the backbone's L2-normalised features (``eval.std``);
- ``rankme_backbone`` / ``rankme_projector``: their effective rank (RankMe);
- ``rep_std``: the std of the projector output the loss sees (training batches);
- a method's own signals (DINO: ``teacher_entropy``, ``teacher_student_kl``).

Each is turned into a value against its healthy level (:func:`relative_signals`): the std
against ``1/sqrt(d)`` or against the same backbone at the first start, the rank as a fraction
of its first-start value, DINO's entropy as a fraction of its maximum ``log K``. The baselines
are measured once, before step 1 of the first start, and kept across resume
(:data:`BASELINE_KEYS`). :class:`CollapseDetector` raises a ``collapse`` event when a signal
stays in its collapse zone for :data:`COLLAPSE_EPOCHS` epochs in a row, and a ``recovered``
event when every signal has been clear of its zone (by :data:`RECOVER_MARGIN`) for
:data:`RECOVER_EPOCHS` epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# -- thresholds: each decision is taken here and nowhere else ---------------------------------

# Measured on digits (benchmarks/results/collapse_events.md): the seven methods' defaults and
# induced collapses of SimSiam, BYOL and DINO. What that taught:
# - The std of L2-normalised vectors is ~1/sqrt(d) when they spread over the sphere and 0 when
#   they all point one way. The backbone's held-out std below 10% of its value before step 1
#   means the features are nearly identical (SimSiam ablations: 2-7%; healthy runs never fell
#   below 21%). The projector's std cannot decide: MoCo v2's healthy default sits at 7% of
#   1/sqrt(d) for its whole run (its outputs share a large common direction), so it is shown,
#   not used.
STD_FRACTION = 0.1
# - Effective rank (RankMe) of the held-out backbone features below 2: the features use fewer
#   than two directions (SimSiam ablations: 1.1-1.6). It is an absolute floor, not a fraction
#   of the start: a random-init ResNet-18 at 32 px already has a rank of ~48 and healthy SimCLR
#   dips to 3.2 (7% of it) in its first two epochs before rising to 94.
RANK_FLOOR = 2.0
# - kNN accuracy on the held-out images within 3 points of chance (the largest class's share):
#   the features no longer separate the classes (SimSiam at lr 0.1 without predictor and
#   stop-gradient, BYOL at lr 0.5 without predictor: exactly at chance for several epochs, while
#   their std and rank stay above the floors). Labelled data only.
KNN_CHANCE_MARGIN = 0.03
# DINO (paper, Sec. 5.3, Fig. 7). The teacher's per-image entropy at 99% of log K or more:
# its output is uniform, sharpening has failed. A healthy teacher at temperature 0.04 sits
# near 0.93 on digits; an unsharpened one (temperature 1.0) is at 0.9999 from epoch 1.
UNIFORM_ENTROPY = 0.99
# DINO: the entropy of the teacher's batch-mean output at 10% of log K or less: every image
# lands on the same one or two dimensions, centring has failed (the one-dimension collapse).
# A healthy batch spreads over as many dimensions as it has images.
ONE_DIM_ENTROPY = 0.1
# The teacher-student KL falls towards 0 in both collapses, but slowly on short runs (an
# unsharpened teacher on digits: 0.16 -> 0.08 nats in 15 epochs), so it is shown and quoted,
# not used to decide.
# Epochs in a row a signal must stay in its collapse zone before the event (one noisy epoch
# of a short run must not raise it), and out of every zone before a recovery is reported.
COLLAPSE_EPOCHS = 2
RECOVER_EPOCHS = 2
# A collapsed run counts as recovered only once every signal is clear of its zone by this
# factor (twice each threshold's distance): a signal hovering at a threshold would otherwise
# raise collapse, recovered, collapse... (measured: SimSiam's ablations at lr 0.5 on digits).
RECOVER_MARGIN = 2.0

# The first start's values, measured before step 1 and repeated in every epoch record.
BASELINE_KEYS = (
    "knn_acc_init",
    "rep_std_backbone_init",
    "rankme_backbone_init",
    "rankme_projector_init",
)

# What to try, per method and kind of collapse (the event message ends with it).
_HINTS = {
    "simsiam": "SimSiam needs its predictor and the stop-gradient (method_args predictor=True, "
    "stop_gradient=True, the defaults); if both are on, lower the learning rate",
    "byol": "BYOL needs its predictor and a slowly moving target (method_args predictor=True, "
    "momentum >= 0.99, the defaults); if both are on, lower the learning rate",
    "dino-uniform": "the teacher is not sharpened: keep teacher_temp (and warmup_teacher_temp) "
    "at 0.07 or lower (default 0.04)",
    "dino-one-dim": "the teacher is not centred: keep center_momentum below 1 (default 0.9)",
    "dino": "the teacher must be sharpened and centred: keep teacher_temp at 0.07 or lower and "
    "center_momentum below 1 (defaults 0.04 and 0.9); if both are, lower the learning rate",
}
_DEFAULT_HINT = (
    "lower the learning rate, and check that the two views of an image differ yet share "
    "content (the augmentations) and that the method's predictor/momentum settings are on"
)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _ratio(value: Any, ref: Any) -> float | None:
    v, r = _num(value), _num(ref)
    return None if v is None or r is None or r <= 0 else v / r


def relative_signals(rec: Mapping[str, Any]) -> dict[str, float | None]:
    """Each collapse signal of an epoch record against its healthy level (1 = healthy).

    Returns:
        ``rep_std_rel`` (projector std / 1/sqrt(d)), ``rep_std_backbone_rel`` (backbone std /
        its first-start value), ``rankme_backbone_frac`` and ``rankme_projector_frac`` (rank /
        first-start rank) and, for DINO, ``teacher_entropy_frac`` and
        ``teacher_batch_entropy_frac`` (per-image and batch-mean entropy / log K); None where
        the record lacks a value.
    """
    return {
        "rep_std_rel": _ratio(rec.get("rep_std"), rec.get("rep_std_ref")),
        "rep_std_backbone_rel": _ratio(
            rec.get("rep_std_backbone"), rec.get("rep_std_backbone_init")
        ),
        "rankme_backbone_frac": _ratio(rec.get("rankme_backbone"), rec.get("rankme_backbone_init")),
        "rankme_projector_frac": _ratio(
            rec.get("rankme_projector"), rec.get("rankme_projector_init")
        ),
        "teacher_entropy_frac": _ratio(rec.get("teacher_entropy"), rec.get("teacher_entropy_max")),
        "teacher_batch_entropy_frac": _ratio(
            rec.get("teacher_batch_entropy"), rec.get("teacher_entropy_max")
        ),
    }


@dataclass(frozen=True)
class Finding:
    """One signal in its collapse zone in one epoch."""

    kind: str  # "backbone", "chance", "dino-uniform", "dino-one-dim"
    what: str  # the sentence's subject: what collapsed, with the measured value

    @property
    def label(self) -> str:
        """A few words for a figure: what collapsed."""
        return _LABELS[self.kind]


# What the collapse means for the user, per kind (the event message says it).
_CONSEQUENCES = {
    "backbone": "The backbone's features now carry almost no information about the image.",
    "chance": "The features now tell the classes apart no better than guessing.",
    "dino-uniform": "The student's target no longer depends on the image, so the backbone stops "
    "learning.",
    "dino-one-dim": "The student's target no longer depends on the image, so the backbone stops "
    "learning.",
}

_LABELS = {
    "backbone": "backbone features collapsed",
    "chance": "kNN at chance level",
    "dino-uniform": "DINO teacher uniform",
    "dino-one-dim": "DINO teacher one-dimensional",
}


def findings(rec: Mapping[str, Any], margin: float = 1.0) -> list[Finding]:
    """The signals of one epoch record that sit in their collapse zone (most telling first).

    Args:
        rec: An epoch record.
        margin: Widens every zone by this factor (the distance to its edge, for the entropies):
            :data:`RECOVER_MARGIN` tells whether a collapsed run is clearly out again.
    """
    r = relative_signals(rec)
    out: list[Finding] = []
    ent, batch = r.get("teacher_entropy_frac"), r.get("teacher_batch_entropy_frac")
    kl = _num(rec.get("teacher_student_kl"))
    kl_text = "" if kl is None else f", teacher-student KL {kl:.3f} nats"
    if ent is not None and ent >= 1 - (1 - UNIFORM_ENTROPY) * margin:
        out.append(
            Finding(
                "dino-uniform",
                f"the DINO teacher's output is uniform (its entropy "
                f"is {ent:.1%} of log K{kl_text})",
            )
        )
    if batch is not None and batch <= ONE_DIM_ENTROPY * margin:
        out.append(
            Finding(
                "dino-one-dim",
                f"every image lands on the same dimension of the "
                f"DINO teacher (batch entropy {batch:.1%} of log K{kl_text})",
            )
        )
    std_b, rank_b = r.get("rep_std_backbone_rel"), _num(rec.get("rankme_backbone"))
    if std_b is not None and std_b < STD_FRACTION * margin:
        out.append(
            Finding(
                "backbone",
                f"the backbone's held-out features collapsed (their std "
                f"is {std_b:.1%} of its value before training)",
            )
        )
    elif rank_b is not None and rank_b < RANK_FLOOR * margin:
        out.append(
            Finding(
                "backbone",
                f"the backbone's held-out features use fewer than "
                f"{RANK_FLOOR * margin:g} directions (effective rank {rank_b:.2f})",
            )
        )
    knn, chance = _num(rec.get("knn_acc")), _num(rec.get("knn_chance"))
    if knn is not None and chance is not None and knn <= chance + KNN_CHANCE_MARGIN * margin:
        out.append(
            Finding(
                "chance",
                f"the backbone's held-out features no longer separate the "
                f"classes (kNN accuracy {knn:.3f}, chance {chance:.3f})",
            )
        )
    return out


def hint(method: str, kind: str) -> str:
    """What to try against a collapse of ``kind`` in ``method``."""
    return _HINTS.get(kind) or _HINTS.get(method) or _DEFAULT_HINT


class CollapseDetector:
    """Raises ``collapse`` and ``recovered`` events from the epoch records of one run.

    Args:
        method: The method's name (for the hint).
        history: Epoch records of a resumed run's earlier sessions: replayed silently, so a
            streak, or an event already raised, continues across the resume.
    """

    def __init__(self, method: str, history: Iterable[Mapping[str, Any]] = ()) -> None:
        self.method = method
        self.streak: list[tuple[int, list[Finding]]] = []  # the epochs in the current zone run
        self.clear_epochs = 0
        self.collapsed_since: int | None = None  # 1-based epoch of a reported, open collapse
        for rec in history:
            if rec.get("type", "epoch") == "epoch" and not rec.get("partial"):
                self.update(rec)

    def update(self, rec: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Feed one epoch record; returns the events to raise, as (kind, message) pairs."""
        epoch = int(rec.get("epoch", 0)) + 1  # 1-based, as the log prints it
        if self.collapsed_since is not None:  # reported: wait until clearly out of every zone
            self.clear_epochs = 0 if findings(rec, RECOVER_MARGIN) else self.clear_epochs + 1
            if self.clear_epochs < RECOVER_EPOCHS:
                return []
            since, self.collapsed_since = self.collapsed_since, None
            knn, init = _num(rec.get("knn_acc")), _num(rec.get("knn_acc_init"))
            knn_text = (
                ""
                if knn is None
                else f" (kNN accuracy now {knn:.3f}"
                + (f", random init {init:.3f})" if init is not None else ")")
            )
            return [
                (
                    "recovered",
                    f"Recovered: the collapse seen since epoch {since} has ended; every "
                    f"collapse signal is clear of its zone since epoch "
                    f"{epoch - RECOVER_EPOCHS + 1}{knn_text}.",
                )
            ]
        found = findings(rec)
        self.streak = [*self.streak, (epoch, found)] if found else []
        if len(self.streak) < COLLAPSE_EPOCHS:
            return []
        self.collapsed_since, self.clear_epochs = self.streak[0][0], 0
        self.streak = []
        first, others = found[0], "; ".join(f.what for f in found[1:])
        return [
            (
                "collapse",
                f"Collapse: {first.what}, since epoch {self.collapsed_since}"
                + (f" (also: {others})" if others else "")
                + f". {_CONSEQUENCES[first.kind]} Try: "
                + hint(self.method, first.kind)
                + ".",
            )
        ]


def baselines_of(history: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The first start's baselines, from the epoch records of an earlier session."""
    out: dict[str, float] = {}
    for rec in history:
        for key in BASELINE_KEYS:
            v = _num(rec.get(key))
            if v is not None and key not in out:
                out[key] = v
    return out
