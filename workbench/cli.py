"""The ``workbench`` command line: a thin layer over the public Python API."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import workbench


def _cmd_datasets(args: argparse.Namespace) -> int:
    from workbench.data import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:24s} {desc}")
    return 0


def _cmd_backbones(args: argparse.Namespace) -> int:
    from workbench.nn.backbones import list_backbones

    for name, desc in list_backbones().items():
        print(f"{name:16s} {desc}")
    return 0


def method_cards() -> dict[str, dict[str, Any]]:
    """Every method's card (summary, use_when, ...), without importing torch."""
    from workbench.method_cards import CARDS, info_dict

    return {name: info_dict(CARDS[name]) for name in sorted(CARDS)}


def _cmd_methods(args: argparse.Namespace) -> int:
    for name, d in method_cards().items():
        print(f"{name:15s} {d['summary']}")
        if args.verbose:
            print(f"{'':15s} use when: {d['use_when']}")
            print(f"{'':15s} avoid when: {d['avoid_when']}")
            print(
                f"{'':15s} recommended: batch {d['batch_size']}, {d['epochs']} epochs; "
                f"backbones {', '.join(d['backbones'])}"
            )
            if d["changed"]:
                print(f"{'':15s} changed for short runs: {d['changed']}")
    return 0


class ProgressPrinter:
    """Live progress on stderr with tqdm: epoch, loss, std, kNN and images/s, and tqdm's ETA.

    A tqdm bar over all steps of the run, its postfix the live metrics; one plain line per epoch
    (also when stderr is not a terminal, where tqdm itself stays quiet), and events on their own
    line. tqdm is what Lightning's own progress bar and most training scripts use.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.last_knn: float | None = None
        self.epochs = 1
        self.bar: Any = None

    def _bar(self, rec: dict[str, Any]) -> Any:
        if self.bar is None:
            from tqdm.auto import tqdm

            total = int(rec["batches_per_epoch"]) * self.epochs
            self.bar = tqdm(
                total=total,
                initial=int(rec.get("step", 0)),
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.2,
                disable=None,  # quiet when not on a terminal: the epoch lines remain
                leave=True,
            )
        return self.bar

    def on_start(self, run: Any) -> None:
        """Remember the number of epochs."""
        self.epochs = int(run.config.get("epochs", 1))
        print(f"run folder: {run.out}", file=self.stream)

    def on_step(self, rec: dict[str, Any]) -> None:
        """Advance the bar to this step; the postfix shows the step's metrics."""
        bar = self._bar(rec)
        bar.set_description(f"epoch {rec['epoch'] + 1}/{self.epochs}", refresh=False)
        post = {"loss": f"{rec['loss']:.4f}", "std": f"{rec['rep_std']:.4f}"}
        if self.last_knn is not None:
            post["knn"] = f"{self.last_knn:.3f}"
        post["img/s"] = f"{rec['images_per_s']:.0f}"
        bar.set_postfix(post, refresh=False)
        bar.update(int(rec["step"]) + 1 - bar.n)

    def _write(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def on_epoch(self, rec: dict[str, Any]) -> None:
        """One line per epoch (also when not on a terminal)."""
        self.last_knn = rec.get("knn_acc")
        knn = f", kNN {rec['knn_acc']:.3f}" if rec.get("knn_acc") is not None else ""
        if knn and rec.get("knn_acc_init") is not None:
            knn += f" (random init {rec['knn_acc_init']:.3f})"
        self._write(
            f"epoch {rec['epoch'] + 1}/{rec['epochs']}: loss {rec['loss']:.4f}, std "
            f"{rec['rep_std']:.4f} (healthy ~{rec['rep_std_ref']:.4f}){knn}, "
            f"{rec['images_per_s']:.0f} img/s"
        )

    def on_event(self, ev: dict[str, Any]) -> None:
        """Warnings and hints on their own line."""
        self._write(f"[{ev['kind']}] {ev['message']}")

    def on_end(self, run: Any) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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


def resume_commands(
    config: Mapping[str, Any], out: str | Path, epochs: int | None = None
) -> tuple[str, str]:
    """The Python call and the command line that continue a stopped run from its checkpoint.

    Args:
        config: The run's ``config.json`` (data, method, model, batch and input size).
        out: The run folder.
        epochs: Total epochs to train to (default: the run's own).

    Returns:
        ``(python, command_line)``, e.g. ``wb.train('digits', ..., resume=True)`` and
        ``workbench train --data digits ... --resume``. A run that trained on an in-memory
        ``ImageDataset`` (whose name no loader reads) gets ``wb.train(ds, ...)`` and, instead
        of a command line, a sentence saying what the command line needs.
    """
    import shlex

    total = epochs if epochs is not None else config.get("epochs")
    keys = ("method", "model", "batch_size", "input_size")
    settings = {k: config[k] for k in keys if config.get(k) not in (None, "custom")}
    data = str(config.get("data", "digits"))
    kwargs = "".join(f", {k}={v!r}" for k, v in settings.items())
    tail = f"{kwargs}, out={str(out)!r}, resume=True, epochs={total})"
    if not config.get("data_is_spec", True):
        return (
            f"wb.train(ds{tail}  # ds: the same dataset ({data!r}) as the first start",
            f"(the command line needs a dataset name or folder; this run trained on the "
            f"in-memory dataset {data!r})",
        )
    python = f"wb.train({data!r}{tail}"
    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in settings.items()]
    cli = " ".join(
        ["workbench train", f"--data {shlex.quote(data)}", *flags,
         f"--out {shlex.quote(str(out))}", "--resume", f"--epochs {total}"]
    )  # fmt: skip
    return python, cli


