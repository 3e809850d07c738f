"""How long DINO without centring takes to collapse on notebook 03's data (256 digits, 16 px).

Without centring (``center_momentum=1.0``: the centre stays at zero) the sharpened teacher is
expected to pile every image onto one output dimension (Caron et al. 2021, Sec. 5.3, Fig. 7).
This trains that run (and, with ``--control``, the default DINO on the same data and seed) on a
``--epochs`` schedule, stopping at the collapse event, and records each epoch's teacher signals
and the epoch of every event, so that ``tests/test_collapse_runs.py`` can use a schedule that is
known to collapse.

Usage:
    python benchmarks/dino_no_centring.py [--epochs 400] [--control] [--out DIR]
    python benchmarks/dino_no_centring.py --from-run DIR   # record a run folder made so
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.data import load_dataset  # noqa: E402
from workbench.eval.collapse import relative_signals  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def notebook03_data() -> wb.ImageDataset:
    """256 digits at 16 px, drawn as tests/conftest.py's ``digits_small`` draws them."""
    ds = load_dataset("digits")
    idx = np.sort(np.random.default_rng(0).choice(len(ds), 256, replace=False))
    small = ds.subset(idx, name="digits[256]")
    small.meta = {"image_size": 16}
    return small


class StopAtCollapse:
    """Ends the run at its collapse event."""

    def __init__(self) -> None:
        self.fired = False

    def on_event(self, ev: dict) -> None:
        self.fired = self.fired or ev["kind"] == "collapse"

    def should_stop(self) -> bool:
        return self.fired


def probe(name: str, method_args: dict, epochs: int, out: Path) -> dict:
    t0 = time.perf_counter()
    small = dict(model="resnet18", batch_size=64, input_size=16, seed=0)
    run = wb.train(notebook03_data(), method="dino", method_args=method_args, epochs=epochs,
                   out=out / name, callbacks=[StopAtCollapse()], **small)  # fmt: skip
    return record(name, run, time.perf_counter() - t0)


def record(name: str, run: wb.Run, wall: float | None) -> dict:
    """The per-epoch teacher signals and the events of one run."""
    method_args = {k: v for k, v in run.config["method_args"].items() if k == "center_momentum"}
    epochs = run.config["epochs"]
    rows = [
        {
            "epoch": r["epoch"] + 1,
            "knn": round(r["knn_acc"], 3),
            "entropy": round(rel["teacher_entropy_frac"], 3),
            "batch_entropy": round(rel["teacher_batch_entropy_frac"], 3),
            "kl": round(r["teacher_student_kl"], 3),
            "rank": round(r["rankme_backbone"], 2),
        }
        for r, rel in ((r, relative_signals(r)) for r in run.history)
    ]
    events = [
        {"kind": e["kind"], "epoch": e["epoch"] + 1, "message": e["message"]}
        for e in run.events
        if e["kind"] in ("collapse", "recovered")
    ]
    chance = run.history[-1].get("knn_chance")
    return {"run": name, "method_args": method_args, "epochs": epochs, "status": run.status,
            "wall_s": None if wall is None else round(wall),
            "knn_chance": chance, "events": events, "per_epoch": rows}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=400, help="the schedule's length")
    ap.add_argument("--control", action="store_true", help="also the default DINO")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    ap.add_argument("--from-run", type=Path, nargs="+", default=None, help="run folders to record")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dino-no-centring-"))
    cases = {"no-centring": {"center_momentum": 1.0}}
    if args.control:
        cases["default"] = {}
    if args.from_run:
        results = [record(p.name, wb.load_run(p), None) for p in args.from_run]
    else:
        results = [probe(name, margs, args.epochs, out) for name, margs in cases.items()]
    for res in results:
        for r in res["per_epoch"][:: max(1, len(res["per_epoch"]) // 30)]:
            print(res["run"], r, flush=True)
        print(res["run"], "events:", res["events"], f"({res['wall_s']} s)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "dino_no_centring.json"
    path.write_text(json.dumps({"machine": machine(), "results": results}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
