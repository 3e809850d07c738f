"""The run-folder format: the one module that knows how a run is laid out on disk.

```
<out>/config.json            everything needed to reproduce the run ("auto" values resolved)
<out>/metrics.jsonl          one JSON object per line: type = step | epoch | event | status
<out>/checkpoints/last.ckpt  full training state (resumable), written atomically
<out>/exported/backbone.pt   backbone state_dict (torchvision keys for torchvision models)
<out>/train.log              human-readable log
```
``train`` writes through :class:`RunWriter`; ``eval`` and the widgets read through :func:`load_run`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
BACKBONE = Path("exported") / "backbone.pt"
LOG = "train.log"
STOP_FILE = "stop.request"  # exists while a stop has been requested (ranks in child processes)
STATUSES = ("running", "finished", "stopped", "failed")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    return repr(o)


def _clean(value: Any) -> Any:
    """Replace NaN/inf by None so metrics.jsonl stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader never sees it half-written (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_run_folder(path: str | Path) -> bool:
    """True when ``path`` holds a run's config.json."""
    return (Path(path) / CONFIG).is_file()


def new_run_dir(root: str | Path = "runs", prefix: str = "run") -> Path:
    """A fresh, not yet existing folder ``<root>/<prefix>-YYYYmmdd-HHMMSS[-k]``."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = root / f"{prefix}-{stamp}"
    k = 1
    while out.exists():
        k += 1
        out = root / f"{prefix}-{stamp}-{k}"
    return out


def prepare_out(out: str | Path, *, overwrite: bool, resume: bool) -> Path:
    """Validate the output folder: never overwrite a user's run unless asked to.

    Raises:
        ValueError: ``out`` is a non-empty folder and neither ``overwrite`` nor ``resume`` is set;
            or ``resume`` is set but there is no checkpoint to resume from.
    """
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"Output path {str(out)!r} is a file; pass a folder for `out`.")
    non_empty = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ValueError(
                f"resume=True but {str(out / CHECKPOINT)!r} does not exist; start a new run "
                f"(resume=False) or point `out` at a run folder with a checkpoint."
            )
        return out
    if non_empty and not overwrite:
        raise ValueError(
            f"Output folder {str(out)!r} already exists and is not empty. Pass resume=True to "
            f"continue that run, overwrite=True to replace it, or choose another `out`."
        )
    if non_empty and overwrite:
        if not is_run_folder(out):
            raise ValueError(
                f"overwrite=True refused: {str(out)!r} is not a workbench run folder (no "
                f"{CONFIG}); it may hold your own files. Choose another `out`."
            )
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


class RunWriter:
    """Appends records to a run folder; thread-safe; every line is flushed at once.

    Args:
        out: The run folder.
        enabled: False for the non-zero ranks of a multi-process run: nothing is written.
    """

    def __init__(self, out: Path, enabled: bool = True) -> None:
        self.out = Path(out)
        self.enabled = enabled
        self._lock = threading.Lock()
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.out / METRICS, "a", encoding="utf-8")
        self._log = open(self.out / LOG, "a", encoding="utf-8")

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (``ddp_spawn`` sends the callbacks to its child processes): no handles."""
        return {"out": self.out, "enabled": self.enabled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reopen the files for appending in the receiving process."""
        self.__init__(state["out"], state["enabled"])  # type: ignore[misc]

    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json (atomically)."""
        if not self.enabled:
            return
        text = json.dumps(_clean(config), indent=2, default=_json_default, sort_keys=True)
        atomic_write_bytes(self.out / CONFIG, text.encode())

    def record(self, rec: dict[str, Any]) -> None:
        """Append one record (must carry a ``type``) to metrics.jsonl and flush."""
        if not self.enabled:
            return
        line = json.dumps(_clean(rec), default=_json_default)
        with self._lock:
            self._metrics.write(line + "\n")
            self._metrics.flush()

    def log(self, message: str, level: str = "INFO") -> None:
        """Append a timestamped line to train.log."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._lock:
            for line in str(message).splitlines() or [""]:
                self._log.write(f"{stamp} {level:7s} {line}\n")
            self._log.flush()

    def status(self, status: str, **extra: Any) -> None:
        """Record the run's status (the last status record wins)."""
        if status not in STATUSES:
            raise ValueError(f"Unknown status {status!r}. Valid: {list(STATUSES)}")
        self.record({"type": "status", "status": status, "time": time.time(), **extra})
        self.log(f"status: {status}" + (f" ({extra})" if extra else ""))

    def truncate_after(self, step: int) -> None:
        """Drop records written after a checkpoint (used on resume, so history stays continuous)."""
        if not self.enabled:
            return
        with self._lock:
            self._metrics.close()
            path = self.out / METRICS
            keep = []
            for rec in read_records(path):
                t = rec.get("type")
                if t == "step" and rec.get("step", 0) > step:
                    continue
                if t == "epoch" and rec.get("step", 0) > step:
                    continue
                keep.append(json.dumps(rec, default=_json_default))
            atomic_write_bytes(path, ("\n".join(keep) + "\n" if keep else "").encode())
            self._metrics = open(path, "a", encoding="utf-8")

    def close(self) -> None:
        """Close the files."""
        if not self.enabled:
            return
        with self._lock:
            self._metrics.close()
            self._log.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    """Parse metrics.jsonl, ignoring a half-written last line (a run still being written)."""
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class Run:
    """A run folder, read back: config, per-epoch history, per-step records, events, status.

    Attributes:
        out: The run folder.
        config: The resolved configuration (config.json).
        history: Per-epoch records (epoch, loss, rep_std, rep_std_ref, knn_acc, lr, ...).
        steps: Per-step records (step, epoch, loss, lr, images_per_s, ...).
        events: Collapse warnings, NaN, hints, stops, errors.
        status: "running" | "finished" | "stopped" | "failed".
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.config: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.status = "running"
        self._backbone: Any = None
        self.refresh()

    @property
    def name(self) -> str:
        """The folder name."""
        return self.out.name

    @property
    def checkpoint(self) -> Path:
        """Path of the resumable checkpoint (may not exist yet)."""
        return self.out / CHECKPOINT

    @property
    def backbone_path(self) -> Path:
        """Path of the exported backbone state_dict."""
        return self.out / BACKBONE

    def refresh(self) -> Run:
        """Re-read config.json and metrics.jsonl (cheap; call it to follow a live run)."""
        cfg = self.out / CONFIG
        if cfg.is_file():
            self.config = json.loads(cfg.read_text(encoding="utf-8"))
        history, steps, events, status = [], [], [], "running"
        for rec in read_records(self.out / METRICS):
            t = rec.get("type")
            if t == "epoch":
                history.append(rec)
            elif t == "step":
                steps.append(rec)
            elif t == "event":
                events.append(rec)
            elif t == "status":
                status = rec.get("status", status)
        self.history, self.steps, self.events, self.status = history, steps, events, status
        return self

    @property
    def backbone(self) -> Any:
        """The trained backbone (nn.Module in eval mode), rebuilt from the config and loaded."""
        if self._backbone is None:
            self._backbone = load_backbone(self)
        return self._backbone

    def summary(self) -> RunSummary:
        """Final metrics for tables and run browsers.

        A dict of raw numbers, shown rounded (``print(run.summary())``; a table in a notebook).
        """
        last = self.history[-1] if self.history else {}
        knn = [h["knn_acc"] for h in self.history if h.get("knn_acc") is not None]
        return RunSummary(
            name=self.name,
            out=str(self.out),
            method=self.config.get("method"),
            model=self.config.get("model"),
            status=self.status,
            epochs=f"{last.get('epoch', -1) + 1}/{self.config.get('epochs', '?')}",
            loss=last.get("loss"),
            rep_std=last.get("rep_std"),
            rep_std_ref=last.get("rep_std_ref"),
            knn_acc=knn[-1] if knn else None,
            best_knn_acc=max(knn) if knn else None,
            knn_acc_init=last.get("knn_acc_init"),
            images_per_s=last.get("images_per_s"),
            seconds=last.get("seconds"),
        )

    def __repr__(self) -> str:
        s = self.summary()
        rows = dict(s.rows())
        shown = ", ".join(f"{k}={rows[k]}" for k in ("status", "epochs", "kNN") if k in rows)
        return f"Run({str(self.out)!r}, method={s['method']}, {shown})"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


class RunSummary(dict):  # type: ignore[type-arg]
    """``Run.summary()``: the raw values for code, rounded for people when shown."""

    # key -> (title, format) for the rows shown; values that are None are left out
    FORMATS: dict[str, tuple[str, str]] = {
        "method": ("method", "s"),
        "model": ("backbone", "s"),
        "status": ("status", "s"),
        "epochs": ("epochs", "s"),
        "loss": ("loss", ".4f"),
        "rep_std": ("rep std", ".4f"),
        "rep_std_ref": ("healthy std", ".4f"),
        "knn_acc": ("kNN", ".1%"),
        "best_knn_acc": ("best kNN", ".1%"),
        "knn_acc_init": ("kNN at random init", ".1%"),
        "images_per_s": ("images/s", ",.0f"),
        "seconds": ("time", "time"),
    }

    def rows(self) -> list[tuple[str, str]]:
        """``(title, formatted value)`` for every known key that has a value."""
        out = []
        for key, (title, fmt) in self.FORMATS.items():
            value = self.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            if fmt == "time":
                m, sec = divmod(int(round(float(value))), 60)
                text = f"{m // 60}:{m % 60:02d}:{sec:02d}" if m >= 60 else f"{m}:{sec:02d}"
            else:
                text = format(value, fmt) if fmt != "s" else str(value)
            out.append((title, text))
        return out

    def __str__(self) -> str:
        rows = [(t, v) for t, v in self.rows() if t != "status"]
        head = f"{self.get('status', '?')}: {self.get('out') or self.get('name', '?')}"
        return head + "".join(f" · {t} {v}" for t, v in rows)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html

        cells = "".join(
            f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(t)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for t, v in self.rows()
        )
        title = html.escape(str(self.get("out") or self.get("name", "")))
        return f"<table><caption style='text-align:left'><b>{title}</b></caption>{cells}</table>"


def load_backbone(run: Run) -> Any:
    """Build the run's backbone from its config and load exported/backbone.pt."""
    import torch

    from workbench.nn.backbones import get_backbone

    path = run.backbone_path
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: the run has not finished an epoch yet, or failed "
            f"before exporting. Check {str(run.out / LOG)!r}."
        )
    model_name = run.config.get("model")
    if model_name not in (None, "custom"):
        module, _ = get_backbone(model_name, input_size=int(run.config.get("input_size", 224)))
    else:
        # A user's module: its class comes from the pickled initial module, the weights from
        # the exported state_dict (the pickle holds the weights before training).
        module = torch.load(
            run.out / "exported" / "backbone_module.pt", map_location="cpu", weights_only=False
        )
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return module.eval()


def load_run(out: str | Path) -> Run:
    """Open a run folder (finished, stopped, failed or still running).

    Raises:
        FileNotFoundError: ``out`` does not exist or holds no config.json.
    """
    out = Path(out).expanduser()
    if not out.exists():
        raise FileNotFoundError(f"Run folder {str(out)!r} does not exist.")
    if not is_run_folder(out):
        raise FileNotFoundError(
            f"{str(out)!r} is not a run folder (no {CONFIG}). Pass the folder `wb.train` wrote."
        )
    return Run(out)


def list_runs(root: str | Path = "runs") -> list[Run]:
    """Every run folder directly under ``root`` (newest first); other folders are ignored."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    runs = [Run(p) for p in root.iterdir() if p.is_dir() and is_run_folder(p)]
    return sorted(runs, key=lambda r: (r.out / CONFIG).stat().st_mtime, reverse=True)
