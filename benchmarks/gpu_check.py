"""GPU check: one prepared command for a machine with a GPU (at most ~5 minutes on one GPU).

It covers what no CPU test reaches:

- every method for 2 epochs at 96 px in bf16 (digits, upsampled), the status, loss, kNN
  accuracy, images/s and peak GPU memory of each run, and the precision ``auto`` resolves to;
- DINO with multi-crop (2 global + 6 local views) on the batched on-device path;
- throughput of ``wb.train`` against the Lightly SSL loop (ratio, same run, alternating) and
  peak memory; skipped with a note where Lightly is not installed;
- JSON results in ``benchmarks/results/gpu_check_<device>[_quick].json``.

The GPU machine runs its own image (Python 3.12, torch 2.11, torchvision 0.26, lightning,
matplotlib, scikit-learn; no ipywidgets, umap-learn or lightly, and no registry), so this file
imports only the core: ``workbench`` (lazy), torch, lightning, numpy, and ``common`` (stdlib at
import). Nothing here imports ipywidgets or umap; Lightly only when it is installed.

Usage:
    python benchmarks/gpu_check.py                 # on the GPU machine (cuda)
    python benchmarks/gpu_check.py --device cpu --quick   # the smoke test, on any CPU
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_core(device: str) -> dict[str, Any]:
    """Machine and versions without importing optional packages (umap, lightly)."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {n: _version(n) for n in ("torch", "torchvision", "lightning", "lightly")},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = list(torch.cuda.get_device_capability(0))
    return info


def _cpu_model() -> str:
    from workbench.training.memory_format import cpu_model

    return cpu_model()


