"""AugmentationExplorer latency: control change -> preview redrawn (budget: 300 ms).

Setting: 6 images x 4 views at 64 px (simclr with count=4, input_size=64) on scikit-learn's
photos (427x640, repeated to 6 images), as in issue 3. Each of ``--changes`` control changes
(cycling through probabilities, ranges, strengths) is timed from setting ``.value`` to the
observer's return, i.e. until ``explorer.preview.value`` holds the new PNG. Wall and thread CPU
time are both recorded, with the load average, because the machine is shared: CPU time is what
the redraw costs, wall time what the user waits.

Reference measured in the same run: the same preview through matplotlib
(``augmentation_grid`` + ``figure_to_png``), which the widget avoids.

Also writes the dino-on-photos preview of the widget to benchmarks/results/.

Usage:
    MPLBACKEND=Agg .venv/bin/python benchmarks/preview_latency.py [--changes 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
BUDGET_MS = 300.0


def _stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "median_ms": round(1000 * statistics.median(xs), 1),
        "p90_ms": round(1000 * xs[int(0.9 * (len(xs) - 1))], 1),
        "max_ms": round(1000 * xs[-1], 1),
        "mean_ms": round(1000 * statistics.fmean(xs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()

    import torch

    import workbench as wb
    from workbench.augment.preview import sample_views
    from workbench.augment.transforms import torch_threads
    from workbench.plots.augment import augmentation_grid
    from workbench.plots.common import figure_to_png
    from workbench.widgets import AugmentationExplorer

    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    photos = wb.load_dataset("photos")
    images = [photos.image(i % len(photos)) for i in range(6)]

    ex = AugmentationExplorer(images, method="simclr", n_images=6, input_size=64, count=4)
    assert ex.recipe.n_views == 4 and ex.recipe.view_sizes == [64] * 4
    changes = [
        ("view_cj_prob", [0.5, 0.8]),
        ("view_crop_scale", [(0.3, 1.0), (0.08, 1.0)]),
        ("view_gray_prob", [0.6, 0.2]),
        ("view_blur_prob", [1.0, 0.5]),
        ("view_cj_strength", [0.5, 1.0]),
        ("view_hflip_prob", [1.0, 0.5]),
        ("view_solarize_prob", [0.3, 0.0]),
        ("view_rr_prob", [0.5, 0.0]),
    ]
    for _ in range(2):  # warm-up: first-call costs (font loading, torch dispatch caches)
        ex.controls["view_cj_prob"].value = 0.7
        ex.controls["view_cj_prob"].value = 0.8
    wall: list[float] = []
    cpu: list[float] = []
    sizes: list[int] = []
    for i in range(args.changes):
        key, values = changes[i % len(changes)]
        value = values[(i // len(changes)) % 2]
        before = ex.preview.value
        w0, c0 = time.perf_counter(), time.thread_time()
        ex.controls[key].value = value
        wall.append(time.perf_counter() - w0)
        cpu.append(time.thread_time() - c0)
        assert ex.error.value == "", ex.error.value
        assert ex.preview.value != before, key
        sizes.append(len(ex.preview.value))

    # Breakdown and reference, same images, transform and seed.
    t = ex.transform
    sample_wall: list[float] = []
    mpl_wall: list[float] = []
    for seed in range(5):
        w0 = time.perf_counter()
        with torch_threads(1):
            sample_views(images, t, seed=seed)
        sample_wall.append(time.perf_counter() - w0)
        w0 = time.perf_counter()
        with torch_threads(1):
            figure_to_png(augmentation_grid(images, t, seed=seed))
        mpl_wall.append(time.perf_counter() - w0)

    # The acceptance preview: dino on photos, as the widget shows it.
    dino = AugmentationExplorer("photos", method="dino")
    (RESULTS / "preview_dino_photos.png").write_bytes(dino.preview.value)
    dino.show_params.value = True
    (RESULTS / "preview_dino_photos_params.png").write_bytes(dino.preview.value)

    redraw = _stats(wall)
    reference = _stats(mpl_wall)
    result = {
        "benchmark": "AugmentationExplorer control change -> preview redraw",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "MPLBACKEND=Agg .venv/bin/python benchmarks/preview_latency.py "
        f"--changes {args.changes}",
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "setting": {
            "images": "sklearn photos 427x640, repeated to 6",
            "method": "simclr",
            "views": ex.recipe.view_sizes,
            "n_changes": args.changes,
            "png_kb_median": round(statistics.median(sizes) / 1024, 1),
        },
        "redraw_wall": redraw,
        "redraw_thread_cpu": _stats(cpu),
        "sampling_views_only_wall": _stats(sample_wall),
        "reference_matplotlib_png_wall": reference,
        "ratio_widget_vs_matplotlib": round(redraw["median_ms"] / reference["median_ms"], 3),
        "budget_ms": BUDGET_MS,
        "within_budget_median": redraw["median_ms"] <= BUDGET_MS,
        "dino_photos_redraw_ms": round(1000 * dino.last_render_s, 1),
    }
    (RESULTS / "preview_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
