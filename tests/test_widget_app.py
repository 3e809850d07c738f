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
    import sys

    from workbench import app

    calls = []
    real_popen = subprocess.Popen

    def fake_popen(cmd, cwd=None, **kw):
        nb = Path(cmd[3])
        calls.append((cmd, cwd, nb.read_text()))  # the notebook exists while Voila runs
        return real_popen([sys.executable, "-c", "pass"], **kw)

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    assert app.serve(data="digits", method="simclr", runs_root=tmp_path / "r", port=9003) == 0
    ((cmd, cwd, text),) = calls
    assert "--port=9003" in cmd and Path(cmd[3]).parent == Path(cwd)
    assert "--token=" in cmd  # loopback: no token
    assert str((tmp_path / "r").resolve()) in text  # runs_root is absolute for the kernel
    assert not Path(cwd).exists()  # the temporary folder is removed afterwards


def test_network_host_gets_a_token_unless_opted_out():
    """Item 12: 0.0.0.0 (the classroom case) is never served without a token by default."""
    from workbench.app import is_loopback, page_url, resolve_token, voila_command

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert resolve_token("127.0.0.1") == ""
    token = resolve_token("0.0.0.0")
    assert len(token) >= 32 and token != resolve_token("0.0.0.0")
    assert resolve_token("0.0.0.0", no_token=True) == ""
    assert resolve_token("0.0.0.0", token="abc") == "abc"
    with pytest.raises(ValueError, match="either --token or --no-token"):
        resolve_token("0.0.0.0", token="abc", no_token=True)
    assert f"--token={token}" in voila_command("a.ipynb", host="0.0.0.0", token=token)
    assert page_url("0.0.0.0", 8866, "t0k") == "http://localhost:8866/?token=t0k"


def test_data_root_confines_paths(tmp_path):
    """Item 12: --data-root refuses folders outside it, with .. and symlinks resolved."""
    from workbench.app import check_data_spec, check_inside, write_app_notebook

    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    assert check_inside(root / "imgs", root) == (root / "imgs").resolve()
    for bad in (tmp_path / "secret", root / ".." / "secret", root / "link", "/etc"):
        with pytest.raises(ValueError, match="outside the data root"):
            check_inside(bad, root, "Data folder")
    check_data_spec("digits", root)  # built-in names read no user path
    check_data_spec(str(root / "imgs"), root)
    with pytest.raises(ValueError, match="Dataset root of cifar10 '/etc' is outside"):
        check_data_spec("cifar10:/etc", root)
    with pytest.raises(ValueError, match="Runs folder"):
        write_app_notebook(tmp_path / "nb", runs_root="/tmp/elsewhere", data_root=str(root))
    nb = write_app_notebook(tmp_path / "nb", runs_root=str(root / "runs"), data_root=str(root))
    assert f"data_root={str(root.resolve())!r}" in nb.read_text().replace('\\"', "'")


def test_workbench_with_data_root_refuses_outside_paths(tmp_path):
    from workbench.widgets.app import Workbench

    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    app = Workbench("digits", data_root=root, runs_root=root / "runs", epochs=1)
    app.data_text.value = str(tmp_path / "outside")
    app.load_button.click()
    assert "outside the data root" in app.error
    app.train.out_input.value = str(tmp_path / "outside" / "run")
    assert app.train.start() is False and "outside the data root" in app.train.error
    app.train.runs_root_input.value = "/"
    app.train.refresh_button.click()
    assert "outside the data root" in app.train.error
    with pytest.raises(ValueError, match="outside the data root"):
        Workbench(str(tmp_path / "outside"), data_root=root)