def _cmd_train(args: argparse.Namespace) -> int:
    run = _train_with_progress(args)
    print(run.summary())
    if run.status == "stopped":
        _, cli = resume_commands(run.config, run.out, epochs=args.epochs)
        print(f"continue with: {cli}")
    return 0 if run.status in ("finished", "stopped") else 1


def write_demo_plots(run: Any, data: Any = None, reducer: str = "umap") -> list[Path]:
    """The run's training figure and, for labelled data, its map beside random init's, as PNGs.

    ``embedding_map.png`` shows the trained backbone's map next to the map of the backbone the
    run started from (rebuilt from the run's seed, so its kNN is the run's ``knn_acc_init``),
    with each one's held-out kNN in its title.
    """
    from workbench.eval import embed, project, random_init_like
    from workbench.eval.embedding import run_normalization
    from workbench.plots import compared_maps, figure_to_png, training_curves

    paths = []
    p = run.out / "training_curves.png"
    p.write_bytes(figure_to_png(training_curves(run)))
    paths.append(p)
    data = data if data is not None else run.config["data"]
    emb = embed(run, data, batch_size=256)
    if emb.labels is None:
        return paths
    init = random_init_like(run.backbone, run.config)
    c = run.config
    mean, std = run_normalization(c)  # the views the run trained on, as embed(run) sees them
    cemb = embed(init, data, batch_size=256, input_size=c["input_size"], mean=mean, std=std)
    last = run.history[-1] if run.history else {}

    def knn(key: str) -> str:
        v = last.get(key)
        return "" if v is None else f": kNN {v:.1%}"

    epochs = len(run.history)
    titles = [
        f"{c['method']}, {epochs} epoch{'s' if epochs != 1 else ''}{knn('knn_acc')}",
        f"random init (where the run started){knn('knn_acc_init')}",
    ]
    xys = [project(e.features, method=reducer) for e in (emb, cemb)]
    what = f"{reducer.upper()} of {len(emb):,} images, coloured by label"
    fig = compared_maps(xys, titles, emb.labels, emb.class_names,
                        suptitle=f"{what}; kNN on held-out images")  # fmt: skip
    p = run.out / "embedding_map.png"
    p.write_bytes(figure_to_png(fig))
    paths.append(p)
    return paths


