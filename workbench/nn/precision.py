"""Mixed precision: the parts of a model that must stay in float32 under autocast."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

F_ = TypeVar("F_", bound=Callable[..., Any])


def full_precision(fn: F_) -> F_:
    """Run ``fn`` with autocast off and its half-precision tensor inputs (or lists) in float32.

    Under bf16/fp16 autocast the backbone runs in low precision, which is where the time goes.
    Heads and losses are cheap, and similarities divided by a small temperature, softmaxes over
    many negatives and (D, D) cross-correlations lose too much there (bf16 keeps 8 bits of
    mantissa), so the projection heads and every loss compute in float32.
    """

    def cast(a: Any) -> Any:
        if isinstance(a, Tensor) and a.dtype in (torch.float16, torch.bfloat16):
            return a.float()  # float64 stays float64
        if isinstance(a, (list, tuple)):
            return type(a)(cast(x) for x in a)
        return a

    def device_type(args: tuple[Any, ...]) -> str:
        for a in args:
            if isinstance(a, Tensor):
                return a.device.type
            if isinstance(a, (list, tuple)) and a and isinstance(a[0], Tensor):
                return a[0].device.type
        return "cpu"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type(args), enabled=False):
            return fn(*cast(args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
