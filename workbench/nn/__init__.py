"""Pure-torch building blocks: backbones, heads, losses, teachers (no Lightning here)."""
