"""``workbench app``: the Workbench widget as a standalone web page (Voila), for teaching sessions.

Voila renders a notebook without its code. :func:`write_app_notebook` writes a one-cell notebook
that builds ``wb.Workbench(...)``; :func:`voila_command` is the server invocation (a list for
``subprocess``), kept separate so that it can be checked without starting a server.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

APP_NOTEBOOK = "workbench_app.ipynb"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for hosts only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may be reachable from the network


def resolve_token(host: str, token: str | None = None, no_token: bool = False) -> str:
    """The page's access token: ``token``, "" (none), or a fresh random one.

    None on a loopback host or when opted out; else a random one, as Voila's ``auto_token``
    would make, but made here so that the printed URL can carry it.

    Raises:
        ValueError: Both ``token`` and ``no_token`` given.
    """
    if token and no_token:
        raise ValueError("Pass either --token or --no-token, not both.")
    if token:
        return token
    if no_token or is_loopback(host):
        return ""
    return secrets.token_hex(24)


def check_inside(path: str | Path, root: str | Path | None, what: str = "Path") -> Path:
    """``path`` resolved (``~``, ``..`` and symlinks), refused when it leaves ``root``.

    Args:
        path: A folder or file the app was asked to use.
        root: The app's ``--data-root``; None allows any path.
        what: What the path is, for the message ("Data folder", "Runs folder"...).

    Raises:
        ValueError: ``path`` resolves outside ``root`` (the message names both).
    """
    resolved = Path(path).expanduser().resolve()
    if root is None:
        return resolved
    base = Path(root).expanduser().resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(
            f"{what} {str(path)!r} is outside the data root {str(base)!r} of this app (it "
            f"resolves to {str(resolved)!r}); use a folder inside {str(base)!r}."
        )
    return resolved


def check_data_spec(spec: Any, root: str | Path | None) -> None:
    """Refuse a dataset spec that reads files outside ``root`` (built-in names are allowed).

    Raises:
        ValueError: A folder, file or ``name:<root>`` spec outside ``root``.
    """
    if root is None or not isinstance(spec, (str, Path)):
        return
    text = str(spec).strip()
    from workbench.data import list_datasets

    names = list_datasets()  # built-ins, and "cifar10:<root>" for the torchvision sets
    if text in names:
        return  # built-in (digits, shapes, photos): no user path involved
    name, sep, rest = text.partition(":")
    if sep and f"{name}:<root>" in names:
        check_inside(rest, root, f"Dataset root of {name}")
        return
    check_inside(text, root, "Data folder")


def app_source(
    data: str = "digits",
    method: str = "simclr",
    runs_root: str = "runs",
    data_root: str | None = None,
) -> str:
    """The code of the app notebook's cell (a ``wb.Workbench`` over ``data`` and ``method``)."""
    confine = "" if data_root is None else f", data_root={data_root!r}"
    return (
        "import workbench as wb\n\n"
        f"app = wb.Workbench(data={data!r}, method={method!r}, runs_root={runs_root!r}"
        f"{confine})\n"
        "app"
    )


