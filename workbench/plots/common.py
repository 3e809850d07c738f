"""Helpers shared by every figure: PNG export and a consistent look."""

from __future__ import annotations

import io
from typing import Any


def figure_to_png(fig: Any, dpi: int = 100, close: bool = True) -> bytes:
    """Render a matplotlib Figure to PNG bytes (for ipywidgets.Image or files).

    Args:
        fig: A ``matplotlib.figure.Figure``.
        dpi: Resolution.
        close: Release the figure afterwards (figures made with ``Figure()`` need no pyplot).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def new_figure(width: float, height: float) -> Any:
    """A Figure not registered with pyplot (safe in threads, nothing leaks between redraws)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")
