"""Projection and prediction heads of the SSL methods (pure torch, Lightly-style).

A head is a stack of ``Linear -> [BatchNorm] -> [non-linearity]`` blocks. Linear layers that
are followed by a BatchNorm have no bias (the BatchNorm's shift replaces it). Every head maps
(B, input_dim) to (B, output_dim) and exposes ``output_dim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from workbench.nn.precision import full_precision

Block = tuple[int, int, nn.Module | None, nn.Module | None]


class ProjectionHead(nn.Module):
    """A sequence of ``Linear(in, out) -> batch_norm -> non_linearity`` blocks.

    Args:
        blocks: One ``(input_dim, output_dim, batch_norm, non_linearity)`` tuple per layer;
            ``batch_norm`` and ``non_linearity`` may be None. Each block's input_dim must equal
            the previous block's output_dim.

    Example:
        >>> blocks = [(512, 256, nn.BatchNorm1d(256), nn.ReLU()), (256, 64, None, None)]
        >>> ProjectionHead(blocks)(torch.randn(4, 512)).shape
        torch.Size([4, 64])
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        if len(blocks) == 0:
            raise ValueError("ProjectionHead needs at least one block, got []")
        layers: list[nn.Module] = []
        prev_out: int | None = None
        for i, (in_dim, out_dim, batch_norm, non_linearity) in enumerate(blocks):
            if in_dim < 1 or out_dim < 1:
                raise ValueError(f"Block {i} has non-positive dims ({in_dim}, {out_dim})")
            if prev_out is not None and in_dim != prev_out:
                raise ValueError(
                    f"Block {i} input_dim {in_dim} != previous block's output_dim {prev_out}"
                )
            layers.append(nn.Linear(in_dim, out_dim, bias=batch_norm is None))
            if batch_norm is not None:
                layers.append(batch_norm)
            if non_linearity is not None:
                layers.append(non_linearity)
            prev_out = out_dim
        self.layers = nn.Sequential(*layers)
        self.input_dim = blocks[0][0]
        self.output_dim = blocks[-1][1]

    @full_precision
    def forward(self, x: Tensor) -> Tensor:
        """Project features, in float32 under autocast (see ``workbench.nn.precision``).

        Args:
            x: (B, input_dim) backbone features.

        Returns:
            (B, output_dim) projections.
        """
        out: Tensor = self.layers(x)
        return out


def _mlp_blocks(
    input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, batch_norm: bool,
    output_batch_norm: bool,
) -> list[Block]:  # fmt: skip
    """``num_layers`` Linear layers, ReLU between them, optional BN (on the output too)."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
    blocks: list[Block] = []
    for i in range(num_layers):
        last = i == num_layers - 1
        use_bn = batch_norm and (output_batch_norm or not last)
        bn = nn.BatchNorm1d(dims[i + 1]) if use_bn else None
        blocks.append((dims[i], dims[i + 1], bn, None if last else nn.ReLU()))
    return blocks


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR projection head: ``num_layers`` Linear layers with ReLU (and BN, also on the output).

    SimCLR v1 uses 2 layers; SimCLR v2 uses 3 layers with BatchNorm [1].

    - [0]: SimCLR, 2020, https://arxiv.org/abs/2002.05709
    - [1]: SimCLR v2, 2020, https://arxiv.org/abs/2006.10029

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        output_dim: Projection dimension.
        num_layers: Number of Linear layers (>= 1).
        batch_norm: BatchNorm after every Linear layer.
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, num_layers, batch_norm,
                                     output_batch_norm=True))  # fmt: skip


class MoCoProjectionHead(ProjectionHead):
    """MoCo v2 projection head: a 2-layer MLP with ReLU [1]; v3 uses 3 layers with BN.

    - [0]: MoCo, 2020, https://arxiv.org/abs/1911.05722
    - [1]: MoCo v2, 2020, https://arxiv.org/abs/2003.04297

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        output_dim: Projection dimension.
        num_layers: Number of Linear layers (>= 1).
        batch_norm: BatchNorm after every Linear layer (MoCo v3).
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, num_layers, batch_norm,
                                     output_batch_norm=True))  # fmt: skip


