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


def _run_script(tmp_path, source, *args, timeout=1500):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    try:
        return subprocess.run(
            [sys.executable, str(script), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as e:  # the ranks disagreed and one waits forever
        pytest.fail(f"the 2-process run hung (ranks disagreed): {str(e.stderr)[-2000:]}")


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


RUN_HEADER = """
    import os, sys, threading, time
    import numpy as np
    import torch
    import workbench as wb
    from workbench.methods import METHODS, SimCLR

    ds = wb.load_dataset("digits", image_size=16).subset(np.arange(256))
    ds.meta = {"image_size": 16}
    out, strategy, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def rank():
        return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
"""


STOP_ON_RANK_1 = (
    RUN_HEADER
    + """
    class StopOnRankOne:  # a stop only rank 1 sees (a Stop racing one rank's poll)
        steps = 0
        def on_step(self, rec):
            pass
        def should_stop(self):
            StopOnRankOne.steps += 1
            return rank() == 1 and StopOnRankOne.steps >= 2

    run = wb.train(ds, method="simclr", model="resnet18", input_size=16, batch_size=32,
                   epochs=3, accelerator="cpu", devices=2, strategy=strategy, out=out,
                   num_workers=0, callbacks=[StopOnRankOne()])
    print("STATUS", run.status)
"""
)


@pytest.mark.slow
def test_a_stop_on_one_rank_stops_every_rank_at_the_same_batch(tmp_path):
    out = tmp_path / "run"
    proc = _run_script(tmp_path, STOP_ON_RANK_1, out, "ddp", "-")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUS stopped" in proc.stdout
    steps = [r for r in _records(out) if r["type"] == "step"]
    assert [s["step"] for s in steps] == [1, 2]  # 9 steps planned; both ranks stopped after 2


NOTEBOOK_RUN = (
    RUN_HEADER
    + """
    class NaNOnRankOne(SimCLR):  # a rank-local overflow from the second step on
        def training_step_loss(self, views, **kw):
            res = super().training_step_loss(views, **kw)
            if rank() == 1 and kw["step"] >= 1:
                res.loss = res.loss * float("nan")
            return res

    if mode == "nan":
        METHODS["simclr"] = NaNOnRankOne

    class StopButton:  # what the widget does: a threading.Event set by a click
        def __init__(self):
            self.event = threading.Event()
        def should_stop(self):
            return self.event.is_set()

    button = StopButton()

    def click_after_the_first_step():
        path = os.path.join(out, "metrics.jsonl")
        while not (os.path.exists(path) and '"type": "step"' in open(path).read()):
            time.sleep(0.05)
        button.event.set()

    if mode == "stop":
        threading.Thread(target=click_after_the_first_step, daemon=True).start()
    run = wb.train(ds, method="simclr", model="resnet18", input_size=16, batch_size=32,
                   epochs=3, accelerator="cpu", devices=2, strategy=strategy, out=out,
                   num_workers=0, callbacks=[button])
    print("STATUS", run.status)
"""
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, status", [("stop", "stopped"), ("nan", "failed"), ("-", "finished")]
)
def test_ddp_notebook_carries_stop_and_status(tmp_path, mode, status):
    out = tmp_path / "run"
    proc = _run_script(tmp_path, NOTEBOOK_RUN, out, "ddp_notebook", mode)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"STATUS {status}" in proc.stdout, proc.stdout[-2000:]
    steps = [r["step"] for r in _records(out) if r["type"] == "step"]
    kinds = [r.get("kind") for r in _records(out) if r["type"] == "event"]
    if mode == "stop":
        assert 1 <= len(steps) < 9 and "stopped" in kinds
    elif mode == "nan":  # rank 1's NaN in the second step fails both ranks at that batch
        assert steps == [1, 2] and "nan" in kinds  # rank 0's own second step was finite
    else:
        assert len(steps) == 9


MOCO_QUEUE = """
    import os, sys
    import torch
    import torch.distributed as dist
    import workbench as wb
    from workbench.methods.moco import MoCo

    def main(rank, world):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
        dist.init_process_group("gloo", rank=rank, world_size=world)
        torch.manual_seed(0)
        backbone, dim = wb.get_backbone("resnet18", input_size=16)
        moco = MoCo(backbone, dim, MoCo.make_config(queue_size=256), dataset_size=1024)
        torch.manual_seed(100 + rank)  # each rank its own images
        views = [torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)]
        moco.training_step_loss(views, epoch=0, step=0, max_steps=10)
        ptr = int(moco.criterion.bank_ptr)
        bank = moco.criterion.bank[:ptr].clone()
        banks = [torch.zeros_like(bank) for _ in range(world)]
        dist.all_gather(banks, bank)
        if rank == 0:
            same = all(torch.equal(b, banks[0]) for b in banks)
            print("PTR", ptr, "SAME", same)
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(main, args=(2,), nprocs=2)
"""


@pytest.mark.slow
def test_moco_queue_holds_every_ranks_keys(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _run_script(tmp_path, MOCO_QUEUE, port, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 2 ranks x 2 views x 8 keys entered one shared queue (local keys only: 16, and banks differ)
    assert "PTR 32 SAME True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