def demo_verdict(summary: Any) -> str:
    """The demo's last line: trained vs random-init kNN, in points, for people."""
    knn, init = summary.get("knn_acc"), summary.get("knn_acc_init")
    if knn is None or init is None:
        return f"{summary['status']}: no kNN accuracy (unlabelled data, or no epoch finished)."
    gain = 100 * (knn - init)
    verdict = "learned" if gain > 0 else "did not beat random init"
    return (
        f"{summary['status']}: kNN accuracy {knn:.1%} after training vs {init:.1%} at random "
        f"init ({gain:+.1f} points: {verdict}); {summary['images_per_s']:,.0f} img/s."
    )


def demo_lr(method: str, lr: float | None) -> float | None:
    """The demo's learning rate: the user's, else DEMO_SIMCLR_LR for SimCLR (the one measured)."""
    return DEMO_SIMCLR_LR if lr is None and method == "simclr" else lr


def _cmd_demo(args: argparse.Namespace) -> int:
    data = "scikit-learn's 1,797 handwritten digits" if args.data == "digits" else args.data
    size = f" at {args.input_size} px" if args.input_size else ""
    args.lr = demo_lr(args.method, args.lr)
    lr = f", lr {args.lr:g}" if args.lr is not None else ""
    print(f"SSL Workbench demo: {args.method} on {data}{size}, {args.epochs} epochs{lr} "
          "(CPU-sized).")  # fmt: skip
    run = _train_with_progress(args)
    for p in write_demo_plots(run, reducer=args.reducer):
        print(f"wrote {p}")
    print(demo_verdict(run.summary()))
    print("Open notebooks/01_quickstart.ipynb next (make lab).")
    return 0 if run.status == "finished" else 1


def _cmd_app(args: argparse.Namespace) -> int:
    """Serve the Workbench (Augment, Train, Embed tabs) as a Voila page."""
    from workbench import app

    if args.dry_run:
        nb = app.write_app_notebook(
            args.folder or ".", args.data, args.method, args.runs_root, args.data_root
        )
        token = app.resolve_token(args.host, args.token, args.no_token)
        cmd = app.voila_command(
            nb, port=args.port, host=args.host, open_browser=not args.no_browser, token=token
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
        token=args.token,
        no_token=args.no_token,
        data_root=args.data_root,
    )


