"""The ``workbench`` command line: a thin layer over the public Python API."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import workbench


def _cmd_datasets(args: argparse.Namespace) -> int:
    from workbench.data import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:24s} {desc}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from workbench.methods import describe_method, list_methods

    for name in list_methods():
        d = describe_method(name)
        print(f"{name:15s} {d['summary']}")
        if args.verbose:
            print(f"{'':15s} use when: {d['use_when']}")
            print(f"{'':15s} avoid when: {d['avoid_when']}")
            print(
                f"{'':15s} recommended: batch {d['batch_size']}, {d['epochs']} epochs; "
                f"backbones {', '.join(d['backbones'])}"
            )
    return 0


class ProgressPrinter:
    """A one-line progress bar on stderr: epoch, step, loss, std, kNN, images/s, ETA."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.last_knn: float | None = None
        self._last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def on_step(self, rec: dict[str, Any]) -> None:
        """Redraw at most 5 times a second (on a terminal)."""
        now = time.monotonic()
        if not self.tty or now - self._last < 0.2:
            return
        self._last = now
        bpe = rec["batches_per_epoch"]
        left = (bpe - rec["batch"] - 1) + bpe * (self.epochs - rec["epoch"] - 1)
        eta = left * rec["seconds"] / max(1, rec["step"] + 1)
        knn = f" knn {self.last_knn:.3f}" if self.last_knn is not None else ""
        self.stream.write(
            f"\repoch {rec['epoch'] + 1}/{self.epochs} step {rec['batch'] + 1}/{bpe} "
            f"loss {rec['loss']:.4f} std {rec['rep_std']:.4f}{knn} "
            f"{rec['images_per_s']:.0f} img/s eta {eta:.0f}s   "
        )
        self.stream.flush()

    def on_start(self, run: Any) -> None:
        """Remember the number of epochs."""
        self.epochs = int(run.config.get("epochs", 1))
        print(f"run folder: {run.out}", file=self.stream)

    def on_epoch(self, rec: dict[str, Any]) -> None:
        """One line per epoch (also when not on a terminal)."""
        self.last_knn = rec.get("knn_acc")
        knn = f", kNN {rec['knn_acc']:.3f}" if rec.get("knn_acc") is not None else ""
        self.stream.write(
            ("\r" if self.tty else "")
            + f"epoch {rec['epoch'] + 1}/{rec['epochs']}: loss {rec['loss']:.4f}, std "
            f"{rec['rep_std']:.4f} (healthy ~{rec['rep_std_ref']:.4f}){knn}, "
            f"{rec['images_per_s']:.0f} img/s" + " " * 10 + "\n"
        )
        self.stream.flush()

    def on_event(self, ev: dict[str, Any]) -> None:
        """Warnings and hints on their own line."""
        self.stream.write(f"\n[{ev['kind']}] {ev['message']}\n")


