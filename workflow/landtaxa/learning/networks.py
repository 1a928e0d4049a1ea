"""The encoders' networks, the triplet loss and safe checkpoints (the registry is :mod:`landtaxa.learning.encoders`).

- :class:`TileNet`: Tile2Vec's encoder, the paper's. A ResNet-18-like network: a 3x3 stem, then
  five residual stages of two basic blocks with widths 64-128-256-512-``z_dim`` and strides
  1-2-2-2-2, and an average pool over the whole final feature map, so any tile size works. Its
  convolutions are :class:`Conv2d`, which computes a one-pixel output (the last stages on small tiles)
  as a matrix product.
- :class:`SpectralStats`: no weights: each band's mean and standard deviation over the tile's
  valid pixels (or the means alone: the classic baseline), the baselines every run is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from landtaxa.learning.pixels import band_stats
from landtaxa.storage import get_logger

PAPER_WIDTHS = (64, 128, 256, 512)
PAPER_STRIDES = (1, 2, 2, 2, 2)


class Conv2d(nn.Conv2d):
    """A convolution that computes a one-pixel output as the matrix product it is.

    On small tiles the last stages' outputs are one pixel (16 px tiles: TileNet's stage 5, tilenet-lite's 3-5).
    A k x k kernel with zero padding p whose output is one pixel meets the input only through the taps
    ``[p : p + h, p : p + w]``: the output is those taps, flattened, times the flattened input, and every
    other tap meets padding (its gradient is exactly zero either way). The same weights and the same
    checkpoints; on the CPU oneDNN's backward pass of a 3 x 3 kernel over a 1 x 1 map takes about 20 times
    its forward, and the product is about 2x faster per training step (benchmarks/bench_train.py).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self._single_pixel_taps(x.shape[-2], x.shape[-1])
        if taps is None:
            return super().forward(x)
        weight = self.weight[:, :, taps[0], taps[1]].reshape(self.out_channels, -1)
        return F.linear(x.reshape(x.shape[0], -1), weight, self.bias).reshape(x.shape[0], self.out_channels, 1, 1)

    def _single_pixel_taps(self, h: int, w: int) -> tuple[slice, slice] | None:
        """The kernel's taps that meet an h x w input, when the output is one pixel; None otherwise."""
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return None
        if self.dilation != (1, 1):
            return None
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        one_pixel = (h + 2 * ph - kh) // sh == 0 and (w + 2 * pw - kw) // sw == 0
        if not one_pixel or h + ph > kh or w + pw > kw:
            return None
        return slice(ph, ph + h), slice(pw, pw + w)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class TileNet(nn.Module):
    """Tile2Vec's encoder: stem + five residual stages + global average pooling."""

    def __init__(
        self,
        in_channels: int,
        z_dim: int = 512,
        widths: Sequence[int] = PAPER_WIDTHS,
        strides: Sequence[int] = PAPER_STRIDES,
        blocks_per_stage: int = 2,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        stage_widths = [*widths, z_dim]
        if len(stage_widths) != len(strides):
            raise ValueError(f"{len(stage_widths)} stage widths but {len(strides)} strides")
        self.in_channels = in_channels
        self.z_dim = z_dim
        self.stem = nn.Sequential(
            Conv2d(in_channels, stage_widths[0], 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(stage_widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        ch = stage_widths[0]
        for width, stride in zip(stage_widths, strides, strict=True):
            blocks = [BasicBlock(ch, width, stride)]
            blocks += [BasicBlock(width, width, 1) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            ch = width
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


class SpectralStats(nn.Module):
    """Per-band mean and standard deviation of each tile's valid pixels (NaN = missing): (B, 2C); with
    ``stds`` False the means alone, (B, C).

    Has no weights. A tile without any valid pixel gives zeros (the workflow never embeds one).
    """

    def __init__(self, in_channels: int, z_dim: int = 0, stds: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.stds = stds
        self.z_dim = (2 if stds else 1) * in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The statistics of :func:`landtaxa.learning.pixels.band_stats` (computed there, on the CPU)."""
        return torch.from_numpy(band_stats(x.detach().float().cpu().numpy(), self.stds)).to(x.device)


def triplet_loss(
    z_a: torch.Tensor, z_n: torch.Tensor, z_d: torch.Tensor, margin: float, l2: float
) -> torch.Tensor:
    """Tile2Vec's loss: ``max(0, |a-n| - |a-d| + margin)`` plus ``l2`` times the embedding norms.

    Both terms are averaged over the batch, so the loss scale does not depend on batch size.
    """
    d_an = torch.linalg.vector_norm(z_a - z_n, dim=1)
    d_ad = torch.linalg.vector_norm(z_a - z_d, dim=1)
    hinge = F.relu(d_an - d_ad + margin).mean()
    norms = sum(torch.linalg.vector_norm(z, dim=1).mean() for z in (z_a, z_n, z_d))
    return hinge + l2 * norms


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (honouring CUDA_VISIBLE_DEVICES), the CPU otherwise."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def setup_torch(threads: int, preference: str = "auto") -> torch.device:
    """Thread count and repeatable kernels for a step; the device it runs on (logged)."""

    torch.set_num_threads(max(1, int(threads)))
    torch.backends.cudnn.deterministic = True  # repeatable convolutions on a GPU (see README)
    torch.backends.cudnn.benchmark = False
    device = pick_device(preference)
    get_logger().info("device: %s (torch %s, %d CPU threads)", device, torch.__version__, torch.get_num_threads())
    return device
