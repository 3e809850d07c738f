"""The benchmark scripts run end to end on tiny settings (``--quick``), so they cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run(script: str, tmp_path: Path, *args: str) -> None:
    env = {**os.environ, "WORKBENCH_BENCH_RESULTS": str(tmp_path), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_train_throughput_quick(tmp_path: Path) -> None:
    pytest.importorskip("lightly")
    _run("train_throughput.py", tmp_path, "--out", "tp")
    data = json.loads((tmp_path / "tp.json").read_text())
    assert set(data["summary"]) == {"ours", "plain", "lightly", "ceiling"}
    assert all(r["images_per_s"] > 0 for r in data["summary"].values())
    assert {"ours/plain", "ours/lightly", "ours/ceiling"} <= set(data["ratios"])
    assert data["machine"]["nproc"] >= 1


@pytest.mark.slow
def test_quality_quick(tmp_path: Path) -> None:
    pytest.importorskip("lightly")
    _run("quality.py", tmp_path, "--out", "q")
    data = json.loads((tmp_path / "q.json").read_text())
    summary = data["results"]["digits"]["summary"]
    assert set(summary) == {"ours", "lightly", "random"}
    assert all(0.0 <= s["mean"] <= 1.0 for s in summary.values())


@pytest.mark.slow
def test_interactive_quick(tmp_path: Path) -> None:
    pytest.importorskip("lightly")
    _run("interactive.py", tmp_path, "--out", "i", "--no-umap-reference")
    data = json.loads((tmp_path / "i.json").read_text())
    assert data["import"]["workbench_best_s"] > 0
    assert data["knn"]["knn_accuracy_s"] > 0
    assert "300x512" in data["projection"]


def test_render_writes_markdown(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import common

    out = common.render(tmp_path / "RESULTS.md")
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert all(len(line) <= 100 for line in text.splitlines() if not line.startswith("|"))
