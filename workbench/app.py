"""``workbench app``: the Workbench widget as a standalone web page (Voila), for teaching sessions.

Voila renders a notebook without its code. :func:`write_app_notebook` writes a one-cell notebook
that builds ``wb.Workbench(...)``; :func:`voila_command` is the server invocation (a list for
``subprocess``), kept separate so that it can be checked without starting a server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

APP_NOTEBOOK = "workbench_app.ipynb"


def app_source(data: str = "digits", method: str = "simclr", runs_root: str = "runs") -> str:
    """The code of the app notebook's cell (a ``wb.Workbench`` over ``data`` and ``method``)."""
    return (
        "import workbench as wb\n\n"
        f"app = wb.Workbench(data={data!r}, method={method!r}, runs_root={runs_root!r})\n"
        "app"
    )


def write_app_notebook(
    folder: str | Path, data: str = "digits", method: str = "simclr", runs_root: str = "runs"
) -> Path:
    """Write the app notebook into ``folder`` and return its path.

    Args:
        folder: Where to write ``workbench_app.ipynb`` (created if missing).
        data: Dataset spec shared by the tabs (``"digits"``, ``"shapes"``, a folder...).
        method: Initial SSL method.
        runs_root: Runs folder for the Train and Embed tabs (absolute: the kernel runs in
            ``folder``).

    Raises:
        ValueError: An unknown method (the message lists the valid ones).
    """
    from workbench.methods import list_methods

    methods = list(list_methods())
    if method not in methods:
        raise ValueError(f"Unknown method {method!r}. Valid methods: {methods}")
    nb: dict[str, Any] = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "workbench-app",
                "metadata": {},
                "outputs": [],
                "source": app_source(data, method, runs_root),
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / APP_NOTEBOOK
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def voila_command(
    notebook: str | Path,
    port: int = 8866,
    host: str = "127.0.0.1",
    open_browser: bool = True,
) -> list[str]:
    """The Voila invocation serving ``notebook`` (run with the current Python).

    Args:
        notebook: The app notebook.
        port: TCP port of the page.
        host: Interface to listen on (``0.0.0.0`` to serve a classroom network).
        open_browser: Open the page in the default browser.

    Raises:
        ValueError: A port outside 1..65535.
    """
    if not 0 < int(port) < 65536:
        raise ValueError(f"port={port} is not a TCP port; use 1..65535 (e.g. 8866).")
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={int(port)}",
        f"--Voila.ip={host}",
        "--strip_sources=True",
        "--theme=light",
    ]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def check_voila() -> None:
    """Raise ImportError with the install command when Voila is missing."""
    import importlib.util

    if importlib.util.find_spec("voila") is None:
        raise ImportError(
            "`workbench app` needs Voila: pip install 'ssl-workbench[app]' (or pip install voila)."
        )


def serve(
    data: str = "digits",
    method: str = "simclr",
    runs_root: str | Path = "runs",
    port: int = 8866,
    host: str = "127.0.0.1",
    open_browser: bool = True,
    folder: str | Path | None = None,
) -> int:
    """Write the app notebook and serve it with Voila until interrupted; returns Voila's code.

    Args:
        data: Dataset spec shared by the tabs.
        method: Initial SSL method.
        runs_root: Runs folder (made absolute, relative to the current directory).
        port: TCP port of the page.
        host: Interface to listen on.
        open_browser: Open the page in the default browser.
        folder: Where the app notebook goes (default: a temporary folder, removed at the end).
    """
    import tempfile

    check_voila()
    root = str(Path(runs_root).expanduser().resolve())
    tmp = None if folder is not None else tempfile.mkdtemp(prefix="workbench-app-")
    try:
        nb = write_app_notebook(folder or tmp, data, method, root)  # type: ignore[arg-type]
        cmd = voila_command(nb, port=port, host=host, open_browser=open_browser)
        print(f"Serving the Workbench on http://{host}:{port} (Ctrl+C to stop)", file=sys.stderr)
        try:
            return subprocess.call(cmd, cwd=str(nb.parent))
        except KeyboardInterrupt:
            return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
