"""Lightning callbacks: metrics, events, kNN monitor, stop flag and checkpoints of a run."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from workbench.eval.collapse import (
    BASELINE_KEYS,
    CollapseDetector,
    baselines_of,
    relative_signals,
)
from workbench.eval.knn import knn_accuracy
from workbench.eval.std import rankme, std_of_l2_normalized, std_of_l2_normalized_tensor
from workbench.runs import BACKBONE, CHECKPOINT, RunWriter, atomic_write_bytes


class UserCallbacks:
    """Calls the optional methods of plain callback objects; their errors never kill a run."""

    def __init__(self, callbacks: Sequence[Any], writer: RunWriter) -> None:
        self.callbacks = list(callbacks)
        self.writer = writer

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook(*args)`` on every callback that defines it."""
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as e:  # a broken observer must not end the training
                self.writer.log(f"callback {type(cb).__name__}.{hook} raised {e!r}", "WARNING")

    def should_stop(self) -> bool:
        """True when any callback's ``should_stop()`` says so."""
        for cb in self.callbacks:
            fn = getattr(cb, "should_stop", None)
            try:
                if fn is not None and fn():
                    return True
            except Exception as e:
                self.writer.log(f"callback {type(cb).__name__}.should_stop raised {e!r}", "WARNING")
        return False


class StopWatcher:
    """Carries a Stop to ranks that run in child processes (``ddp_spawn``, ``ddp_notebook``).

    The user callbacks (a widget's ``threading.Event``) live in the calling process; the
    children only have copies. This thread polls them and writes the run's stop file, which
    every rank's :class:`MonitorCallback` polls after each batch.

    Args:
        users: The user callbacks of the calling process.
        path: The stop file.
        interval: Seconds between polls.
    """

    def __init__(self, users: UserCallbacks, path: Path, interval: float = 0.2) -> None:
        self.users, self.path, self.interval = users, Path(path), interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-stop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            if self.users.should_stop():
                self.path.touch()
                return

    def close(self) -> None:
        """Stop polling (the run has ended)."""
        self._done.set()
        self._thread.join(timeout=5)


