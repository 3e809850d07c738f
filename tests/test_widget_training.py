import os
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.widgets.training import (
    TrainingLauncher,
    backbone_hint,
    method_card_html,
    progress_text,
    run_label,
)

STD = "Representation std (collapse monitor)"
LOSS = "Training loss"


# -- pure helpers ---------------------------------------------------------------------------


def test_progress_text_reports_epoch_step_speed_and_eta():
    rec = {"epoch": 1, "batch": 2, "step": 7, "batches_per_epoch": 5, "images_per_s": 1234.4}
    value, maximum, label = progress_text({**rec, "seconds": 8.0}, epochs=4)
    assert (value, maximum) == (8, 20)
    assert "epoch 2/4" in label and "step 3/5" in label and "1,234 img/s" in label
    assert "ETA 0:12" in label  # 8 s for 8 steps, 12 left


def test_method_card_renders_existing_keys_and_hints():
    card = {"summary": "S <x>", "use_when": "u", "batch_size": 256, "backbones": ["resnet18"],
            "changed": "t 0.1"}  # fmt: skip
    text = method_card_html("simclr", card, ["far"])
    assert "S &lt;x&gt;" in text and "Use when" in text and "256" in text and "far" in text
    assert "Changed for short runs:</b> t 0.1" in text
    assert "No description" in method_card_html("x", None)
    assert backbone_hint(card, "vit-tiny") and backbone_hint(card, "resnet18") is None


def test_run_label_shows_status_and_final_metrics():
    label = run_label(
        {"name": "r1", "method": "simclr", "status": "stopped", "loss": 1.5, "knn_acc": 0.5}
    )
    assert label.startswith("r1") and "stopped" in label and "1.5" in label and "50.0%" in label


# -- the widget with a fake engine (fast; checks the thread and state logic) ----------------


def _fake_train_module(step_seconds=0.01, batches=5):
    calls = []

    def train(data, method="simclr", out=None, epochs=2, callbacks=(), method_args=None, **kw):
        calls.append(dict(data=data, method=method, out=out, epochs=epochs, **kw))
        run = SimpleNamespace(
            out=Path(out),
            name=Path(out).name,
            config={"method": method, "epochs": epochs},
            status="running",
            events=[],
        )

        def each(name, *args):
            for cb in callbacks:
                if hasattr(cb, name):
                    getattr(cb, name)(*args)

        each("on_start", run)
        if method_args and method_args.get("fail"):
            run.status = "failed"
            each("on_end", run)
            raise ValueError("method arg 'fail' is not valid")
        if method_args and method_args.get("nan"):
            msg = "The loss became non-finite (NaN/inf) at step 3; the run was stopped."
            each("on_event", {"type": "event", "kind": "nan", "message": msg})
            run.status = "failed"
            run.events.append({"type": "event", "kind": "nan", "message": msg})
            each("on_end", run)
            return run  # a NaN fails the run without raising
        step = 0
        for epoch in range(epochs):
            for batch in range(batches):
                time.sleep(step_seconds)
                rec = {"type": "step", "step": step, "epoch": epoch, "batch": batch}
                rec.update(batches_per_epoch=batches, loss=5.0 - 0.1 * step, seconds=step * 0.01)
                each("on_step", rec)
                step += 1
                if any(cb.should_stop() for cb in callbacks if hasattr(cb, "should_stop")):
                    if batch < batches - 1:  # as wb.train: the cut epoch gets a partial record
                        each("on_epoch", {"type": "epoch", "epoch": epoch, "step": step - 1,
                                          "loss": 9.0, "partial": True})  # fmt: skip
                    run.status = "stopped"
                    each("on_end", run)
                    return run
            each(
                "on_epoch",
                {"type": "epoch", "epoch": epoch, "step": step - 1, "loss": 4.0 - epoch}
                | {"rep_std": 0.03, "rep_std_ref": 512**-0.5, "knn_acc": 0.4 + 0.1 * epoch},
            )
        run.status = "finished"
        each("on_end", run)
        return run

    module = types.ModuleType("workbench.training")
    module.train = train  # type: ignore[attr-defined]
    module.calls = calls  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_engine(monkeypatch):
    module = _fake_train_module()
    monkeypatch.setitem(sys.modules, "workbench.training", module)
    return module


