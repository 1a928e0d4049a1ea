"""The registry of tile encoders: every name the config's ``encoder.name`` can take.

An encoder maps a batch of tiles (B, C, s, s), pixel values scaled to [0, 1], to their
embeddings (B, D). Its :class:`EncoderSpec` says what the workflow needs to know about it:
how to build it, its best inference batch on a CPU, whether it learns from triplets, and how
missing pixels reach it. Adding an encoder is one :func:`register_encoder` call, plus its
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
class EncoderSpec:
    """What the workflow needs to know about an encoder."""

    name: str
    build: Callable[[int, int], Any]  # (input channels, z_dim) -> a torch module with a ``z_dim`` attribute
    cpu_batch_size: int = 8  # its best inference batch of 100 px tiles on a CPU (see embed.default_batch_size)
    trains: bool = True  # learned from triplets; False: computed from the pixels (nothing to train)
    fills_gaps: bool = True  # missing pixels reach it as the tile's band means; False: as NaN


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Make ``spec.name`` an encoder the config can name (a later registration replaces an earlier one)."""
    ENCODERS[spec.name] = spec
    return spec


def encoder_spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ENCODERS[name]


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


def _tilenet_lite(in_channels: int, z_dim: int) -> Any:
    """TileNet's five stages with a stride-2 stem and first stage and half the widths (the last
    stage still outputs z_dim): each stage works on a quarter of TileNet's pixels, for CPUs."""
    from landtaxa.learning.networks import TileNet

    return TileNet(in_channels, z_dim, widths=(32, 64, 128, 256), strides=(2, 2, 2, 2, 2), stem_stride=2)


def _spectral(in_channels: int, z_dim: int) -> Any:
    from landtaxa.learning.networks import SpectralStats

    return SpectralStats(in_channels)


register_encoder(EncoderSpec("tilenet", _tilenet, cpu_batch_size=8))
register_encoder(EncoderSpec("tilenet-lite", _tilenet_lite, cpu_batch_size=64))
register_encoder(EncoderSpec("spectral", _spectral, cpu_batch_size=1024, trains=False, fills_gaps=False))


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