class BYOLProjectionHead(ProjectionHead):
    """BYOL projection head: Linear -> BN -> ReLU -> Linear.

    - [0]: BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layer.
        output_dim: Projection dimension.
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 4096, output_dim: int = 256
    ) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, 2, True, False))


class BYOLPredictionHead(ProjectionHead):
    """BYOL prediction head, the same shape of MLP as its projection head.

    - [0]: BYOL, 2020, https://arxiv.org/abs/2006.07733

    Args:
        input_dim: Projection dimension.
        hidden_dim: Width of the hidden layer.
        output_dim: Prediction dimension (equal to the projection dimension).
    """

    def __init__(self, input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, 2, True, False))


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam projection head: 3 Linear layers, each with BN, ReLU on all but the output.

    The output BatchNorm has no affine parameters, as in the authors' code.

    - [0]: SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        output_dim: Projection dimension.
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 2048
    ) -> None:
        super().__init__([
            (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
            (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()),
            (hidden_dim, output_dim, nn.BatchNorm1d(output_dim, affine=False), None),
        ])  # fmt: skip


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam prediction head: a bottleneck Linear -> BN -> ReLU -> Linear.

    - [0]: SimSiam, 2021, https://arxiv.org/abs/2011.10566

    Args:
        input_dim: Projection dimension.
        hidden_dim: Bottleneck width (the paper uses a quarter of the projection dimension).
        output_dim: Prediction dimension (equal to the projection dimension).
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 512, output_dim: int = 2048
    ) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, 2, True, False))


class BarlowTwinsProjectionHead(ProjectionHead):
    """Barlow Twins projector: 3 Linear layers, BN and ReLU after the first two.

    - [0]: Barlow Twins, 2021, https://arxiv.org/abs/2103.03230

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        output_dim: Embedding dimension.
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 8192, output_dim: int = 8192
    ) -> None:
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, 3, True, False))


class VICRegProjectionHead(ProjectionHead):
    """VICReg expander: ``num_layers`` Linear layers, BN and ReLU after all but the last.

    - [0]: VICReg, 2022, https://arxiv.org/abs/2105.04906

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        output_dim: Embedding dimension.
        num_layers: Number of Linear layers (>= 1).
    """

    def __init__(
        self, input_dim: int = 2048, hidden_dim: int = 8192, output_dim: int = 8192,
        num_layers: int = 3,
    ) -> None:  # fmt: skip
        super().__init__(_mlp_blocks(input_dim, hidden_dim, output_dim, num_layers, True, False))


class DINOProjectionHead(ProjectionHead):
    """DINO head: a GELU MLP, an L2-normalised bottleneck, a weight-normalised prototype layer.

    Three Linear layers (GELU after the first two) map to the bottleneck, which is L2-normalised
    and projected onto ``output_dim`` prototypes by a weight-normalised Linear layer without bias.

    With ``norm_last_layer`` the last layer's weight norm is fixed to 1 (only its direction is
    learned), which the paper finds stabilises training. ``cancel_last_layer_gradients`` drops
    that layer's gradients during the first ``freeze_last_layer`` epochs (DINO freezes it for 1).

    - [0]: DINO, 2021, https://arxiv.org/abs/2104.14294

    Args:
        input_dim: Backbone feature dimension.
        hidden_dim: Width of the hidden layers.
        bottleneck_dim: Dimension of the L2-normalised bottleneck.
        output_dim: Number of prototypes K.
        batch_norm: BatchNorm after the hidden layers.
        freeze_last_layer: Number of epochs during which the last layer is not updated
            (-1 or 0: never frozen).
        norm_last_layer: Fix the last layer's weight norm to 1.
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
        freeze_last_layer: int = -1,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__([
            (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim) if batch_norm else None, nn.GELU()),
            (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim) if batch_norm else None, nn.GELU()),
            (hidden_dim, bottleneck_dim, None, None),
        ])  # fmt: skip
        if output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        self.apply(self._init_weights)
        self.freeze_last_layer = freeze_last_layer
        self.norm_last_layer = norm_last_layer
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, output_dim, bias=False))
        weight_g = self.last_layer.parametrizations.weight.original0  # (K, 1): the row norms
        with torch.no_grad():
            weight_g.fill_(1.0)
        weight_g.requires_grad = not norm_last_layer
        self.output_dim = output_dim

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def cancel_last_layer_gradients(self, current_epoch: int) -> None:
        """Set the last layer's gradients to None while ``current_epoch < freeze_last_layer``.

        Call it between ``backward()`` and ``optimizer.step()``.
        """
        if current_epoch >= self.freeze_last_layer:
            return
        for param in self.last_layer.parameters():
            param.grad = None

    @full_precision
    def forward(self, x: Tensor) -> Tensor:
        """Map features to prototype logits, in float32 (they are divided by a 0.04 temperature).

        Args:
            x: (B, input_dim) backbone features.

        Returns:
            (B, output_dim) logits (cosine similarities to the prototypes when
            ``norm_last_layer``).
        """
        x = self.layers(x)  # (B, bottleneck_dim)
        eps = 1e-6 if x.dtype == torch.float16 else 1e-12
        x = F.normalize(x, dim=-1, eps=eps)
        out: Tensor = self.last_layer(x)
        return out