def _descendants(pid):
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_app_on_a_network_host_needs_the_token_and_sigterm_leaves_nothing(tmp_path):
    """Item 12: `workbench app --host 0.0.0.0` on a free port: no token, no page; SIGTERM to
    `workbench app` stops Voila and its kernel (they used to be left running as orphans)."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    import psutil
    from test_browser import _free_port

    port = _free_port()
    env = dict(os.environ, MPLBACKEND="Agg", JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    cmd = [sys.executable, "-m", "workbench.cli", "app", "--host", "0.0.0.0", "--port",
           str(port), "--no-browser", "--data-root", str(tmp_path), "--runs-root",
           str(tmp_path / "runs")]  # fmt: skip
    log = (tmp_path / "app.log").open("w+")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    family = []
    try:
        deadline, token = time.monotonic() + 120, None
        while time.monotonic() < deadline and token is None:
            assert proc.poll() is None, open(log.name).read()
            m = re.search(r"\?token=([0-9a-f]+)", open(log.name).read())
            token = m.group(1) if m else None
            time.sleep(0.2)
        assert token, open(log.name).read()
        base = f"http://127.0.0.1:{port}/"

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kw):
                return None  # see the refusal itself, not the login page it points to

        opener = urllib.request.build_opener(NoRedirect)
        status, where = None, ""
        while time.monotonic() < deadline and status is None:
            try:
                opener.open(base, timeout=10)
                status = 200
            except urllib.error.HTTPError as e:
                status, where = e.code, e.headers.get("Location", "")
            except OSError:
                time.sleep(0.5)
        # refused: 403, or a redirect to the login page that asks for the token
        assert status == 403 or (status == 302 and "login" in where), (status, where)
        with urllib.request.urlopen(base, timeout=60) as r:  # following it: no app there
            assert "application/vnd.jupyter.widget-view+json" not in r.read().decode()
        with urllib.request.urlopen(f"{base}?token={token}", timeout=300) as r:
            page = r.read().decode("utf-8", "replace")
        assert r.status == 200 and "application/vnd.jupyter.widget-view+json" in page
        family = _descendants(proc.pid)
        assert any("voila" in " ".join(p.cmdline()) for p in family)
        assert any("ipykernel" in " ".join(p.cmdline()) for p in family), "no kernel started"
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left running after SIGTERM: {[p.cmdline() for p in alive]}"
    finally:
        for p in [*family, psutil.Process(proc.pid)] if proc.poll() is None else family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        log.close()


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


def test_augment_tab_previews_what_start_trains(tmp_path):
    """Item 2: `Workbench()` on digits previewed SimCLR at 224 px with blur 0.5 and colour 1.0,
    while Start trained at 32 px with the small-image recipe. The run's own config.json
    (written by wb.train) must hold the recipe the Augment tab shows."""
    import json

    app = Workbench(runs_root=tmp_path / "runs", epochs=1, max_steps=1, batch_size=16,
                    num_workers=0, val_fraction=0.0)  # fmt: skip
    rec = app.augment.recipe
    assert rec.view_sizes[0] == 32 and rec.groups[0].blur_prob == 0.0
    assert rec.groups[0].cj_strength == 0.5  # SimCLR's CIFAR-scale colour strength
    assert app.train.start(), app.train.error
    assert app.train.wait(300) and app.train.status == "finished", app.train.error
    config = json.loads((app.train.run.out / "config.json").read_text())
    assert config["input_size"] == 32
    assert config["transform"] == app.augment.recipe.to_dict()

    app.train.input_size_input.value = "96"  # the preview follows the Train form
    assert app.augment.recipe.view_sizes[0] == 96 and app.augment.recipe.groups[0].blur_prob > 0
    app.augment.controls["view_cj_prob"].value = 0.5
    app.train.input_size_input.value = "48"
    assert app.augment.recipe.view_sizes[0] == 48 and app.augment.recipe.groups[0].cj_prob == 0.5
    assert app.train.train_arguments()["transform_args"] == {"cj_prob": 0.5}


def test_one_data_field_and_one_method_choice(app):
    """Item 10 (headless half): the tabs' own Data and Method controls are hidden."""
    assert app.train.data_text.layout.display == "none"
    assert app.train.method_dropdown.layout.display == "none"
    assert app.augment.method_dropdown.layout.display == "none"
    assert app.data_text.layout.display != "none" and app.method_dropdown.layout.display != "none"