def _launcher(tmp_path, **kw):
    kw.setdefault("epochs", 2)
    return TrainingLauncher(
        "digits", method="simclr", runs_root=tmp_path, redraw_interval=0.05, **kw
    )


def test_form_prefilled_and_arguments_passed_through(tmp_path):
    launcher = _launcher(
        tmp_path, model="resnet18-small", batch_size=64, input_size=16, lr=0.1, limit_images=128
    )
    assert launcher.model_dropdown.value == "resnet18-small"
    assert launcher.input_size_input.value == "16" and launcher.lr_input.value == "0.1"
    assert "simclr" in launcher.method_dropdown.options
    assert "resnet18" in [v for _, v in launcher.model_dropdown.options]
    args = launcher.train_arguments()
    assert args["limit_images"] == 128 and args["batch_size"] == 64 and args["lr"] == 0.1
    assert Path(args["out"]).parent == tmp_path and "simclr" in Path(args["out"]).name
    launcher.lr_input.value = ""
    launcher.input_size_input.value = "auto"
    assert launcher.train_arguments()["lr"] is None
    assert launcher.train_arguments()["input_size"] is None
    launcher.lr_input.value = "fast"
    with pytest.raises(ValueError, match="Learning rate 'fast'"):
        launcher.train_arguments()


def test_unknown_names_raise_with_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="Unknown method 'simclrr'. Valid methods: .*simclr"):
        TrainingLauncher("digits", method="simclrr", runs_root=tmp_path)
    with pytest.raises(ValueError, match="Unknown backbone 'resnet19'. Valid backbones"):
        TrainingLauncher("digits", model="resnet19", runs_root=tmp_path)


def test_method_card_and_hint_follow_the_form(tmp_path):
    launcher = _launcher(tmp_path, batch_size=256, epochs=100)
    assert "Recommended batch size" in launcher.card.value
    assert not launcher.hints
    launcher.batch_size_input.value = 8
    assert any("batch_size=8" in h for h in launcher.hints)
    assert "batch_size=8" in launcher.card.value
    launcher.method_dropdown.value = "byol"
    assert "byol" in launcher.card.value


def test_start_returns_at_once_and_live_data_grows(tmp_path, fake_engine):
    launcher = _launcher(tmp_path)
    t0 = time.perf_counter()
    assert launcher.start() is True
    assert time.perf_counter() - t0 < 1.0
    assert launcher.wait(10)
    assert launcher.status == "finished", launcher.error
    assert len(launcher.steps) == 10 and len(launcher.history) == 2
    data = launcher.last_plot_data
    assert len(data[LOSS]["per step"][0]) == 10
    assert "projector, per step" in data[STD]
    assert launcher.plot.value[:4] == b"\x89PNG"
    assert launcher.start_button.disabled is False and launcher.stop_button.disabled is True
    assert launcher.progress.value == launcher.progress.max == 10
    assert launcher.run.name == Path(fake_engine.calls[0]["out"]).name


def test_redraws_are_throttled(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "workbench.training", _fake_train_module(0.005, 40))
    launcher = TrainingLauncher("digits", runs_root=tmp_path, redraw_interval=0.25, epochs=3)
    launcher.start()
    assert launcher.wait(20)
    times = launcher.redraw_times
    assert len(times) >= 2
    gaps = [b - a for a, b in zip(times, times[1:-1])]  # the final redraw is not throttled
    assert all(g >= 0.2 for g in gaps), gaps


