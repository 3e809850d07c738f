"""The `workbench` command line: methods, train (progress, resume, no overwrite), demo."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench.cli import _train_kwargs, build_parser, main

TINY = ["--model", "resnet18", "--input-size", "16", "--batch-size", "16"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 real digits as PNGs in one subfolder per class, as a user's folder would be."""
    ds = wb.load_dataset("digits")
    root = tmp_path_factory.mktemp("cli") / "digits"
    for i in range(48):
        d = root / str(int(ds.labels[i]))
        d.mkdir(parents=True, exist_ok=True)
        ds.image(i).save(d / f"{i}.png")
    return root


def test_methods_lists_every_method_with_guidance(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods", "-v"]) == 0
    out = capsys.readouterr().out
    for name in wb.list_methods():
        assert f"\n{name} " in f"\n{out}", name
    assert out.count("use when:") == len(wb.list_methods())
    assert "recommended: batch" in out


def test_train_progress_refusal_and_resume(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", str(folder), "--method", "simclr", "--out", str(out), *TINY]
    assert main([*argv, "--epochs", "2"]) == 0
    cap = capsys.readouterr()
    assert "epoch 2/2: loss" in cap.err and "std" in cap.err and "img/s" in cap.err
    assert cap.out.startswith("finished: ")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["num_train"] + cfg["num_val"] == 48

    # the same folder again: refused, and the message says what to pass; nothing is touched
    before = (out / "metrics.jsonl").read_text()
    assert main([*argv, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "resume" in err and "overwrite" in err
    assert (out / "metrics.jsonl").read_text() == before

    assert main([*argv, "--epochs", "3", "--resume"]) == 0
    capsys.readouterr()
    assert [h["epoch"] for h in wb.load_run(out).history] == [0, 1, 2]


def test_bad_values_exit_2_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--method", "simclrr", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "simclrr" in err and "simclr" in err.replace("simclrr", "")
    assert main(["train", "--method-arg", "temperature"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_scale_out_flags_reach_train() -> None:
    args = build_parser().parse_args(
        ["train", "--strategy", "ddp", "--devices", "2", "--num-nodes", "2", "--sync-batchnorm",
         "--method-arg", "temperature=0.2", "--transform-arg", "crop_scale=[0.2, 1.0]"]
    )  # fmt: skip
    kw = _train_kwargs(args)
    assert kw["strategy"] == "ddp" and kw["devices"] == 2 and kw["num_nodes"] == 2
    assert kw["sync_batchnorm"] is True
    assert kw["method_args"] == {"temperature": 0.2}
    assert kw["transform_args"] == {"crop_scale": (0.2, 1.0)}


def test_demo_writes_its_plots(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--data", str(folder), "--out", str(out), "--epochs", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    for name in ("training_curves.png", "embedding_map.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"wrote {png}" in printed


def test_ctrl_c_stops_cleanly_with_a_checkpoint(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "workbench.cli", "train", "--data", str(folder), "--out",
           str(out), "--epochs", "200", "--num-workers", "1", *TINY]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    metrics, deadline = out / "metrics.jsonl", time.monotonic() + 240
    while not (metrics.is_file() and '"type": "step"' in metrics.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C on a terminal: the DataLoader worker too
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Stopping after this batch" in stderr
    assert stdout.startswith("stopped: ") and "--resume" in stdout
    run = wb.load_run(out)
    assert run.status == "stopped" and run.checkpoint.is_file()
    assert len(run.history) < 200
    assert os.path.getsize(run.backbone_path) > 0
