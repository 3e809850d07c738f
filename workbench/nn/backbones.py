"""Backbones: torchvision ResNets and ViTs without their classifier, plus any user module."""

from __future__ import annotations

import math

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class-token features (B, D) for images (B, 3, H, W); H, W multiples of patch_size."""
        p = self.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            h, w = (math.ceil(s / p) * p for s in x.shape[-2:])
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.vit.conv_proj(x).flatten(2).transpose(1, 2)  # (B, gh*gw, D)
        cls = self.vit.class_token.expand(x.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self._pos_embedding(gh, gw)
        enc = self.vit.encoder
        tokens = enc.ln(enc.layers(enc.dropout(tokens)))
        return tokens[:, 0]


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
    if input_size <= SMALL_INPUT_MAX:
        for block in _MOBILENET_EARLY_STRIDES[name]:
            for conv in model.features[block].modules():
                if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                    conv.stride = (1, 1)
    return model, dim