def test_second_start_refused_and_stop_ends_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "workbench.training", _fake_train_module(0.05, 100))
    launcher = _launcher(tmp_path)
    launcher.start_button.click()
    assert launcher.start() is False
    assert "already in progress" in launcher.message_area.value
    time.sleep(0.3)
    launcher.stop_button.click()
    assert launcher.wait(5)
    assert launcher.status == "stopped"
    assert len(launcher.steps) < 20
    assert launcher.start_button.disabled is False


def test_failure_shown_in_error_area_and_start_works_again(tmp_path, fake_engine):
    launcher = _launcher(tmp_path, method_args={"fail": True})
    launcher.start()
    assert launcher.wait(5)
    assert launcher.status == "failed"
    assert "method arg 'fail' is not valid" in launcher.error
    assert "ValueError" in launcher.error_area.value
    assert launcher.error_area.layout.display != "none"
    launcher.train_kwargs.pop("method_args")
    assert launcher.start() is True
    assert launcher.error == ""
    assert launcher.wait(10) and launcher.status == "finished"


def test_nan_run_fails_without_raising_and_says_why(tmp_path, fake_engine):
    launcher = _launcher(tmp_path, method_args={"nan": True})
    launcher.start()
    assert launcher.wait(5)
    assert launcher.status == "failed" and "non-finite" in launcher.error
    assert launcher.start_button.disabled is False


def test_bad_form_value_goes_to_error_area_without_starting(tmp_path, fake_engine):
    launcher = _launcher(tmp_path)
    launcher.data_text.value = "  "
    launcher.start_button.click()
    assert "Data is empty" in launcher.error and launcher.status == "idle"
    assert not fake_engine.calls


def test_callback_errors_are_shown_not_raised(tmp_path, fake_engine, monkeypatch):
    launcher = _launcher(tmp_path)

    def broken(*_):
        raise RuntimeError("figure broke")

    monkeypatch.setattr(launcher, "_on_epoch", broken)
    launcher.start()
    assert launcher.wait(10)
    assert launcher.status == "finished"
    assert "figure broke" in launcher.error


def test_display_protocol(tmp_path):
    import ipywidgets

    launcher = _launcher(tmp_path)
    assert isinstance(launcher, ipywidgets.VBox)
    assert launcher._repr_mimebundle_() is not None or hasattr(launcher, "_ipython_display_")


def test_augmentation_settings_carried_into_the_run(tmp_path, fake_engine):
    launcher = _launcher(tmp_path, input_size=16)
    explorer = launcher.open_augmentations()
    assert explorer is not None and explorer in launcher.augment_area.children
    explorer.controls["view_cj_prob"].value = 0.0
    assert launcher.train_arguments()["transform_args"] == {"cj_prob": 0.0}
    launcher.start()
    assert launcher.wait(10) and launcher.status == "finished", launcher.error
    assert fake_engine.calls[-1]["transform_args"] == {"cj_prob": 0.0}
    # One method for both: the explorer follows the form (and back); old settings do not leak.
    launcher.method_dropdown.value = "byol"
    assert explorer.recipe.method == "byol"
    assert launcher.train_arguments().get("transform_args") is None
    explorer.method_dropdown.value = "vicreg"
    assert launcher.method_dropdown.value == "vicreg"


