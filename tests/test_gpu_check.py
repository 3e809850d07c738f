"""benchmarks/gpu_check.py: the prepared GPU check runs end to end on a CPU and imports the core
only (the GPU machine has no ipywidgets, umap-learn or lightly)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_gpu_check_imports_only_the_core():
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import gpu_check; "
        "import workbench.training.api, workbench.training.callbacks, workbench.methods; "
        "bad = [m for m in ('ipywidgets', 'umap', 'lightly') if m in sys.modules]; "
        "print('OPTIONAL', bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OPTIONAL []" in proc.stdout


@pytest.mark.slow
def test_gpu_check_quick_on_cpu_end_to_end(tmp_path):
    env = {**os.environ, "WORKBENCH_BENCH_RESULTS": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check_cpu_quick.json").read_text())
    import workbench as wb

    assert set(res["methods"]) == set(wb.list_methods())
    for m, r in res["methods"].items():
        assert r["status"] == "finished" and r["epochs_done"] == 2, (m, r)
    dino = res["dino_multicrop"]
    assert dino["status"] == "finished" and dino["augment_on"] == "device"
    assert len(dino["views"]) == 8
    tp = res["throughput"]
    assert tp["ours_images_per_s"] > 0
    assert ("ratio_ours_over_lightly" in tp) or "not installed" in tp["lightly_note"]
