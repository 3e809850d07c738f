"""Backbones: torchvision ResNets and ViTs without their classifier, plus any user module."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.nn.utils import module_device

BACKBONES: dict[str, str] = {
    "resnet18": "torchvision ResNet-18 (11M params, 512-d), for >= 64 px images",
    "resnet34": "torchvision ResNet-34 (21M params, 512-d)",
    "resnet50": "torchvision ResNet-50 (24M params, 2048-d)",
    "resnet18-small": "ResNet-18 with a 3x3 stride-1 stem and no max-pool, for 32-64 px images",
    "vit-tiny": "ViT-Tiny (5.5M params, 192-d, 12 layers, 3 heads), patch size from input size",
    "vit-small": "ViT-Small (22M params, 384-d, 12 layers, 6 heads), patch size from input size",
    "mobilenet_v3_small": "torchvision MobileNetV3-Small (0.9M params, 576-d), a small student; "
    "stride 8 at <= 64 px",
    "mobilenet_v3_large": "torchvision MobileNetV3-Large (3.0M params, 960-d), a small student; "
    "stride 8 at <= 64 px",
}

# The first two stride-2 layers of each MobileNetV3 (stem conv and first downsampling block):
# set to stride 1 at <= 64 px, so the total stride is 8 as in resnet18-small.
_MOBILENET_EARLY_STRIDES: dict[str, tuple[int, int]] = {
    "mobilenet_v3_small": (0, 1),
    "mobilenet_v3_large": (0, 2),
}
SMALL_INPUT_MAX = 64  # at or below this side, conv students use their small-image strides


def list_backbones() -> dict[str, str]:
    """Backbone names with a one-line description."""
    return dict(BACKBONES)


def patch_size_for(input_size: int) -> int:
    """Patch size giving a 7-16 token grid: 4 px below 64, 8 below 160, else 16 (14 for 224)."""
    if input_size < 64:
        return 4
    if input_size < 160:
        return 8
    return 14 if input_size % 14 == 0 else 16


class ViTBackbone(nn.Module):
    """torchvision's VisionTransformer returning the class token, at any input resolution.

    Positional embeddings are interpolated when the input is not ``image_size`` (multi-crop local
    views, or a teacher fed a different size), as in DINO's reference code.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer

        image_size = math.ceil(image_size / patch_size) * patch_size
        self.vit = VisionTransformer(
            image_size=image_size,
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
        )
        self.vit.heads = nn.Identity()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim

    def _pos_embedding(self, gh: int, gw: int) -> torch.Tensor:
        pos = self.vit.encoder.pos_embedding  # (1, 1 + G*G, D)
        cls_pos, grid = pos[:, :1], pos[:, 1:]
        g = int(math.sqrt(grid.shape[1]))
        if (gh, gw) == (g, g):
            return pos
        grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)  # (1, D, g, g)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid.flatten(2).transpose(1, 2)], dim=1)

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple[Any, ...]:
        """The last ``n`` blocks' outputs, with DINOv2's interface (``reshape=True``: maps).

        Args:
            x: Images (B, 3, H, W); resized up to multiples of ``patch_size``.
            n: How many of the last blocks to return.
            reshape: Patch tokens as maps (B, D, H/p, W/p) instead of (B, H*W/p^2, D).
            return_class_token: Return ``(patch_tokens, class_token (B, D))`` pairs.
            norm: Apply the final LayerNorm to each block's output (as DINOv2 does).

        Returns:
            One entry per block, oldest first.
        """
        p = self.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            h, w = (math.ceil(s / p) * p for s in x.shape[-2:])
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.vit.conv_proj(x).flatten(2).transpose(1, 2)  # (B, gh*gw, D)
        cls = self.vit.class_token.expand(x.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self._pos_embedding(gh, gw)
        enc = self.vit.encoder
        tokens = enc.dropout(tokens)
        layers = list(enc.layers)
        outs = []
        for i, layer in enumerate(layers):
            tokens = layer(tokens)
            if i >= len(layers) - n:
                outs.append(enc.ln(tokens) if norm else tokens)
        patches = [o[:, 1:] for o in outs]  # (B, gh*gw, D)
        if reshape:
            patches = [t.transpose(1, 2).reshape(t.shape[0], -1, gh, gw) for t in patches]
        if return_class_token:
            return tuple(zip(patches, [o[:, 0] for o in outs]))
        return tuple(patches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class-token features (B, D) for images (B, 3, H, W); H, W multiples of patch_size."""
        cls: torch.Tensor = self.get_intermediate_layers(x, return_class_token=True)[-1][1]
        return cls


def feature_map(
    module: nn.Module, x: torch.Tensor, n_blocks: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (B, D) and the final spatial feature map (B, C, h, w), in one pass.

    ViTs (a DINOv2-style ``get_intermediate_layers``: DINOv2, :class:`ViTBackbone`): the class
    token, and the patch tokens of the last ``n_blocks`` blocks concatenated along channels
    (C = n_blocks * D), as LightlyTrain's distillationv2 ``_forward_teacher`` does. CNNs: the
    input of the last ``nn.AdaptiveAvgPool2d`` (the global pool before the classifier, which
    torchvision's ResNets and MobileNets have); ``n_blocks`` does not apply.

    Raises:
        ValueError: The module has neither (e.g. a torchvision ViT): train on pooled features.
    """
    blocks = getattr(module, "get_intermediate_layers", None)
    if callable(blocks):
        outs = blocks(x, n=n_blocks, reshape=True, return_class_token=True)
        return outs[-1][1], torch.cat([o[0] for o in outs], dim=1)
    pools = [m for m in module.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError(
            f"{type(module).__name__} exposes no spatial feature map: it has no "
            "get_intermediate_layers (ViTs) and no nn.AdaptiveAvgPool2d (CNNs). Distil pooled "
            "features instead: method_args={'spatial': False}."
        )
    seen: list[torch.Tensor] = []
    handle = pools[-1].register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        pooled = module(x).flatten(1)
    finally:
        handle.remove()
    return pooled, seen[-1]


def prefers_channels_last(backbone: nn.Module) -> bool:
    """True for conv nets, which train faster channels-last (NHWC) on GPUs and on CPUs.

    oneDNN's CPU convolutions are faster on NHWC too: a ResNet-18 SimCLR step at 32 px ran 1.2x
    faster on a 2-core AVX2 CPU, and no slower for resnet18-small or at 64 px. ViTs only use a
    convolution for their patch embedding, so they stay as they are.
    """
    if isinstance(backbone, ViTBackbone):
        return False
    return any(isinstance(m, nn.Conv2d) for m in backbone.modules())


def get_backbone(
    name: str | nn.Module, input_size: int = 224, feature_dim: int | None = None
) -> tuple[nn.Module, int]:
    """Build a backbone that maps images (B, 3, H, W) to features (B, D).

    Args:
        name: A name of ``list_backbones()`` or an ``nn.Module`` (then ``feature_dim`` is needed,
            or it is measured with one forward pass).
        input_size: Training image side; picks the ViT patch size.
        feature_dim: Output dimension of a user module.

    Returns:
        (module, feature_dim). ResNets keep torchvision's parameter names (``fc`` is Identity), so
        their exported state dict loads into ``torchvision.models.resnet18()`` with ``strict=False``
        (only the classifier is missing).
    """
    if isinstance(name, nn.Module):
        if feature_dim is None:
            with torch.no_grad():
                was = name.training
                name.eval()
                probe = torch.zeros(2, 3, input_size, input_size, device=module_device(name))
                feature_dim = int(name(probe).flatten(1).shape[1])
                name.train(was)
        return name, int(feature_dim)
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}. Valid backbones: {sorted(BACKBONES)}")
    import torchvision.models as tvm

    if name.startswith("resnet"):
        arch = name.split("-")[0]
        model = getattr(tvm, arch)(weights=None)
        if name.endswith("-small"):
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        dim = model.fc.in_features
        model.fc = nn.Identity()
        return model, dim
    if name.startswith("mobilenet"):
        return _mobilenet(name, input_size)
    if name == "vit-tiny":
        vit = ViTBackbone(input_size, patch_size_for(input_size), 12, 3, 192, 768)
    else:
        vit = ViTBackbone(input_size, patch_size_for(input_size), 12, 6, 384, 1536)
    return vit, vit.hidden_dim


def _mobilenet(name: str, input_size: int) -> tuple[nn.Module, int]:
    """Torchvision's MobileNetV3 without its classifier: (B, 3, H, W) -> pooled (B, D).

    At 32 px the stock network's stride of 32 leaves a 1x1 map before pooling. At <= 64 px the
    stem conv and the first downsampling block run at stride 1 instead (total stride 8: a 4x4
    map at 32 px, like resnet18-small), which keeps the weights' shapes, so the exported state
    dict still loads into ``torchvision.models.<name>()``. The alternative, upsampling the input
    4x, runs the first layers on 16x the pixels, measured slower for training and inference
    (``benchmarks/mobilenet_small_inputs.py``), and shows the network interpolated pixels.
    """
    import torchvision.models as tvm

    model = getattr(tvm, name)(weights=None)
    dim = int(model.classifier[0].in_features)
    model.classifier = nn.Identity()
    # Torchvision builds MobileNetV3 with BatchNorm momentum 0.01, tuned for ImageNet's
    # thousands of steps an epoch. A short run (digits: 11 steps an epoch) then evaluates with
    # running statistics far behind the weights: a distillation at 0.01 (and a plain bilinear
    # resize) had held-out kNN 0.31 after 12 epochs, 0.77 with 0.1 (and antialiasing).
    # PyTorch's default 0.1 tracks the weights.
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 0.1
    if input_size <= SMALL_INPUT_MAX:
        for block in _MOBILENET_EARLY_STRIDES[name]:
            for conv in model.features[block].modules():
                if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                    conv.stride = (1, 1)
    return model, dim