def _write_run(folder, loss, knn):
    import json

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"method": "simclr", "model": "resnet18-small", "data": "digits", "epochs": 1})
    )
    records = [
        {"type": "step", "step": 1, "epoch": 0, "batch": 0, "loss": loss + 0.5},
        {"type": "epoch", "epoch": 0, "step": 1, "loss": loss, "rep_std": 0.03}
        | {"rep_std_ref": 512**-0.5, "knn_acc": knn},
        {"type": "status", "status": "finished"},
    ]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_runs_browser_lists_overlays_and_opens_embeddings(tmp_path, monkeypatch):
    _write_run(tmp_path / "run-a", 2.0, 0.5)
    _write_run(tmp_path / "run-b", 1.0, 0.7)
    (tmp_path / "not-a-run").mkdir()
    launcher = _launcher(tmp_path)
    labels = [label for label, _ in launcher.runs_select.options]
    assert len(labels) == 2 and all("finished" in x and "kNN" in x for x in labels)
    launcher.runs_select.value = tuple(i for _, i in launcher.runs_select.options)
    data = launcher.overlay_data
    assert {"run-a", "run-b"} <= set(data[STD]) and {"run-a", "run-b"} <= set(data["kNN accuracy"])

    import ipywidgets

    opened = []

    class FakeExplorer(ipywidgets.HTML):
        def __init__(self, run, data=None):
            super().__init__("embeddings")
            opened.append((run, data))

    fake = types.ModuleType("workbench.widgets.embeddings")
    fake.EmbeddingExplorer = FakeExplorer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "workbench.widgets.embeddings", fake)
    launcher.runs_select.value = (launcher.runs_select.options[1][1],)
    explorer = launcher.open_embeddings()
    assert launcher.embeddings_area.children == (explorer,)
    assert opened and opened[0][1] == "digits"
    assert opened[0][0].name == launcher.selected_runs[0].name


# -- the widget with the real engine (tiny runs on real digits) ------------------------------

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    method="simclr",
    model="resnet18-small",
    input_size=16,
    batch_size=32,
    accelerator="cpu",
    num_workers=0,
)


@pytest.fixture(scope="module")
def tiny_digits():
    import workbench as wb

    return wb.load_dataset("digits", image_size=16).subset(
        range(80)
    )  # 64 train, 16 val: 2 steps per epoch


def _poll(launcher, until, timeout=120.0):
    """Sample (steps plotted, epochs received) while the run goes on, until `until()` holds."""
    seen = []
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end and not until():
        plotted = launcher.last_plot_data.get(LOSS, {}).get("per step", ([], []))[0]
        seen.append((len(plotted), len(launcher.history)))
        time.sleep(0.05)
    return seen


def test_real_run_start_watch_finish_and_browse(tmp_path, tiny_digits):
    launcher = TrainingLauncher(
        tiny_digits, runs_root=tmp_path, redraw_interval=0.1, epochs=2, **TINY
    )
    t0 = time.perf_counter()
    assert launcher.start() is True
    assert time.perf_counter() - t0 < 1.0
    assert launcher.start() is False  # a second Start while running is refused
    assert "already in progress" in launcher.message_area.value
    seen = _poll(launcher, lambda: not launcher.running)
    assert launcher.wait(60)
    assert launcher.status == "finished", launcher.error
    assert launcher.error == ""
    # The live data grew while the run was going on: partial curves were drawn before the end.
    assert len({n for n, _ in seen if n}) >= 2, seen
    assert any(h == 1 for _, h in seen), seen
    assert len(launcher.history) == 2 and len(launcher.steps) == 4
    data = launcher.last_plot_data
    assert len(data[LOSS]["per step"][0]) == 4
    assert len(data[LOSS]["per epoch"][0]) == 2
    rel = [h["rep_std"] / h["rep_std_ref"] for h in launcher.history]  # against 1/sqrt(d)
    assert data[STD]["projector / 1/sqrt(d)"][1] == pytest.approx(rel)
    assert data["kNN accuracy"]["trained"][0][0] == 0.0  # from the recorded random-init kNN
    assert "kNN accuracy" in data
    assert launcher.run.status == "finished" and launcher.run.checkpoint.is_file()
    # The repo's copy is refreshed only on request, so a test run leaves the tree clean.
    update = os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS") == "1"
    png = (REPO / "benchmarks" / "results" if update else tmp_path) / "training_panel.png"
    png.write_bytes(launcher.plot.value)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The runs browser lists the run with its status; selecting it overlays its curves.
    assert len(launcher.runs_select.options) == 1
    label, index = launcher.runs_select.options[0]
    assert launcher.run.name in label and "finished" in label and "kNN" in label
    launcher.runs_select.value = (index,)
    assert set(launcher.overlay_data) >= {LOSS, STD}
    assert launcher.overlay_plot.value[:4] == b"\x89PNG"


