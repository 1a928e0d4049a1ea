"""The registry of tile encoders: every name the config's ``encoder.name`` can take.

An encoder maps a batch of tiles (B, C, s, s), pixel values scaled to [0, 1], to their
embeddings (B, D). Its :class:`EncoderSpec` says what the workflow needs to know about it:
how to build it, its best inference batch on a CPU, whether it learns from triplets, how
missing pixels reach it, and what it costs (:class:`EncoderCosts`: FLOPs, parameters and
activations, from which the workflow estimates its jobs' time and memory; an encoder that does
not declare them has them measured once, see :func:`encoder_costs`). Adding an encoder is one
:func:`register_encoder` call, plus its
name in the schema's enum for a built-in one; a user's own module registers one through the
``plugins`` config key. Checkpoints are saved and loaded here too: a checkpoint names its
encoder, which the registry builds before the weights are loaded. This module imports torch only
when a network is built or a checkpoint read (the plan asks it questions where snakemake runs);
the networks themselves live in :mod:`landtaxa.learning.networks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from landtaxa.storage import atomic_path


@dataclass(frozen=True)
class EncoderCosts:
    """What one tile costs the encoder, for the estimates of the jobs' time and memory (landtaxa.resources).

    ``gflop_100px``: floating-point operations of one forward pass on a 100 x 100 px tile, in GFLOP
    (2 per multiply-add; they scale with the tile's pixels). ``parameters``: weights at ``z_dim`` 512.
    ``infer_bytes_px`` and ``train_bytes_px``: the activations' memory per input pixel of a tile, at
    inference (a batch of the embedding) and in training (forward and backward of a triplet batch),
    in float32 as on a CPU (bf16 autocast on a GPU holds about half).
    """

    gflop_100px: float
    parameters: int
    infer_bytes_px: float
    train_bytes_px: float


@dataclass(frozen=True)
class EncoderSpec:
    """What the workflow needs to know about an encoder."""

    name: str
    build: Callable[[int, int], Any]  # (input channels, z_dim) -> a torch module with a ``z_dim`` attribute
    cpu_batch_size: int = 8  # its best inference batch of 100 px tiles on a CPU (see embed.default_batch_size)
    trains: bool = True  # learned from triplets; False: computed from the pixels (nothing to train)
    fills_gaps: bool = True  # missing pixels reach it as the tile's band means; False: as NaN
    costs: EncoderCosts | None = None  # None: measured from the built network when first asked (encoder_costs)
    # (input channels, z_dim) -> values the saved network holds (parameters and buffers), without building it;
    # None: counted on the network built on torch's meta device (see encoder_values)
    values: Callable[[int, int], int] | None = None


ENCODERS: dict[str, EncoderSpec] = {}
_MEASURED: dict[str, EncoderCosts] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Make ``spec.name`` an encoder the config can name (a later registration replaces an earlier one)."""
    ENCODERS[spec.name] = spec
    return spec


def encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


def encoder_costs(name: str) -> EncoderCosts:
    """The costs of a registered encoder: as its spec declares them, or measured once on the network
    itself (4 bands, ``z_dim`` 512, one 100 px tile; this imports torch): FLOPs by torch's
    ``FlopCounterMode``, the parameters counted, and the activations from the sum of every layer's
    output, taken 2.5 times at inference and 10 times in training (the largest ratios of the built-in
    encoders' calibrated figures to that sum: 0.7-2.4 and 2.7-10.5)."""
    spec = encoder_spec(name)
    if spec.costs is not None:
        return spec.costs
    if name not in _MEASURED:
        _MEASURED[name] = _measure(spec)
    return _MEASURED[name]


def _measure(spec: EncoderSpec) -> EncoderCosts:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = spec.build(4, 512).eval()
    outputs = [0]

    def count(module: Any, inputs: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            outputs[0] += out.numel() * 4

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 4, 100, 100))
    finally:
        for hook in hooks:
            hook.remove()
    per_px = outputs[0] / 100**2
    return EncoderCosts(gflop_100px=counter.get_total_flops() / 1e9,
                        parameters=sum(p.numel() for p in model.parameters()),
                        infer_bytes_px=2.5 * per_px, train_bytes_px=10 * per_px)


