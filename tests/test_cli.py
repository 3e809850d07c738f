"""The `workbench` command line: methods, train (progress, resume, no overwrite), demo."""

import json
import os
import re
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
    args = ["demo", "--data", str(folder), "--out", str(out), "--epochs", "1", "--reducer", "pca"]
    assert main([*args, *TINY]) == 0
    printed = capsys.readouterr().out
    for name in ("training_curves.png", "embedding_map.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"wrote {png}" in printed
    # the verdict in points against the run's own random init, numbers for people
    assert re.search(r"kNN accuracy \d+\.\d% after training vs \d+\.\d% at random init "
                     r"\([+-]\d+\.\d points: ", printed), printed  # fmt: skip


def test_demo_trains_simclr_for_its_measured_budget() -> None:
    from workbench.cli import DEMO_EPOCHS, DEMO_SIMCLR_LR, build_parser, demo_lr

    args = build_parser().parse_args(["demo"])
    assert (args.epochs, args.method, args.lr) == (DEMO_EPOCHS, "simclr", None)
    assert DEMO_EPOCHS == 4  # the third round of demo_study.md: +7.2 points in <= 86 s on AVX2
    assert demo_lr("simclr", None) == DEMO_SIMCLR_LR == 0.015  # benchmarks/results/demo_study.md
    assert demo_lr("simclr", 0.1) == 0.1  # the user's rate wins
    assert demo_lr("vicreg", None) is None  # other methods keep their scaled default


def test_demo_verdict_says_whether_the_run_beat_random_init() -> None:
    from workbench.cli import demo_verdict

    s = {"status": "finished", "knn_acc": 0.8836, "knn_acc_init": 0.8123, "images_per_s": 1234.5}
    assert demo_verdict(s) == (
        "finished: kNN accuracy 88.4% after training vs 81.2% at random init "
        "(+7.1 points: learned); 1,234 img/s."
    )
    assert "did not beat random init" in demo_verdict({**s, "knn_acc": 0.7})
    assert "no kNN accuracy" in demo_verdict({**s, "knn_acc": None})


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


def test_every_option_has_help_and_its_default() -> None:
    """`workbench train --help`: every option has a help line, and "(default: X)" if it has one."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("train", "demo", "app"):
        p = sub.choices[command]  # type: ignore[attr-defined]
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{command} {action.option_strings} has no help text"
            if action.default not in (None, False):
                assert f"(default: {action.default})" in text, (command, action.dest)
    train_help = " ".join(sub.choices["train"].format_help().split())  # type: ignore[attr-defined]
    for flag, default in (("--epochs", 10), ("--batch-size", 128), ("--precision", "auto")):
        assert flag in train_help and f"(default: {default})" in train_help


def test_cli_defaults_are_wb_train_defaults() -> None:
    """One default per setting: the CLI's are wb.train's (the README's example uses them)."""
    import inspect

    from workbench.cli import TRAIN_DEFAULTS
    from workbench.training import train

    params = inspect.signature(train).parameters
    for key, value in TRAIN_DEFAULTS.items():
        assert params[key].default == value, key
    args = build_parser().parse_args(["train"])
    assert args.model == params["model"].default and args.epochs == params["epochs"].default
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = next(line for line in readme.splitlines() if "workbench train --data digits" in line)
    assert "--model" not in example or f"--model {params['model'].default} " in example


def test_backbones_lists_every_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for name, desc in wb.list_backbones().items():
        assert f"{name} " in out and desc in out


def test_methods_verbose_reads_the_cards_without_torch() -> None:
    """`workbench methods -v` took 2.6 s importing torch; the cards live in a torch-free module
    that every method class takes its own card from."""
    from workbench.cli import method_cards
    from workbench.method_cards import CARDS
    from workbench.methods import get_method

    cards = method_cards()
    assert sorted(cards) == wb.list_methods()
    for name, card in cards.items():
        assert get_method(name).info is CARDS[name], name
        full = wb.describe_method(name)
        assert {k: full[k] for k in card} == card, name
    code = (
        "import sys; from workbench.cli import main; main(['methods', '-v']); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("use when:") == len(wb.list_methods())


class _Terminal:
    """A stderr stand-in that says it is a terminal (so tqdm draws its bar)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_is_a_tqdm_bar_with_live_metrics() -> None:
    from types import SimpleNamespace

    from tqdm import tqdm

    from workbench.cli import ProgressPrinter

    term = _Terminal()
    printer = ProgressPrinter(term)
    printer.on_start(SimpleNamespace(config={"epochs": 2}, out="runs/x"))
    step = {"epoch": 0, "batch": 2, "step": 2, "batches_per_epoch": 4, "loss": 1.25,
            "rep_std": 0.0442, "images_per_s": 321.0, "seconds": 1.0}  # fmt: skip
    printer.on_step(step)
    assert isinstance(printer.bar, tqdm) and printer.bar.total == 8 and printer.bar.n == 3
    printer.bar.refresh()
    assert "epoch 1/2" in term.text and "loss=1.2500" in term.text and "img/s=321" in term.text
    printer.on_epoch({"epoch": 0, "epochs": 2, "loss": 1.2, "rep_std": 0.05,
                      "rep_std_ref": 0.0442, "knn_acc": 0.5, "images_per_s": 300.0})  # fmt: skip
    printer.on_step({**step, "epoch": 1, "batch": 0, "step": 4})
    printer.bar.refresh()
    assert "epoch 1/2: loss 1.2000" in term.text and "knn=0.500" in term.text
    printer.on_end(None)
    assert printer.bar is None


def test_resume_commands_for_an_in_memory_dataset_name_no_unloadable_spec():
    """#20 item 4: a run on an ImageDataset ('digits[256]') cannot be resumed by that name."""
    from workbench.cli import resume_commands

    cfg = {"data": "digits", "method": "simclr", "epochs": 5}
    python, cli = resume_commands(cfg, "runs/r")
    assert python.startswith("wb.train('digits'") and cli.startswith(
        "workbench train --data digits"
    )
    python, cli = resume_commands({**cfg, "data": "digits[256]", "data_is_spec": False}, "runs/r")
    assert python.startswith("wb.train(ds, method='simclr'") and "'digits[256]'" in python
    assert "--data" not in cli and "in-memory dataset 'digits[256]'" in cli
