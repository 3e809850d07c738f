"""SSL methods: one module each, composed from workbench.nn blocks; an explicit registry."""

from __future__ import annotations

from typing import Any

from workbench.method_cards import MethodInfo, info_dict
from workbench.methods.barlowtwins import BarlowTwins
from workbench.methods.base import Method, MethodConfig, StepOutput
from workbench.methods.byol import BYOL
from workbench.methods.dino import DINO
from workbench.methods.distillation import Distillation, DistillationV1
from workbench.methods.moco import MoCo
from workbench.methods.simclr import SimCLR
from workbench.methods.simsiam import SimSiam
from workbench.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    "barlowtwins": BarlowTwins,
    "byol": BYOL,
    "dino": DINO,
    "distillation": Distillation,
    "distillationv1": DistillationV1,
    "moco": MoCo,
    "simclr": SimCLR,
    "simsiam": SimSiam,
    "vicreg": VICReg,
}

__all__ = [
    "METHODS",
    "Method",
    "MethodConfig",
    "MethodInfo",
    "StepOutput",
    "describe_method",
    "get_method",
    "list_methods",
]


def list_methods() -> list[str]:
    """Names of every SSL method, sorted."""
    return sorted(METHODS)


def get_method(name: str) -> type[Method]:
    """The method class for ``name``; unknown names get a ValueError listing valid ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Valid methods: {list_methods()}")
    return METHODS[name]


def describe_method(name: str) -> dict[str, Any]:
    """Guidance for a method: summary, use_when, avoid_when, batch_size, epochs, backbones, ...

    Also includes ``defaults``: the method's config fields and their default values.
    """
    cls = get_method(name)
    out = info_dict(cls.info)
    out["name"] = name
    out["defaults"] = cls.Config().to_dict()
    return out


def settings_hints(name: str, *, batch_size: int, epochs: int) -> list[str]:
    """Hints (not errors) when settings are far from the method's recommendation."""
    info = get_method(name).info
    hints = []
    if batch_size < info.batch_size / 4:
        hints.append(
            f"batch_size={batch_size} is far below {name}'s recommended {info.batch_size}; "
            f"expect weaker features" + (" (few negatives per batch)" if name == "simclr" else "")
        )
    if epochs < info.epochs / 20:
        hints.append(
            f"epochs={epochs} is a very short run for {name} (recommended ~{info.epochs}); "
            f"fine for a look, not for final numbers"
        )
    return hints
