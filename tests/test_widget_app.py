"""Workbench (tabbed app) headless: shared method and data, Augment -> Train -> Embed flow."""

from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench.widgets.app import RANDOM_INIT, TAB_TITLES, Workbench


@pytest.fixture(scope="module")
def tiny(digits):
    """96 digits at 16 px (10 classes): one 32-image batch per epoch keeps training quick."""
    rng = np.random.default_rng(1)
    idx = np.sort(rng.choice(len(digits), 96, replace=False))
    ds = digits.subset(idx, name="digits[96]")
    ds.meta = {"image_size": 16}
    return ds


@pytest.fixture()
def app(tiny, tmp_path):
    return Workbench(
        tiny,
        "simclr",
        runs_root=tmp_path / "runs",
        reducer="pca",
        background=False,
        epochs=1,
        batch_size=32,
        input_size=16,
        model="resnet18",
        num_workers=0,
    )


def test_tabs_share_method_both_ways(app):
    assert app.tabs.titles == TAB_TITLES
    assert app.augment.preview.value[:4] == b"\x89PNG"  # the preview is drawn at once
    app.method_dropdown.value = "byol"
    assert app.train.method_dropdown.value == "byol"
    assert app.augment.recipe.method == "byol"
    app.train.method_dropdown.value = "vicreg"  # a change inside a tab flows back up
    assert app.method == "vicreg" and app.augment.recipe.method == "vicreg"
    app.augment.method_dropdown.value = "simclr"
    assert app.method == "simclr" and app.train.method_dropdown.value == "simclr"
    assert app.error == ""
    with pytest.raises(ValueError, match="Unknown method 'nope'. Valid methods"):
        app.set_method("nope")


def test_augmentation_settings_reach_the_next_run(app):
    app.augment.controls["view_cj_prob"].value = 0.0
    args = app.train.train_arguments()
    assert args["transform_args"]["cj_prob"] == 0.0
    assert "input_size" not in args["transform_args"]  # the Train form decides the size
    # a method change drops the old method's settings: the new defaults apply
    app.method_dropdown.value = "byol"
    assert "cj_prob" not in (app.train.train_arguments().get("transform_args") or {})


def test_bad_data_lands_in_the_error_area(app):
    app.data_text.value = "no_such_dataset"
    app.load_button.click()
    assert "Unknown dataset 'no_such_dataset'" in app.error
    assert "no_such_dataset" in app.error_area.value
    assert app.error_area.layout.display is None
    app.data_text.value = "photos"
    app.load_button.click()
    assert app.error == "" and app.dataset.name == "photos"
    assert app.train.form_data() == "photos" and app.augment.preview.value[:4] == b"\x89PNG"


def test_unknown_reducer_is_refused(tiny):
    with pytest.raises(ValueError, match="Unknown reducer 'umapp'"):
        Workbench(tiny, reducer="umapp")


def test_random_init_baseline_in_embed_tab(app, tiny):
    assert app.source_dropdown.value == RANDOM_INIT  # no runs yet
    app.open_button.click()
    assert app.error == "", app.error
    assert app.wait_embed(120)
    emb = app.embed.embeddings
    assert emb.features.shape == (len(tiny), 512) and emb.labels is not None
    assert app.embed.projection.shape == (len(tiny), 2)


def test_run_from_train_tab_feeds_embed_tab(app, tiny):
    app.augment.controls["view_cj_prob"].value = 0.0
    assert app.train.start()
    assert app.train.wait(300), "training did not finish in 300 s"
    assert app.train.status == "finished", app.train.error
    run = app.train.run
    assert run.config["transform"]["groups"][0]["cj_prob"] == 0.0  # Augment -> Train
    assert app.wait_embed(120)
    assert app.source_dropdown.value == str(run.out)  # Train -> Embed
    assert app.tabs.get_title(2) == "Embed (new run)"
    app.tabs.selected_index = 2
    assert app.tabs.get_title(2) == "Embed"
    assert app.embed is not None and app.embed.error == ""
    assert app.embed.embeddings.features.shape[0] == len(tiny)
    assert app.embed.knn is not None and 0.0 <= app.embed.knn["top1"] <= 1.0
    assert app.embed.recipe.method == "simclr"  # the invariance probe uses the tab's recipe
    # the run is listed for later too
    labels = [label for label, _ in app.source_dropdown.options]
    assert any(run.name in label for label in labels)
    assert isinstance(wb.load_run(run.out), wb.Run)