def test_real_failure_then_restart_and_stop_within_one_batch(tmp_path, tiny_digits):
    empty = tmp_path / "no_images"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    launcher = TrainingLauncher(
        str(empty), runs_root=tmp_path / "runs", redraw_interval=0.1, epochs=50, **TINY
    )
    # refused before anything is created: no run folder with a failure log left behind
    assert launcher.start() is False
    assert "no_images" in launcher.error and "Cannot start" in launcher.error_area.value
    assert not (tmp_path / "runs").exists()
    assert launcher.status == "idle" and launcher.start_button.disabled is False

    launcher._data_obj = tiny_digits  # the same as TrainingLauncher(tiny_digits, ...)
    launcher.data_text.value = launcher._data_label()
    assert launcher.start() is True
    assert launcher.error == ""
    _poll(launcher, lambda: len(launcher.steps) >= 1 or not launcher.running)
    assert launcher.running, launcher.error
    launcher.stop_button.click()
    at_stop = len(launcher.steps)
    assert launcher.wait(60)
    assert launcher.status == "stopped", launcher.error
    assert len(launcher.steps) <= at_stop + 1  # the batch in flight, then it stops
    assert launcher.run.status == "stopped"
    assert launcher.run.checkpoint.is_file()
    assert any(e.get("kind") == "stopped" for e in launcher.events)


# -- issue 20: Stop from a blocked wait(), failed starts, after Stop, summaries ----------------


_KERNEL_SETUP = """
import sys, time, types
from pathlib import Path
from types import SimpleNamespace

def train(data, out=None, epochs=1, callbacks=(), **kw):  # a slow fake run: 0.1 s per step
    run = SimpleNamespace(out=Path(out), name=Path(out).name, config={"epochs": epochs},
                          status="running", events=[], history=[])
    for cb in callbacks:
        getattr(cb, "on_start", lambda r: None)(run)
    for step in range(600):
        time.sleep(0.1)
        rec = {"type": "step", "step": step, "epoch": 0, "batch": step, "batches_per_epoch": 600,
               "loss": 1.0, "seconds": 0.1 * step}
        for cb in callbacks:
            getattr(cb, "on_step", lambda r: None)(rec)
        if any(cb.should_stop() for cb in callbacks if hasattr(cb, "should_stop")):
            run.status = "stopped"
            break
    else:
        run.status = "finished"
    return run

sys.modules["workbench.training"] = types.SimpleNamespace(train=train)
from workbench.widgets.training import TrainingLauncher
launcher = TrainingLauncher("digits", runs_root=RUNS, epochs=1)
launcher.start()
print("STOP", launcher.stop_button.model_id, launcher.stop_in_subshell)
"""


def test_stop_works_while_a_cell_blocks_in_wait(tmp_path):
    """Item 1: in a real ipykernel, a cell blocked in wait() must still handle the Stop click.

    The test is the frontend: it runs the launcher in a kernel, sends the cell that waits, then
    the Stop button's click as a comm message (what JupyterLab sends). Before, the click queued
    behind the blocked cell and the fake 60 s run finished; now it stops within a step.
    """
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        code = f"RUNS = {str(tmp_path / 'runs')!r}\n" + _KERNEL_SETUP
        reply = kc.execute_interactive(code, timeout=120, output_hook=_collect(out := []))
        assert reply["content"]["status"] == "ok", reply["content"]
        line = next(t for t in out if t.startswith("STOP"))
        _, model_id, routed = line.split()
        assert routed == "True"
        msg_id = kc.execute(
            "launcher.wait(120); print('END', launcher.status, len(launcher.steps))"
        )
        time.sleep(1.0)  # the cell is blocked in wait() now
        t_click = time.monotonic()
        click = kc.session.msg(
            "comm_msg",
            {"comm_id": model_id, "data": {"method": "custom", "content": {"event": "click"}}},
        )
        kc.shell_channel.send(click)
        end = None
        while end is None:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                end = next((t for t in msg["content"]["text"].splitlines() if "END" in t), None)
        _, status, steps = end.split()
        assert status == "stopped", end
        assert time.monotonic() - t_click < 10  # the fake run had ~59 s to go
        assert int(steps) < 100
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _collect(out):
    def hook(msg):
        if msg["msg_type"] == "stream":
            out.extend(msg["content"]["text"].splitlines())

    return hook