class StopOnCtrlC:
    """Ctrl-C as the Stop button: the first ends the run after the current batch, cleanly.

    The run then keeps its checkpoint and status "stopped", so ``--resume`` continues it; a
    second Ctrl-C aborts at once. Lightning's own KeyboardInterrupt handling would leave a failed
    run without a checkpoint.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.requested = False
        self._previous: Any = None

    def should_stop(self) -> bool:
        """Polled by wb.train after every batch."""
        return self.requested

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.stream.write(
            "\nStopping after this batch, with a checkpoint (Ctrl-C again to abort) ...\n"
        )
        self.stream.flush()

    def __enter__(self) -> StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _train_with_progress(args: argparse.Namespace) -> Any:
    from workbench.training import train

    with StopOnCtrlC() as stop:
        return train(args.data, callbacks=[ProgressPrinter(), stop], **_train_kwargs(args))


def _parse_kv(items: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(
                f"Expected KEY=VALUE, got {item!r} (e.g. --method-arg temperature=0.2)."
            )
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
        if isinstance(out[k], list):
            out[k] = tuple(out[k])
    return out


def _train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        method=args.method,
        model=args.model,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        input_size=args.input_size,
        lr=args.lr,
        accelerator=args.accelerator,
        devices=args.devices,
        precision=args.precision,
        num_workers=args.num_workers,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        sync_batchnorm=args.sync_batchnorm,
        method_args=_parse_kv(args.method_arg),
        transform_args=_parse_kv(args.transform_arg),
    )


def _cmd_train(args: argparse.Namespace) -> int:
    run = _train_with_progress(args)
    s = run.summary()
    print(f"{s['status']}: {run.out}  loss {s['loss']}, kNN {s['knn_acc']}")
    if run.status == "stopped":
        print(f"continue with: workbench train --out {run.out} --resume --epochs {args.epochs}")
    return 0 if run.status in ("finished", "stopped") else 1


def write_demo_plots(run: Any, data: Any = None) -> list[Path]:
    """Training curves (loss / std / kNN) and, for labelled data, an embedding map, as PNGs."""
    from workbench.plots import figure_to_png, training_curves

    paths = []
    p = run.out / "training_curves.png"
    p.write_bytes(figure_to_png(training_curves(run)))
    paths.append(p)
    from workbench.eval import embed, project
    from workbench.plots import embedding_map

    emb = embed(run, data if data is not None else run.config["data"], batch_size=256)
    xy = project(emb.features, method="pca")
    fig = embedding_map(
        xy,
        labels=emb.labels,
        class_names=emb.class_names,
        title=f"{run.config['method']} embeddings (PCA)",
    )
    p = run.out / "embedding_map.png"
    p.write_bytes(figure_to_png(fig))
    paths.append(p)
    return paths


def _cmd_demo(args: argparse.Namespace) -> int:
    print("SSL Workbench demo: SimCLR on scikit-learn's handwritten digits (CPU friendly).")
    run = _train_with_progress(args)
    for p in write_demo_plots(run):
        print(f"wrote {p}")
    s = run.summary()
    print(
        f"{s['status']}: kNN accuracy {s['knn_acc']}, final loss {s['loss']:.4f}, "
        f"{s['images_per_s']:.0f} img/s. Open notebooks/01_quickstart.ipynb next (make lab)."
    )
    return 0 if run.status == "finished" else 1


def _cmd_app(args: argparse.Namespace) -> int:
    """Serve the Workbench (Augment, Train, Embed tabs) as a Voila page."""
    from workbench import app

    if args.dry_run:
        nb = app.write_app_notebook(args.folder or ".", args.data, args.method, args.runs_root)
        cmd = app.voila_command(
            nb, port=args.port, host=args.host, open_browser=not args.no_browser
        )
        print(" ".join(cmd))
        return 0
    return app.serve(
        data=args.data,
        method=args.method,
        runs_root=args.runs_root,
        port=args.port,
        host=args.host,
        open_browser=not args.no_browser,
        folder=args.folder,
    )


def _add_train_args(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    p.add_argument("--data", default="digits", help="dataset name, folder or name:root")
    p.add_argument("--method", default="simclr", help="see `workbench methods`")
    p.add_argument(
        "--model", default="resnet18", help="backbone (resnet18-small, resnet18, vit-tiny, ...)"
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/<method>-<time>)")
    p.add_argument("--epochs", type=int, default=5 if demo else 10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto", type=lambda s: s if s == "auto" else int(s))
    p.add_argument("--precision", default="auto")
    p.add_argument("--num-workers", default="auto", type=lambda s: s if s == "auto" else int(s))
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--num-nodes", type=int, default=1, help="machines (Lightning num_nodes)")
    p.add_argument(
        "--sync-batchnorm", action="store_true", help="SyncBatchNorm across processes (DDP)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--method-arg", action="append", metavar="KEY=VALUE", help="method config")
    p.add_argument(
        "--transform-arg",
        action="append",
        metavar="KEY=VALUE",
        help="augmentation override, e.g. cj_prob=0.0",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="SSL Workbench: preview augmentations, pretrain, explore embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {workbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("datasets", help="list built-in and torchvision datasets")
    p.set_defaults(func=_cmd_datasets)
    p = sub.add_parser("methods", help="list SSL methods with guidance")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("train", help="pretrain a backbone and write a run folder")
    _add_train_args(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("demo", help="headless main job: short run on digits, plots as PNG")
    _add_train_args(p, demo=True)
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("app", help="serve the Workbench tabs as a web page (Voila)")
    p.add_argument("--data", default="digits", help="dataset name or folder")
    p.add_argument("--method", default="simclr", help="see `workbench methods`")
    p.add_argument("--runs-root", default="runs", help="folder of the runs")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve a classroom")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--folder", default=None, help="keep the app notebook here (default: temp)")
    p.add_argument("--dry-run", action="store_true", help="write the notebook, print the command")
    p.set_defaults(func=_cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``workbench`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"workbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nworkbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