def encoder_values(name: str, in_channels: int, z_dim: int) -> int:
    """Values (parameters and buffers) of the encoder's saved state: from its spec's ``values`` without torch,
    else counted on the network built on torch's meta device (nothing allocated)."""
    spec = encoder_spec(name)
    if spec.values is not None:
        return spec.values(in_channels, z_dim)
    import torch

    with torch.device("meta"):
        model = build_encoder(name, in_channels, z_dim)
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def tilenet_values(in_channels: int, z_dim: int, widths: tuple[int, ...] = (64, 128, 256, 512),
                   strides: tuple[int, ...] = (1, 2, 2, 2, 2), blocks_per_stage: int = 2) -> int:
    """Values of :class:`landtaxa.learning.networks.TileNet`'s state, counted from its shape (the snakemake
    process plans without importing torch; tests/test_encoders.py checks it against the built networks): a
    bias-free 3x3 convolution per stem and block half, a 1x1 projection where a block changes width or
    stride, and per batch norm a weight, a bias, two running moments per channel and a batch counter."""

    def norm(ch: int) -> int:
        return 4 * ch + 1

    def block(c_in: int, c_out: int, stride: int) -> int:
        n = 9 * c_in * c_out + 9 * c_out * c_out + 2 * norm(c_out)
        return n + (c_in * c_out + norm(c_out) if stride != 1 or c_in != c_out else 0)

    stages = [*widths, z_dim]
    n = 9 * in_channels * stages[0] + norm(stages[0])
    ch = stages[0]
    for width, stride in zip(stages, strides, strict=True):
        n += block(ch, width, stride) + (blocks_per_stage - 1) * block(width, width, 1)
        ch = width
    return n


def build_encoder(name: str, in_channels: int, z_dim: int) -> Any:
    """Build a registered encoder; the module carries ``cpu_batch_size`` and ``fills_gaps`` from its spec."""
    spec = encoder_spec(name)
    model = spec.build(in_channels, z_dim)
    model.cpu_batch_size = spec.cpu_batch_size
    model.fills_gaps = spec.fills_gaps
    return model


def _tilenet(in_channels: int, z_dim: int) -> Any:
    from landtaxa.learning.networks import TileNet

    return TileNet(in_channels, z_dim)


LITE_WIDTHS, LITE_STRIDES = (32, 64, 128, 256), (2, 2, 2, 2, 2)  # tilenet-lite's shape, built and counted alike


def _tilenet_lite(in_channels: int, z_dim: int) -> Any:
    """TileNet's five stages with a stride-2 stem and first stage and half the widths (the last
    stage still outputs z_dim): each stage works on a quarter of TileNet's pixels, for CPUs."""
    from landtaxa.learning.networks import TileNet

    return TileNet(in_channels, z_dim, widths=LITE_WIDTHS, strides=LITE_STRIDES, stem_stride=2)


def _spectral(in_channels: int, z_dim: int) -> Any:
    from landtaxa.learning.networks import SpectralStats
    from landtaxa.learning.pixels import BAND_STATS

    return SpectralStats(in_channels, stds=BAND_STATS["spectral"])


def _means(in_channels: int, z_dim: int) -> Any:
    from landtaxa.learning.networks import SpectralStats
    from landtaxa.learning.pixels import BAND_STATS

    return SpectralStats(in_channels, stds=BAND_STATS["means"])


# Costs: FLOPs and parameters counted (FlopCounterMode, 4 bands, z_dim 512); activations calibrated on
# the peak RSS of embedding and training jobs on the demo's 16 px tiles (tests/test_resources.py).
register_encoder(EncoderSpec("tilenet", _tilenet, cpu_batch_size=8,
                             costs=EncoderCosts(12.0, 21_000_000, 4_000, 16_000), values=tilenet_values))
register_encoder(EncoderSpec("tilenet-lite", _tilenet_lite, cpu_batch_size=64,
                             costs=EncoderCosts(0.28, 11_200_000, 700, 3_000),
                             values=lambda c, z: tilenet_values(c, z, LITE_WIDTHS, LITE_STRIDES)))
register_encoder(EncoderSpec("spectral", _spectral, cpu_batch_size=1024, trains=False, fills_gaps=False,
                             costs=EncoderCosts(0.001, 0, 64, 0), values=lambda c, z: 0))
register_encoder(EncoderSpec("means", _means, cpu_batch_size=1024, trains=False, fills_gaps=False,
                             costs=EncoderCosts(0.001, 0, 64, 0), values=lambda c, z: 0))


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, model: Any, meta: dict[str, Any]) -> None:
    """Save the encoder as a plain state dict plus JSON-like metadata, atomically.

    Only tensors and plain Python values are stored, so the file loads with
    ``torch.load(weights_only=True)`` and can never carry executable code.
    """
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)


def load_checkpoint(path: str | os.PathLike, device: Any = "cpu") -> tuple[Any, dict]:
    """Load an encoder saved by :func:`save_checkpoint` (weights only; no code runs)."""
    import torch

    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: not a landtaxa encoder checkpoint ({err})") from err
    if not isinstance(payload, dict) or "state_dict" not in payload or "meta" not in payload:
        raise ValueError(f"{path}: not a landtaxa encoder checkpoint (no state_dict/meta)")
    meta = payload["meta"]
    model = build_encoder(meta["encoder"], meta["in_channels"], meta["z_dim"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device), meta