# -- `workbench app` (Voila) -------------------------------------------------------------------


def test_app_notebook_builds_the_workbench(tmp_path):
    import nbformat

    from workbench.app import APP_NOTEBOOK, write_app_notebook

    path = write_app_notebook(tmp_path, data="shapes", method="byol", runs_root="/x/runs")
    assert path == tmp_path / APP_NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    (cell,) = nb.cells
    assert cell.outputs == []
    assert "wb.Workbench(data='shapes', method='byol', runs_root='/x/runs')" in cell.source
    compile(cell.source, "app", "exec")
    with pytest.raises(ValueError, match="Unknown method 'simclrr'. Valid methods"):
        write_app_notebook(tmp_path, method="simclrr")


def test_voila_command():
    import sys

    from workbench.app import voila_command

    cmd = voila_command("/tmp/app.ipynb", port=9001, host="0.0.0.0", open_browser=False)
    assert cmd[:4] == [sys.executable, "-m", "voila", "/tmp/app.ipynb"]
    assert "--port=9001" in cmd and "--Voila.ip=0.0.0.0" in cmd and "--no-browser" in cmd
    assert "--strip_sources=True" in cmd  # a page for students: no code
    assert "--no-browser" not in voila_command("a.ipynb")
    with pytest.raises(ValueError, match="port=0 is not a TCP port"):
        voila_command("a.ipynb", port=0)


def test_cli_app_dry_run_prints_the_command(tmp_path, capsys):
    from workbench.cli import main

    code = main(
        ["app", "--dry-run", "--folder", str(tmp_path), "--port", "9002", "--no-browser",
         "--data", "shapes", "--method", "vicreg"]
    )  # fmt: skip
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert "-m voila" in line and str(tmp_path / "workbench_app.ipynb") in line
    assert "--port=9002" in line and "--no-browser" in line
    assert "method='vicreg'" in (tmp_path / "workbench_app.ipynb").read_text()
    assert main(["app", "--dry-run", "--folder", str(tmp_path), "--method", "nope"]) == 2
    assert "Unknown method 'nope'" in capsys.readouterr().err


def test_serve_runs_voila_on_the_app_notebook(tmp_path, monkeypatch):
    import subprocess

    from workbench import app

    calls = []

    def fake_call(cmd, cwd=None):
        nb = Path(cmd[3])
        calls.append((cmd, cwd, nb.read_text()))  # the notebook exists while Voila runs
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    assert app.serve(data="digits", method="simclr", runs_root=tmp_path / "r", port=9003) == 0
    ((cmd, cwd, text),) = calls
    assert "--port=9003" in cmd and Path(cmd[3]).parent == Path(cwd)
    assert str((tmp_path / "r").resolve()) in text  # runs_root is absolute for the kernel
    assert not Path(cwd).exists()  # the temporary folder is removed afterwards


@pytest.mark.slow
def test_voila_serves_the_workbench_page(tmp_path):
    """Start Voila for real, fetch the page (it executes the app notebook), stop it."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from workbench.app import voila_command, write_app_notebook

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nb = write_app_notebook(tmp_path, data="photos", method="simclr", runs_root=str(tmp_path))
    cmd = voila_command(nb, port=port, open_browser=False)
    env = dict(os.environ, MPLBACKEND="Agg", JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline, page = time.monotonic() + 300, ""
        while time.monotonic() < deadline and not page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=300) as r:
                    page = r.read().decode("utf-8", "replace")
            except OSError:
                assert proc.poll() is None, "voila exited"
                time.sleep(1)
        assert "application/vnd.jupyter.widget-view+json" in page
        assert "Traceback" not in page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