def _auto_or_int(text: str) -> Any:
    """``"auto"`` or a whole number (``--devices``, ``--num-workers``)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a whole number, got {text!r}"
        ) from None


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after every option's help, without "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        return super()._get_help_string(action) or text


# The demo's own budget (benchmarks/results/demo_study.md, 3 seeds each): SimCLR for 4 epochs at
# half its scaled rate (0.015, not 0.03 at batch 128) gained +7.2 kNN points over random init
# (+4.7 to +8.6) and the whole demo took 74-86 s on a 2-core AVX2 CPU, the slowest kind measured
# (the budget there: 90 s); at the scaled rate 4 epochs gained +4.6. In runs this short
# kNN dips below random init while the rate is high; the lower rate dips less. 8 epochs (+8.0)
# fit only an AMX CPU's budget, so one setting serves both.
DEMO_EPOCHS = 4
DEMO_SIMCLR_LR = 0.015

# The defaults of `workbench train` are wb.train's own (tests/test_cli.py checks they agree).
TRAIN_DEFAULTS: dict[str, Any] = {
    "method": "simclr",
    "model": "resnet18",
    "epochs": 10,
    "batch_size": 128,
    "accelerator": "auto",
    "devices": "auto",
    "precision": "auto",
    "num_workers": "auto",
    "strategy": "auto",
    "num_nodes": 1,
    "seed": 0,
}


def _add_train_args(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    d = TRAIN_DEFAULTS
    p.add_argument(
        "--data", default="digits", help="dataset name, image folder or name:root (cifar10:/data)"
    )
    p.add_argument("--method", default=d["method"], help="SSL method; see `workbench methods`")
    p.add_argument(
        "--model",
        default=d["model"],
        help="backbone; see `workbench backbones` (resnet18-small for 32-64 px images)",
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/<method>-<time>)")
    p.add_argument(
        "--epochs",
        type=int,
        default=DEMO_EPOCHS if demo else d["epochs"],
        help="passes over the data",
    )
    p.add_argument(
        "--batch-size", type=int, default=d["batch_size"], help="images per batch (per device)"
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="view side in pixels (default: the data's native size, else 224 on a GPU, 96 on "
        "a CPU)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (default: {DEMO_SIMCLR_LR:g} for the demo's SimCLR, else scaled by "
        "batch size)"
        if demo
        else "learning rate (default: scaled by batch size)",
    )
    p.add_argument(
        "--accelerator", default=d["accelerator"], help="cpu, gpu or auto (a GPU when there is one)"
    )
    p.add_argument(
        "--devices", default=d["devices"], type=_auto_or_int, help="devices to use, or auto"
    )
    p.add_argument(
        "--precision",
        default=d["precision"],
        help="32-true, bf16-mixed, 16-mixed or auto (bf16-mixed on GPUs, 32-true on CPUs)",
    )
    p.add_argument(
        "--num-workers",
        default=d["num_workers"],
        type=_auto_or_int,
        help="DataLoader worker processes, or auto (a safe count for this machine)",
    )
    p.add_argument("--strategy", default=d["strategy"], help="Lightning strategy, e.g. ddp")
    p.add_argument(
        "--num-nodes", type=int, default=d["num_nodes"], help="machines (Lightning num_nodes)"
    )
    p.add_argument(
        "--sync-batchnorm", action="store_true", help="SyncBatchNorm across processes (DDP)"
    )
    p.add_argument("--seed", type=int, default=d["seed"], help="random seed")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument(
        "--method-arg",
        action="append",
        metavar="KEY=VALUE",
        help="method config, e.g. temperature=0.2 (repeatable)",
    )
    p.add_argument(
        "--transform-arg",
        action="append",
        metavar="KEY=VALUE",
        help="augmentation override, e.g. cj_prob=0.0 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="SSL Workbench: preview augmentations, pretrain, explore embeddings.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"workbench {workbench.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "datasets", help="list built-in and torchvision datasets", formatter_class=fmt
    )
    p.set_defaults(func=_cmd_datasets)
    p = sub.add_parser("methods", help="list SSL methods with guidance", formatter_class=fmt)
    p.add_argument(
        "-v", "--verbose", action="store_true", help="when to use each, batch, epochs, backbones"
    )
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("backbones", help="list backbone names for --model", formatter_class=fmt)
    p.set_defaults(func=_cmd_backbones)
    p = sub.add_parser(
        "train", help="pretrain a backbone and write a run folder", formatter_class=fmt
    )
    _add_train_args(p)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser(
        "demo", help="headless main job: short run on digits, plots as PNG", formatter_class=fmt
    )
    _add_train_args(p, demo=True)
    p.add_argument(
        "--reducer", default="umap", choices=("umap", "pca"), help="how the maps are drawn"
    )
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser(
        "app", help="serve the Workbench tabs as a web page (Voila)", formatter_class=fmt
    )
    p.add_argument("--data", default="digits", help="dataset name or folder")
    p.add_argument("--method", default="simclr", help="see `workbench methods`")
    p.add_argument("--runs-root", default="runs", help="folder of the runs")
    p.add_argument("--port", type=int, default=8866, help="TCP port of the page")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on; 0.0.0.0 serves a classroom (then a token is required)",
    )
    p.add_argument(
        "--token",
        default=None,
        help="access token for the page (default: none on 127.0.0.1/localhost, a random one "
        "on any other host)",
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="serve without a token even on a network host (anyone who reaches it can use it)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="confine the page's data and run folders to this directory (recommended with "
        "--host 0.0.0.0)",
    )
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
