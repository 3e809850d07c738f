"""Two-process DDP on CPU (gloo) through Lightning's own strategy: slow, run with -m slow."""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import workbench as wb

    ds = wb.load_dataset("digits", image_size=16)
    ds = ds.subset(np.arange(256))
    ds.meta = {"image_size": 16}
    run = wb.train(ds, method="simclr", model="resnet18", input_size=16, batch_size=32,
                   epochs=1, accelerator="cpu", devices=2, strategy="ddp",
                   out=sys.argv[1], num_workers=0)
    print("STATUS", run.status)
    """
)


@pytest.mark.slow
def test_two_process_ddp_cpu(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUS finished" in proc.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["devices"] == 2 and cfg["strategy"] == "ddp"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    # 205 training images / 2 processes / batch 32 = 3 steps per process, logged once (rank 0)
    assert len(steps) == 3
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "exported" / "backbone.pt").is_file()
