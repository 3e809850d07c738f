"""Real-browser test: JupyterLab + headless Chromium (Playwright) on 01_quickstart.ipynb.

Starts JupyterLab on localhost (fresh token, free port, a temporary copy of the notebooks,
``WORKBENCH_QUICK=1``), runs all cells in Chromium, checks that the augmentation preview is
rendered, starts a run from the TrainingLauncher's Start button, waits for the live curves, stops
it with the Stop button, and saves screenshots to ``benchmarks/results/browser_*.png`` and one
small picture per widget to ``docs/`` (for the README).

Needs Debian's Chromium (``apt-get install -y chromium``); run with ``pytest -m browser``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Screenshots land in the repo only when asked (WORKBENCH_UPDATE_SCREENSHOTS=1), so a test run
# leaves the working tree clean; otherwise in a temporary folder kept by pytest.
_UPDATE = os.environ.get("WORKBENCH_UPDATE_SCREENSHOTS") == "1"
_OUT = Path(tempfile.mkdtemp(prefix="workbench-browser-"))
RESULTS = ROOT / "benchmarks" / "results" if _UPDATE else _OUT
DOCS = ROOT / "docs" if _UPDATE else _OUT
NOTEBOOK = "01_quickstart.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {proc.returncode} before serving; see {log}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout:.0f} s")


@pytest.fixture()
def lab(tmp_path):
    """A JupyterLab server on a free localhost port; yields (base_url, token). Always stopped."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "receive Jupyter news?" toast over the screenshots
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    token, port = secrets.token_hex(24), _free_port()
    env = dict(
        os.environ,
        WORKBENCH_QUICK="1",
        WORKBENCH_RUNS=str(tmp_path / "runs"),
        MPLBACKEND="Agg",
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter_config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter_runtime"),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = (tmp_path / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", proc, 180, tmp_path / "jupyterlab.log")
        yield base, token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext.session) return null;
  const kernel = panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  return {
    kernel: kernel ? kernel.status : 'none',
    counts: cells.map(c => c.model.executionCount),
    errors: cells.map(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error')
                                                      .map(o => o.ename + ': ' + o.evalue))
                 .flat(),
  };
}"""


def _shrink(src: Path, dst: Path, width: int = 900) -> None:
    """A small README picture: at most ``width`` px wide, 256-colour PNG."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(dst, optimize=True)


def _widget_output(page, text: str):
    """The output area of the code cell whose source contains ``text``."""
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=text))
    return cell.first.locator(".jp-OutputArea-output").first


def test_quickstart_in_jupyterlab(lab, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
            f"(make browser-deps does)"
        )
    from playwright.sync_api import expect, sync_playwright

    base, token = lab
    RESULTS.mkdir(parents=True, exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=120_000)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                "window.jupyterapp.shell.currentWidget.sessionContext && "
                "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                timeout=180_000,
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            deadline = time.monotonic() + 420
            state = None
            while time.monotonic() < deadline:
                state = page.evaluate(_CELLS_JS)
                done = state and all(c is not None for c in state["counts"])
                if state and state["errors"]:
                    break
                if done and state["kernel"] == "idle":
                    break
                time.sleep(2)
            assert state is not None, "the notebook panel never opened"
            assert not state["errors"], f"cell errors: {state['errors']}"
            assert all(c is not None for c in state["counts"]), f"not all cells ran: {state}"

            # the augmentation preview: a real image with a non-trivial size
            preview = (
                _widget_output(page, "wb.AugmentationExplorer(")
                .locator("img.widget-image")
                .filter(visible=True)  # the A/B preview's "A" image is hidden
                .first
            )
            preview.scroll_into_view_if_needed()
            expect(preview).to_be_visible(timeout=60_000)
            size = preview.evaluate("i => [i.naturalWidth, i.naturalHeight]")
            box = preview.bounding_box()
            assert size[0] > 100 and size[1] > 100, f"preview image is {size}"
            assert box and box["width"] > 100 and box["height"] > 100, box
            body = page.locator(".jp-NotebookPanel").inner_text()
            assert "Loading widget" not in body and "Error displaying widget" not in body
            _widget_output(page, "wb.AugmentationExplorer(").evaluate(
                "e => e.scrollIntoView({block: 'start'})"
            )
            page.wait_for_timeout(500)
            page.screenshot(path=str(RESULTS / "browser_01_after_run_all.png"))

            # the launcher: more epochs so that there is time to press Stop, then Start
            launcher = _widget_output(page, "wb.TrainingLauncher(")
            launcher.scroll_into_view_if_needed()
            epochs = launcher.locator(".widget-inline-hbox", has_text="Epochs").locator("input")
            epochs.first.fill("50")
            epochs.first.press("Enter")
            plot = launcher.locator("img.widget-image").filter(visible=True).first
            before = plot.get_attribute("src") or ""
            launcher.get_by_role("button", name="Start").click()
            expect(launcher.get_by_text("running", exact=True)).to_be_visible(timeout=120_000)
            page.wait_for_function(
                "([el, old]) => el.src && el.src !== old && el.naturalWidth > 100",
                arg=[plot.element_handle(), before],
                timeout=240_000,
            )
            expect(launcher.locator(".widget-html", has_text="epoch 1/50").first).to_be_visible(
                timeout=60_000
            )
            launcher.screenshot(path=str(RESULTS / "browser_02_training_live.png"))
            launcher.get_by_role("button", name="Stop").click()
            expect(launcher.get_by_text("stopped", exact=True)).to_be_visible(timeout=180_000)
            launcher.screenshot(path=str(RESULTS / "browser_03_stopped.png"))
            assert "Run failed" not in launcher.inner_text()

            # one small picture per widget for the README: a tall window, no file browser, each
            # widget scrolled to the top and clipped to its first `height` pixels
            page.evaluate(
                "() => window.jupyterapp.commands.execute('application:toggle-left-area')"
            )
            page.set_viewport_size({"width": 1280, "height": 2000})
            for text, name, height in (
                ("wb.AugmentationExplorer(", "widget_augmentation.png", 900),
                ("wb.TrainingLauncher(", "widget_training.png", 900),
                ("wb.EmbeddingExplorer(", "widget_embeddings.png", 1250),
                ("wb.Workbench(", "widget_workbench.png", 800),
            ):
                out = _widget_output(page, text)
                out.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(500)
                box = out.bounding_box()
                assert box is not None, f"no output for {text}"
                clip = {
                    "x": box["x"],
                    "y": box["y"],
                    "width": min(box["width"], 1280 - box["x"]),
                    "height": min(box["height"], height, 2000 - box["y"]),
                }
                raw = shots / name
                page.screenshot(path=str(raw), clip=clip)
                _shrink(raw, DOCS / name)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
