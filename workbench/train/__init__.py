"""Training: ``train()`` (a thin Lightning shell around the methods) and its callbacks."""

from workbench.train.api import train

__all__ = ["train"]