def _peak_reset(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None  # CPU: the process RSS is not the run's alone; see train_throughput.py


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        return {"input_size": 16, "batch_size": 32, "epochs": 2, "images": 160, "steps": 6}
    return {"input_size": 96, "batch_size": 128, "epochs": 2, "images": None, "steps": 30}


def _dataset(s: dict[str, Any]) -> Any:
    import numpy as np

    import workbench as wb

    ds = wb.load_dataset("digits", image_size=s["input_size"])
    if s["images"]:
        ds = ds.subset(np.arange(s["images"]), name=f"digits[{s['images']}]")
        ds.meta = {"image_size": s["input_size"]}
    return ds


def _train(ds: Any, out: Path, device: str, s: dict[str, Any], **kw: Any) -> Any:
    import workbench as wb

    return wb.train(
        ds,
        out=out,
        model="resnet18",
        epochs=kw.pop("epochs", s["epochs"]),
        batch_size=s["batch_size"],
        input_size=s["input_size"],
        accelerator="gpu" if device == "cuda" else "cpu",
        precision=kw.pop("precision", "bf16-mixed" if device == "cuda" else "32-true"),
        num_workers=0,
        seed=0,
        **kw,
    )


def _summary(run: Any, seconds: float, device: str) -> dict[str, Any]:
    last = run.history[-1] if run.history else {}
    rates = [r["images_per_s"] for r in run.steps[3:]] or [None]
    return {
        "status": run.status,
        "epochs_done": len(run.history),
        "loss": last.get("loss"),
        "knn_acc": last.get("knn_acc"),
        "images_per_s": last.get("images_per_s"),
        "images_per_s_last_step": rates[-1],
        "seconds": round(seconds, 2),
        "peak_mem_mib": _peak_mib(device),
        "precision": run.config.get("precision"),
        "channels_last": run.config.get("channels_last"),
        "events": [e["kind"] for e in run.events if e["kind"] not in ("hint",)],
    }


def check_methods(ds: Any, tmp: Path, device: str, s: dict[str, Any]) -> dict[str, Any]:
    """Every method for ``epochs`` epochs; distillation learns from the SimCLR run."""
    import workbench as wb

    results: dict[str, Any] = {}
    methods = sorted(wb.list_methods(), key=lambda m: m.startswith("distillation"))
    for m in methods:
        args: dict[str, Any] = {}
        if m.startswith("distillation"):
            args = {"teacher": f"run:{tmp / 'simclr'}"}
        _peak_reset(device)
        t0 = time.perf_counter()
        try:
            run = _train(ds, tmp / m, device, s, method=m, method_args=args)
            results[m] = _summary(run, time.perf_counter() - t0, device)
        except Exception as e:  # noqa: BLE001 - one method's failure must not hide the others
            results[m] = {"status": "error", "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()[-2000:]}  # fmt: skip
        print(f"  {m:15s} {results[m].get('status')}", flush=True)
    return results


def check_dino_multicrop(ds: Any, tmp: Path, device: str, s: dict[str, Any]) -> dict[str, Any]:
    """DINO with 2 global + 6 local crops, on the cached batched (on-device) path."""
    import workbench as wb

    _peak_reset(device)
    t0 = time.perf_counter()
    run = _train(ds, tmp / "dino-multicrop", device, s, method="dino", augment_on="device",
                 transform_args={"local_count": 6})  # fmt: skip
    out = _summary(run, time.perf_counter() - t0, device)
    rec = wb.recipe("dino", input_size=s["input_size"], local_count=6)
    out.update(augment_on=run.config["augment_on"], views=rec.view_sizes)
    return out


def check_throughput(ds: Any, tmp: Path, device: str, s: dict[str, Any]) -> dict[str, Any]:
    """SimCLR images/s: ``wb.train`` vs the Lightly SSL loop, alternating, 2 rounds each."""
    steps, warm = s["steps"], 3
    out: dict[str, Any] = {"ours": [], "lightly": [], "steps": steps, "warmup": warm}
    have_lightly = importlib.util.find_spec("lightly") is not None
    if not have_lightly:
        out["lightly_note"] = (
            "skipped: Lightly SSL is not installed here (pip install lightly, the `bench` "
            "extra); only wb.train was measured."
        )
    for r in range(2):
        _peak_reset(device)
        run = _train(ds, tmp / f"tp-{r}", device, s, method="simclr", val_fraction=0.0,
                     max_steps=warm + steps, epochs=100)  # fmt: skip
        stamps = [float(x["seconds"]) for x in run.steps]
        timed = stamps[warm - 1 :]
        out["ours"].append(s["batch_size"] * (len(timed) - 1) / (timed[-1] - timed[0]))
        out["ours_peak_mem_mib"] = _peak_mib(device)
        if have_lightly:
            import torch

            loop = common.make_loop("lightly", "simclr", s["input_size"])
            _peak_reset(device)
            st = common.train_loop(loop, ds, range(len(ds)), batch_size=s["batch_size"],
                                   max_steps=warm + steps, num_workers=min(8, os.cpu_count() or 1),
                                   device=device, amp=device == "cuda")  # fmt: skip
            t = st[warm - 1 :]
            out["lightly"].append(s["batch_size"] * (len(t) - 1) / (t[-1] - t[0]))
            out["lightly_peak_mem_mib"] = _peak_mib(device)
            del loop
            if device == "cuda":
                torch.cuda.empty_cache()
    out["ours_images_per_s"] = common.median(out["ours"])
    if out["lightly"]:
        out["lightly_images_per_s"] = common.median(out["lightly"])
        out["ratio_ours_over_lightly"] = out["ours_images_per_s"] / out["lightly_images_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the checks; exit status 1 when a method failed."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--device", default=default, choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="tiny settings (the CPU smoke test)")
    p.add_argument("--skip", default="", help="comma-separated: methods,dino,throughput")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA GPU; use --device cpu --quick")
    s = _settings(args)
    skip = set(filter(None, args.skip.split(",")))
    t0 = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_core(args.device), "settings": s}
    ds = _dataset(s)
    with tempfile.TemporaryDirectory() as tmp:
        if "methods" not in skip:
            print("every method, 2 epochs:", flush=True)
            result["methods"] = check_methods(ds, Path(tmp), args.device, s)
        if "dino" not in skip:
            result["dino_multicrop"] = check_dino_multicrop(ds, Path(tmp), args.device, s)
            print(f"  dino multi-crop {result['dino_multicrop']['status']}", flush=True)
        if "throughput" not in skip:
            result["throughput"] = check_throughput(ds, Path(tmp), args.device, s)
            tp = result["throughput"]
            print(f"  throughput ours {tp['ours_images_per_s']:.0f} img/s, ratio vs Lightly "
                  f"{tp.get('ratio_ours_over_lightly', 'n/a')}", flush=True)  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 1)
    name = f"gpu_check_{args.device}" + ("_quick" if args.quick else "")
    path = common.write_json(name, result)
    print(f"wrote {path} in {result['seconds']} s")
    failed = [m for m, r in result.get("methods", {}).items() if r.get("status") != "finished"]
    if failed:
        print(f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