class EvalSet:
    """Images kept at the input size for the per-epoch kNN and std monitors (bank + queries)."""

    def __init__(
        self,
        bank: torch.Tensor,
        bank_labels: np.ndarray | None,
        query: torch.Tensor,
        query_labels: np.ndarray | None,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.bank, self.bank_labels = bank, bank_labels
        self.query, self.query_labels = query, query_labels
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        # kNN's chance level: the share of the largest class among the queries
        self.chance: float | None = None
        if query_labels is not None and len(query_labels):
            counts = np.unique(query_labels, return_counts=True)[1]
            self.chance = float(counts.max() / len(query_labels))

    @torch.no_grad()
    def features(
        self,
        backbone: torch.nn.Module,
        images: torch.Tensor,
        device: torch.device,
        channels_last: bool,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Backbone features (N, D) in eval mode (the training mode is restored)."""
        was = backbone.training
        backbone.eval()
        mean, std = self.mean.to(device), self.std.to(device)
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = (images[i : i + batch_size].to(device).float() / 255.0 - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out.append(backbone(x).flatten(1).float())
        backbone.train(was)
        return torch.cat(out) if out else torch.empty(0)


class MonitorCallback(L.Callback):
    """Writes step/epoch records and events, checks stop flags and NaN losses, kNN each epoch.

    The per-step values (loss, the two stds, the finite flag) stay on the device and are read
    back together every ``readback_every`` steps, at the end of each epoch and at a stop, when
    the step records are written: the curves keep every step, at one sync per read-back. The
    stop and non-finite decisions are taken there and, under DDP, reduced across the ranks, so
    all ranks stop at the same batch.

    Args:
        writer: The run folder writer (used on global rank 0 only).
        users: User callbacks (widgets, progress bars).
        eval_set: Images for kNN/std, or None.
        batch_size: Images per step on this process.
        epochs: Total epochs of the run.
        feature_dim: Backbone output dimension (for the 1/sqrt(d) reference).
        knn_k: kNN neighbours.
        knn_t: kNN temperature.
        readback_every: Steps between read-backs (1 on CPUs, where reading back costs nothing).
        stop_file: A file whose existence is a stop request (ranks in child processes).
        method: The method's name (for the collapse hints).
        history: Epoch records of a resumed run's earlier sessions: their baselines are kept
            and the collapse detector continues from them.
    """

    def __init__(
        self,
        writer: RunWriter,
        users: UserCallbacks,
        eval_set: EvalSet | None,
        batch_size: int,
        epochs: int,
        feature_dim: int,
        knn_k: int = 200,
        knn_t: float = 0.1,
        readback_every: int = 1,
        stop_file: Path | None = None,
        method: str = "",
        history: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.writer, self.users, self.eval_set = writer, users, eval_set
        self.batch_size, self.epochs, self.feature_dim = batch_size, epochs, feature_dim
        self.knn_k, self.knn_t = knn_k, knn_t
        self.readback_every = max(1, int(readback_every))
        self.stop_file = stop_file
        self.stopped = False
        self.failed: str | None = None
        self.detector = CollapseDetector(method, history)
        self._t_start = time.perf_counter()
        self._t_last = self._t_start
        self._epoch_t0 = self._t_start
        self._epoch_losses: list[float] = []
        self._epoch_proj_std: list[float] = []
        self._epoch_feat_std: list[float] = []
        self._epoch_signals: dict[str, list[float]] = {}
        self._rate: float | None = None
        self._pending: list[tuple[dict[str, Any], list[str], torch.Tensor]] = []
        self._stop_requested = False
        self._nonfinite_step: int | None = None
        self.proj_dim: int | None = None
        self.baselines: dict[str, float] = baselines_of(history)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the baselines on held-out images before step 1 (first start only).

        ``knn_acc_init`` is the random-init kNN every view compares against. A projector that
        ends in BatchNorm (SimSiam) keeps its output std up while the backbone collapses, so
        the backbone's std and rank are compared with the same backbone before training;
        post-ReLU backbone features sit far below 1/sqrt(d) even when healthy, so 1/sqrt(d) is
        no reference there. A resumed run keeps the baselines of its first start.
        """
        if self.eval_set is not None and not self.baselines:
            at_init = self._monitor(trainer, pl_module)
            self.baselines = {
                key: float(at_init[key.removesuffix("_init")])
                for key in BASELINE_KEYS
                if at_init.get(key.removesuffix("_init")) is not None
            }

    def event(self, trainer: L.Trainer, kind: str, message: str) -> None:
        """Record an event (history, train.log, user callbacks)."""
        if not trainer.is_global_zero:
            return
        ev = {
            "type": "event",
            "kind": kind,
            "message": message,
            "step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
        }
        self.writer.record(ev)
        self.writer.log(f"[{kind}] {message}", "WARNING" if kind in ("collapse", "nan") else "INFO")
        self.users.call("on_event", ev)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reset the per-epoch accumulators."""
        self._epoch_t0 = self._t_last = time.perf_counter()
        self._epoch_losses, self._epoch_proj_std, self._epoch_feat_std = [], [], []
        self._epoch_signals = {}

    def _stop_asked(self) -> bool:
        """A local stop request: a user callback, or the stop file (cheap: polled every batch)."""
        if self.users.should_stop():
            return True
        return self.stop_file is not None and self.stop_file.exists()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Queue the step's values (on the device); read back and decide when due."""
        module: Any = pl_module
        out = module.last_output
        now = time.perf_counter()
        dt, self._t_last = now - self._t_last, now
        rate = self.batch_size * trainer.world_size / max(dt, 1e-9)
        self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        # Per step, on the training batch: the stds of the head output (what the loss sees, as
        # in Lightly's tutorials) and of the backbone features, and the method's own signals.
        # The collapse decision uses the held-out epoch values (eval.collapse).
        finite = module.finite if module.finite is not None else torch.isfinite(out.loss.detach())
        signals = {k: v for k, v in out.extras.items() if isinstance(v, torch.Tensor)}
        values = torch.stack(
            [
                out.loss.detach().float(),
                std_of_l2_normalized_tensor(out.projections),
                std_of_l2_normalized_tensor(out.features),
                finite.float(),
                *(v.detach().float().reshape(()) for v in signals.values()),
            ]
        )  # (4 + method signals,) on the training device
        self.proj_dim = int(out.projections.shape[1])
        host = {
            "type": "step",
            "step": int(trainer.global_step),
            "epoch": int(trainer.current_epoch),
            "batch": int(batch_idx),
            "batches_per_epoch": int(trainer.num_training_batches),
            "rep_std_ref": 1 / math.sqrt(self.proj_dim),
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            "images_per_s": float(self._rate),
            "seconds": now - self._t_start,
            **{k: float(v) for k, v in out.extras.items() if k not in signals},
        }
        self._pending.append((host, list(signals), values))
        last = batch_idx + 1 >= trainer.num_training_batches or (
            0 < trainer.max_steps <= trainer.global_step
        )
        due = len(self._pending) >= self.readback_every or last
        if due:
            self._write_pending(trainer)
        if not self._stop_requested and self._stop_asked():
            self._stop_requested = True
        alone = trainer.world_size == 1  # a local decision needs no agreement
        if due or (self._stop_requested and alone):
            self._write_pending(trainer)
            self._decide(trainer)

    def _write_pending(self, trainer: L.Trainer) -> None:
        """Read the queued values back (one sync) and write their step records."""
        pending, self._pending = self._pending, []
        flat = torch.cat([v for _, _, v in pending]).tolist() if pending else []
        at = 0
        for host, names, v in pending:
            row, at = flat[at : at + len(v)], at + len(v)
            loss, proj_std, feat_std, finite = row[:4]
            if not finite:
                if self._nonfinite_step is None:
                    self._nonfinite_step = host["step"] - 1  # the step that produced it
                continue
            signals = dict(zip(names, row[4:], strict=True))
            rec = {**host, "loss": loss, "rep_std": proj_std, "rep_std_backbone": feat_std,
                   **signals}  # fmt: skip
            self._epoch_losses.append(loss)
            self._epoch_proj_std.append(proj_std)
            self._epoch_feat_std.append(feat_std)
            for k, x in signals.items():
                self._epoch_signals.setdefault(k, []).append(x)
            if trainer.is_global_zero:
                self.writer.record(rec)
                self.users.call("on_step", rec)

    def _decide(self, trainer: L.Trainer, reduce: bool = True) -> None:
        """Stop or fail the run; under DDP the decisions are reduced across the ranks first.

        Args:
            trainer: The trainer.
            reduce: Agree across ranks (only where every rank decides at the same batch).
        """
        nonfinite, stop = self._nonfinite_step is not None, self._stop_requested
        if reduce and trainer.world_size > 1:
            nonfinite = bool(trainer.strategy.reduce_boolean_decision(nonfinite, all=False))
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if nonfinite and not self.failed:
            step = self._nonfinite_step
            where = f"at step {step}" if step is not None else "on another rank"
            self.failed = (
                f"The loss became non-finite (NaN/inf) {where}; the run was stopped (that "
                f"step's gradients were zeroed). Lower the learning rate, use "
                f"precision='32-true', or check the data."
            )
            self.event(trainer, "nan", self.failed)
            trainer.should_stop = True
        elif stop and not self.stopped and not self.failed:
            self.stopped = self._stop_requested = True
            trainer.should_stop = True
            self.event(trainer, "stopped", f"Stopped by request after step {trainer.global_step}.")

    def _monitor(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Held-out signals: backbone std and rank, projector rank, kNN accuracy."""
        es = self.eval_set
        if es is None or len(es.query) < 2:
            return {}
        module: Any = pl_module
        method = module.method
        dev, cl = pl_module.device, module.channels_last
        q = es.features(method.backbone, es.query, dev, cl)
        res: dict[str, Any] = {"rep_std_backbone": std_of_l2_normalized(q),
                               "rankme_backbone": rankme(q)}  # fmt: skip
        modes = {m: m.training for m in method.modules()}
        method.eval()  # the projector as at inference (BatchNorm on its running statistics)
        try:
            with torch.no_grad():
                z = method.project(q)
        finally:
            for m, mode in modes.items():
                m.training = mode
        if z is not None:
            res["rankme_projector"] = rankme(z.float())
        if es.bank_labels is not None and es.query_labels is not None:
            bank = es.features(method.backbone, es.bank, dev, cl)
            res["knn_acc"] = float(
                knn_accuracy(
                    bank, es.bank_labels, q, es.query_labels, k=self.knn_k, temperature=self.knn_t
                )
            )
        return res

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Epoch record with kNN and std, collapse check, checkpoint."""
        if self._pending:  # the epoch ended between read-backs: write what is left
            self._write_pending(trainer)
            self._decide(trainer, reduce=False)
        if self.failed:
            return
        # A stop request ends the run at once: the partial epoch gets its record (so a resumed
        # run's history stays continuous) but no kNN pass.
        partial = self.stopped and self._partial(trainer)
        seconds_epoch = time.perf_counter() - self._epoch_t0
        n_steps = max(1, len(self._epoch_losses))
        monitor = {} if partial else self._monitor(trainer, pl_module)
        ref = 1 / math.sqrt(self.proj_dim or self.feature_dim)
        rep_std = float(np.mean(self._epoch_proj_std)) if self._epoch_proj_std else None
        backbone_std = monitor.pop("rep_std_backbone", None)
        if backbone_std is None and self._epoch_feat_std:
            backbone_std = float(np.mean(self._epoch_feat_std))
        module: Any = pl_module
        extras = module.last_output.extras if module.last_output is not None else {}
        extras = {k: v for k, v in extras.items() if not isinstance(v, torch.Tensor)}
        signals = {k: float(np.mean(v)) for k, v in self._epoch_signals.items() if v}
        rec = {
            "type": "epoch",
            "epoch": int(trainer.current_epoch),
            "epochs": self.epochs,
            "step": int(trainer.global_step),
            "loss": float(np.mean(self._epoch_losses)) if self._epoch_losses else None,
            "rep_std": rep_std,
            "rep_std_ref": ref,
            "rep_std_backbone": backbone_std,
            "rep_std_backbone_ref": 1 / math.sqrt(self.feature_dim),
            "rankme_backbone": monitor.get("rankme_backbone"),
            "rankme_projector": monitor.get("rankme_projector"),
            "knn_acc": monitor.get("knn_acc"),
            "knn_chance": self.eval_set.chance if self.eval_set is not None else None,
            **{key: self.baselines.get(key) for key in BASELINE_KEYS},
            "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            "images_per_s": n_steps
            * self.batch_size
            * trainer.world_size
            / max(seconds_epoch, 1e-9),
            "seconds": time.perf_counter() - self._t_start,
            **{k: float(v) for k, v in extras.items()},
            **signals,
        }
        rec.update(relative_signals(rec))
        if partial:
            rec["partial"] = True
        if trainer.is_global_zero:
            self.writer.record(rec)
            knn = f", kNN {rec['knn_acc']:.3f}" if rec["knn_acc"] is not None else ""
            if knn and rec["knn_acc_init"] is not None:
                knn += f" (random init {rec['knn_acc_init']:.3f})"
            self.writer.log(
                f"epoch {rec['epoch'] + 1}/{self.epochs}: loss {rec['loss']:.4f}, "
                f"std {rep_std:.4f} (healthy ~{ref:.4f}){knn}, {rec['images_per_s']:.0f} img/s"
            )
            self.users.call("on_epoch", rec)
        if not partial:
            for kind, message in self.detector.update(rec):
                self.event(trainer, kind, message)
        self.save(trainer, pl_module)

    def _partial(self, trainer: L.Trainer) -> bool:
        return (
            trainer.fit_loop.epoch_loop.batch_progress.current.ready < trainer.num_training_batches
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Final checkpoint and export (also after a stop)."""
        if self._pending:
            self._write_pending(trainer)
        if not self.failed:
            self.save(trainer, pl_module)

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write last.ckpt atomically and export the backbone state_dict."""
        out = self.writer.out
        tmp = out / CHECKPOINT.parent / f".last.ckpt.tmp{os.getpid()}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, out / CHECKPOINT)
            module: Any = pl_module
            export_backbone(module.method.backbone, out)


def export_backbone(backbone: torch.nn.Module, out: Any) -> None:
    """exported/backbone.pt: the backbone's state_dict (torchvision keys for torchvision models)."""
    import io

    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out / BACKBONE, buf.getvalue())
