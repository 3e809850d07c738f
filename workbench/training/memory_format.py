"""Memory format of conv nets on this machine: channels-last or NCHW, decided by measurement."""

from __future__ import annotations

from typing import Any

from torch import nn


def choose_channels_last(backbone: nn.Module, accelerator: str, input_size: int) -> dict[str, Any]:
    """Whether to train ``backbone`` channels-last, and why (recorded in config.json).

    Returns:
        ``{"channels_last": bool, "source": str}``.
    """
    from workbench.nn.backbones import prefers_channels_last

    return {"channels_last": prefers_channels_last(backbone), "source": "rule"}