def test_failed_start_leaves_nothing_and_clears_stale_state(tmp_path, fake_engine):
    """Item 3: a bad folder is refused before a run folder exists; old status is cleared."""
    launcher = _launcher(tmp_path / "runs", method_args={"fail": True})
    launcher.start()
    assert launcher.wait(5) and launcher.status == "failed"
    calls = len(fake_engine.calls)
    launcher.data_text.value = str(tmp_path / "missing")
    assert launcher.start() is False
    assert "missing" in launcher.error and "Cannot start" in launcher.error_area.value
    assert launcher.status == "idle"  # not the previous run's "failed"
    assert launcher.progress_label.value == "" and "Run folder" not in launcher.message_area.value
    assert len(fake_engine.calls) == calls
    assert not (tmp_path / "runs").exists()  # the fake engine creates nothing either
    assert launcher.plot.layout.display == "none"  # no broken-image icon


def test_after_stop_no_eta_no_partial_epoch_point_and_how_to_resume(tmp_path, monkeypatch):
    """Item 4: after Stop the label has no ETA, the cut epoch is no epoch point, resume is said."""
    monkeypatch.setitem(sys.modules, "workbench.training", _fake_train_module(0.02, 10))
    launcher = _launcher(tmp_path, epochs=5)
    launcher.start()
    _poll(launcher, lambda: len(launcher.steps) >= 13)  # into the second epoch
    assert "ETA" in launcher.progress_label.value
    launcher.stop()
    assert launcher.wait(10) and launcher.status == "stopped"
    assert "ETA" not in launcher.progress_label.value
    assert launcher.progress_label.value.startswith("stopped at epoch 2/5")
    assert any(h.get("partial") for h in launcher.history)
    xs, ys = launcher.last_plot_data[LOSS]["per epoch"]
    assert 9.0 not in ys and len(xs) == 1  # one whole epoch; the cut one is not a point
    msg = launcher.message_area.value
    assert "resume=True" in msg and "workbench train --data digits" in msg and "--resume" in msg
    assert "after 1 of 5 epochs" in msg


def test_run_summary_is_rounded_for_people_and_raw_for_code(tmp_path):
    """Item 7: print(run.summary()) and the notebook table show rounded values."""
    import json

    from workbench.runs import load_run

    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"method": "simclr", "model": "resnet18",
                                                 "epochs": 3}))  # fmt: skip
    rec = {"type": "epoch", "epoch": 2, "loss": 4.123456789, "rep_std": 0.0441234567,
           "rep_std_ref": 0.04419417, "knn_acc": 0.835654616355896, "images_per_s": 97.31,
           "seconds": 485.2}  # fmt: skip
    (out / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    run = load_run(out)
    s = run.summary()
    assert s["knn_acc"] == 0.835654616355896  # code still gets the number
    text = str(s)
    assert "0.835654616355896" not in text and "kNN 83.6%" in text and "loss 4.1235" in text
    assert "time 8:05" in text and "epochs 3/3" in text
    assert repr(s) == text
    assert "83.6%" in repr(run) and "0.8356546" not in repr(run)
    table = run._repr_html_()
    assert table.startswith("<table>") and "<th" in table and "83.6%" in table
    assert "0.835654616355896" not in table


def test_method_card_folds_the_defaults_into_a_table():
    """Item 10: the card ended in a raw `Defaults: a=1, b=2` dump."""
    text = method_card_html("simclr", {"summary": "S", "defaults": {"temperature": 0.1}})
    assert "Defaults:" not in text and "<details>" in text
    assert "<code>temperature</code></td><td>0.1</td>" in text