def write_app_notebook(
    folder: str | Path,
    data: str = "digits",
    method: str = "simclr",
    runs_root: str = "runs",
    data_root: str | None = None,
) -> Path:
    """Write the app notebook into ``folder`` and return its path.

    Args:
        folder: Where to write ``workbench_app.ipynb`` (created if missing).
        data: Dataset spec shared by the tabs (``"digits"``, ``"shapes"``, a folder...).
        method: Initial SSL method.
        runs_root: Runs folder for the Train and Embed tabs (absolute: the kernel runs in
            ``folder``).
        data_root: Confine the app's data and run folders to this directory (None: anywhere).

    Raises:
        ValueError: An unknown method (the message lists the valid ones), or ``data`` /
            ``runs_root`` outside ``data_root``.
    """
    from workbench.methods import list_methods

    methods = list(list_methods())
    if method not in methods:
        raise ValueError(f"Unknown method {method!r}. Valid methods: {methods}")
    if data_root is not None:
        data_root = str(Path(data_root).expanduser().resolve())
        check_data_spec(data, data_root)
        check_inside(runs_root, data_root, "Runs folder")
    nb: dict[str, Any] = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "workbench-app",
                "metadata": {},
                "outputs": [],
                "source": app_source(data, method, runs_root, data_root),
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
    token: str = "",
) -> list[str]:
    """The Voila invocation serving ``notebook`` (run with the current Python).

    Args:
        notebook: The app notebook.
        port: TCP port of the page.
        host: Interface to listen on (``0.0.0.0`` to serve a classroom network).
        open_browser: Open the page in the default browser.
        token: Access token every request must carry (``?token=...``); "" for none. See
            :func:`resolve_token`.

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
        f"--token={token}",
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


def page_url(host: str, port: int, token: str = "") -> str:
    """The URL to open (with ``?token=`` when the page has one)."""
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"  # IPv6 literal
    return f"http://{shown}:{int(port)}/" + (f"?token={token}" if token else "")


def stop_process_tree(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Stop ``proc`` and everything it started (Voila and its kernels), waiting for each.

    SIGTERM first (Voila then shuts its kernels down itself); whatever still runs after
    ``timeout`` seconds gets SIGKILL. Kernels run in sessions of their own (jupyter_client starts
    them so), so they are found as descendants, not through the process group.
    """
    import psutil  # a dependency of ipykernel

    try:
        parent = psutil.Process(proc.pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    alive = [p for p in family if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    if proc.poll() is None:
        proc.wait(5)


def serve(
    data: str = "digits",
    method: str = "simclr",
    runs_root: str | Path = "runs",
    port: int = 8866,
    host: str = "127.0.0.1",
    open_browser: bool = True,
    folder: str | Path | None = None,
    token: str | None = None,
    no_token: bool = False,
    data_root: str | Path | None = None,
) -> int:
    """Write the app notebook and serve it with Voila until stopped; returns Voila's code.

    Ctrl-C, SIGTERM (what ``kill`` and process managers send) and any error stop the Voila
    server and its kernels before this returns: nothing is left running.

    Args:
        data: Dataset spec shared by the tabs.
        method: Initial SSL method.
        runs_root: Runs folder (made absolute, relative to the current directory).
        port: TCP port of the page.
        host: Interface to listen on; any non-loopback host gets a token unless ``no_token``.
        open_browser: Open the page in the default browser.
        folder: Where the app notebook goes (default: a temporary folder, removed at the end).
        token: The page's access token (default: a random one on a non-loopback host).
        no_token: Serve without a token even on a network host.
        data_root: Confine the page's data and run folders to this directory.

    Raises:
        ValueError: A bad port, ``token`` with ``no_token``, or a path outside ``data_root``.
    """
    import tempfile

    check_voila()
    root = str(Path(runs_root).expanduser().resolve())
    confine = None if data_root is None else str(Path(data_root).expanduser().resolve())
    if confine is not None and not Path(confine).is_dir():
        raise FileNotFoundError(f"--data-root {str(data_root)!r} is not a folder; create it first.")
    secret = resolve_token(host, token, no_token)
    tmp = None if folder is not None else tempfile.mkdtemp(prefix="workbench-app-")
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds into the finally below, which stops Voila

    proc: subprocess.Popen[Any] | None = None
    try:
        nb = write_app_notebook(folder or tmp, data, method, root, confine)  # type: ignore[arg-type]
        cmd = voila_command(nb, port=port, host=host, open_browser=open_browser, token=secret)
        if not secret and not is_loopback(host):
            print(
                f"Warning: serving on {host} without a token: anyone who can reach this machine "
                "can open the page, read the images it can reach and start runs.",
                file=sys.stderr,
            )
        print(f"Serving the Workbench on {page_url(host, port, secret)} (Ctrl+C to stop)",
              file=sys.stderr)  # fmt: skip
        if threading_main():
            signal.signal(signal.SIGTERM, on_sigterm)
        proc = subprocess.Popen(cmd, cwd=str(nb.parent), start_new_session=True)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
    finally:
        if proc is not None:
            stop_process_tree(proc)
        if threading_main():
            signal.signal(signal.SIGTERM, previous)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def threading_main() -> bool:
    """True in the main thread (the only one that may set signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()
