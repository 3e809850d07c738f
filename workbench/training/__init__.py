"""Training: ``train()`` (a thin Lightning shell around the methods) and its callbacks."""

from workbench.training.api import train

__all__ = ["train"]
