"""The ``workbench`` command line: a thin layer over the public Python API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import workbench


def _cmd_datasets(args: argparse.Namespace) -> int:
    from workbench.data import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:24s} {desc}")
    return 0


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
