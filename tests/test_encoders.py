"""Tests of the encoder registry (landtaxa.encoders)."""

from __future__ import annotations

import pytest
import torch

from landtaxa.encoders import ENCODERS, EncoderSpec, build_encoder, encoder_spec, register_encoder
from landtaxa.networks import SpectralStats, TileNet
from landtaxa.params import schema_property


def test_schema_enum_is_the_registry_of_trained_encoders() -> None:
    """Adding an encoder is one registry entry and its name in the schema's enum."""
    trained = [name for name, spec in ENCODERS.items() if spec.trains]
    for key in ("encoder.name", "demo.encoder"):
        assert schema_property(key)["enum"] == trained and schema_property(key)["default"] in trained


def test_build_encoder_carries_its_spec() -> None:
    net = build_encoder("tilenet", 2, 24)
    assert isinstance(net, TileNet) and net.z_dim == 24 and net.in_channels == 2
    assert (net.cpu_batch_size, net.fills_gaps) == (8, True)
    lite = build_encoder("tilenet-lite", 2, 24)
    assert lite.cpu_batch_size == 64 and lite.z_dim == 24
    spectral = build_encoder("spectral", 3, 512)
    assert isinstance(spectral, SpectralStats) and spectral.z_dim == 6 and spectral.fills_gaps is False
    assert not encoder_spec("spectral").trains and encoder_spec("tilenet").trains


def test_unknown_encoder_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'resnet'; choose one of tilenet, tilenet-lite, spectral"):
        build_encoder("resnet", 3, 16)


def test_a_registered_encoder_builds(monkeypatch) -> None:
    monkeypatch.setitem(ENCODERS, "linear", ENCODERS["tilenet"])  # restored after the test
    register_encoder(EncoderSpec("linear", lambda c, z: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(z)),
                                 cpu_batch_size=256))
    net = build_encoder("linear", 3, 5)
    assert net.cpu_batch_size == 256 and net(torch.zeros(2, 3, 4, 4)).shape == (2, 5)
